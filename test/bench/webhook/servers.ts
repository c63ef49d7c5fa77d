/**
 * The servers of bench:webhook, each run as a child process
 * (lib/children.ts): a no-op HTTPS webhook answering allowed (the floor;
 * `serve-noop-stamp` also returns kubetrail's stamp patch) and kubetrail's
 * webhook with the real pipeline to the harness Kafka (`serve-webhook`) or an
 * in-memory sink (`serve-webhook-memory`), or with `kafka.durability: local`
 * (`serve-webhook-local`: answered once the event is on the local spool).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import https from 'node:https';
import tls from 'node:tls';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** TLS connections a child's HTTPS servers accepted, and how many of them resumed a session (no full handshake). */
export interface TlsCounts {
  connections: number;
  resumed: number;
}

/** What a server child answers to 'stats': reviews seen (no-op), its own review-duration sums per webhook (its Prometheus histogram), TLS connections accepted. */
export interface ChildStats {
  reviews?: number;
  durations?: Record<string, { sum: number; count: number }>;
  tls: TlsCounts;
}

/** Counts the TLS connections every tls.Server of this process accepts (bench instrumentation: how often the API server reconnects). */
function countTlsConnections(): TlsCounts {
  const counts: TlsCounts = { connections: 0, resumed: 0 };
  const proto = tls.Server.prototype as unknown as { emit: (this: tls.Server, event: string | symbol, ...args: unknown[]) => boolean };
  const emit = proto.emit;
  proto.emit = function (this: tls.Server, event: string | symbol, ...args: unknown[]): boolean {
    if (event === 'secureConnection') {
      counts.connections++;
      if ((args[0] as tls.TLSSocket).isSessionReused()) counts.resumed++;
    }
    return emit.call(this, event, ...args);
  };
  return counts;
}

export async function serveNoop(): Promise<void> {
  const { testPki } = await import('../../webhook/support.ts');
  const pki = testPki();
  const tlsCounts = countTlsConnections();
  const stamp = process.argv[2] === 'serve-noop-stamp';
  let reviews = 0;
  // The driver asks how many reviews arrived (to know when the API server has picked up a registration).
  process.on('message', (msg) => {
    if (msg === 'stats') process.send?.({ reviews, tls: tlsCounts });
  });
  const server = https.createServer({ cert: readFileSync(pki.certFile), key: readFileSync(pki.keyFile) }, (req, res) => {
    reviews++;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      // The floor still parses the review to echo its uid, as any correct webhook must.
      const review = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { request: { uid: string; userInfo?: { username?: string }; object?: { metadata?: { annotations?: unknown } } | null } };
      const response: Record<string, unknown> = { uid: review.request.uid, allowed: true };
      if (stamp) {
        // What kubetrail answers beyond "allowed" (without recording anything): an event id in auditAnnotations and, on /mutate, its stamp patch.
        const event = randomUUID();
        response['auditAnnotations'] = { event };
        const md = review.request.object?.metadata;
        if (req.url?.startsWith('/mutate') && md) {
          const ann = { 'kubetrail.io/last-modified-by': review.request.userInfo?.username ?? '', 'kubetrail.io/event': event };
          const patch = md.annotations
            ? Object.entries(ann).map(([key, value]) => ({ op: 'add', path: `/metadata/annotations/${key.replace(/~/g, '~0').replace(/\//g, '~1')}`, value }))
            : [{ op: 'add', path: '/metadata/annotations', value: ann }];
          response['patchType'] = 'JSONPatch';
          response['patch'] = Buffer.from(JSON.stringify(patch)).toString('base64');
        }
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response }));
    });
  });
  server.listen(0, '127.0.0.1', () => {
    process.stdout.write(`${JSON.stringify({ port: (server.address() as { port: number }).port, ca: pki.ca.certPem, caBundle: pki.caBundle })}\n`);
  });
  process.on('SIGTERM', () => {
    server.close();
    rmSync(pki.dir, { recursive: true, force: true });
    process.exit(0);
  });
}

export async function serveWebhook(): Promise<void> {
  const { harness } = await import('../../support/env.ts');
  const { loadConfig } = await import('../../../core/config.ts');
  const { createMetricsRegistry } = await import('../../../core/health-server.ts');
  const { createEventPipeline } = await import('../../../core/pipeline.ts');
  const { startWebhook } = await import('../../../webhook/main.ts');
  const { testPki, quietLogger, policiesDir } = await import('../../webhook/support.ts');
  const env = harness();
  const pki = testPki();
  const tlsCounts = countTlsConnections();
  const policies = policiesDir();
  const dataDir = mkdtempSync(path.join(tmpdir(), 'kt-bench-webhook-'));
  const id = `${process.pid}`;
  const config = loadConfig({
    document: {
      dataDir,
      log: { level: 'warn' },
      kafka: {
        brokers: env.KAFKA_BROKERS.split(','),
        topics: { events: `kt-bench-webhook-${id}`, sessions: `kt-bench-webhook-${id}-s` },
        // Experiments only (the figures in docs use the default): BENCH_KAFKA_LINGER_MS sets kafka.lingerMs.
        ...(process.env['BENCH_KAFKA_LINGER_MS'] ? { lingerMs: Number(process.env['BENCH_KAFKA_LINGER_MS']) } : {}),
        // BENCH_KAFKA_JOURNAL_SYNC=1 sets kafka.journalSync (fdatasync the in-flight journal before each produce request).
        ...(process.env['BENCH_KAFKA_JOURNAL_SYNC'] === '1' ? { journalSync: true } : {}),
        ...(process.argv[2] === 'serve-webhook-local' ? { durability: 'local' as const } : {}),
      },
      policies: { dir: policies },
      webhook: { tls: { certFile: pki.certFile, keyFile: pki.keyFile } },
    },
  });
  const log = quietLogger();
  const registry = createMetricsRegistry();
  // `serve-webhook-memory` isolates the webhook's own cost (parse, guardrails, masking, sealing) from Kafka durability.
  const memory = process.argv[2] === 'serve-webhook-memory';
  const pipeline = memory ? new (await import('../../../core/sinks/memory-sink.ts')).MemorySink({ source: { component: 'webhook' } }) : await createEventPipeline({ config, log, registry, component: 'webhook', instance: `bench-${id}` });
  if (memory) {
    // Keep memory flat over a run: the events are not needed, only the work of sealing them.
    setInterval(() => {
      const m = pipeline as unknown as { events: unknown[]; lines: unknown[] };
      m.events.length = 0;
      m.lines.length = 0;
    }, 200).unref();
  }
  const w = await startWebhook({ config, log, sink: pipeline, registry, listen: '127.0.0.1:0' });
  process.stdout.write(`${JSON.stringify({ port: w.port, ca: pki.ca.certPem, caBundle: pki.caBundle, topic: `kt-bench-webhook-${id}` })}\n`);
  // The driver asks for the webhook's own review-duration sums (its histogram), to tell them from what the API server sees.
  process.on('message', (msg) => {
    if (msg !== 'stats') return;
    void (async () => {
      const m = await registry.getSingleMetric('kubetrail_webhook_review_duration_seconds')?.get();
      const out: Record<string, { sum: number; count: number }> = {};
      for (const v of m?.values ?? []) {
        const which = String(v.labels['webhook']);
        const e = (out[which] ??= { sum: 0, count: 0 });
        if (String((v as { metricName?: string }).metricName).endsWith('_sum')) e.sum = v.value;
        else if (String((v as { metricName?: string }).metricName).endsWith('_count')) e.count = v.value;
      }
      process.send?.({ durations: out, tls: tlsCounts });
    })();
  });
  process.on('SIGTERM', () => {
    void (async () => {
      await w.close();
      await pipeline.close();
      for (const d of [pki.dir, policies, dataDir]) rmSync(d, { recursive: true, force: true });
      process.exit(0);
    })();
  });
}
