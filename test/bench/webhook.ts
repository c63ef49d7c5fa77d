/**
 * `npm run bench:webhook` (needs the harness: KUBETRAIL_HARNESS_ENV or
 * test/.harness/env). Measures, in one run:
 *
 * 1. reviews/s and p50/p99 of a realistic ~15 KiB Pod CREATE on /validate
 *    (starter pack, capture, masking, real pipeline to the harness Kafka),
 *    against a no-op Node HTTPS handler answering allowed (the floor), both
 *    at full load (autocannon, same connections) and at a fixed 1,000/s
 *    (open-loop generator, {@link fixedRateLoad}); then the same with two
 *    webhook processes behind the same client (as the two replicas the
 *    manifests deploy), against the same single-process floor;
 * 2. Pods created per second through the real API server (agent token,
 *    direct HTTPS, fixed concurrency) without webhooks, with no-op
 *    validating + mutating webhooks, and with kubetrail's, in
 *    `BENCH_POD_ROUNDS` rounds (default 3) of the three cases in rotating
 *    order (both webhook pairs registered throughout, each selecting pods by
 *    label), with the per-round ratios and their medians, the API server's
 *    own latency of each webhook call, kubetrail's own time per review, CPU
 *    per pod of each process and TLS connections opened; `BENCH_POD_STAMP=1`
 *    adds a fourth case, no-op webhooks answering with kubetrail's stamp
 *    patch and audit annotation (what the API server pays for a patch).
 *
 * Servers run in child processes (this same file with `serve-webhook` /
 * `serve-noop`), and so does the fixed-rate generator (`load-fixed`), so
 * that no load generator shares their event loop.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import https from 'node:https';
import tls from 'node:tls';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { dropBenchTopics } from './topics.ts';

const SELF = fileURLToPath(import.meta.url);

/** A realistic Pod of about 15 KiB as the API server sends it (defaults filled, managedFields, many env vars). */
export function realisticPod(name: string, labels: Record<string, string> = {}): Record<string, unknown> {
  const env = (prefix: string, n: number): { name: string; value: string }[] =>
    Array.from({ length: n }, (_, i) => ({ name: `${prefix}_SETTING_${i}`, value: `value-${i}-${'x'.repeat(24)}` }));
  const container = (n: string, image: string): Record<string, unknown> => ({
    name: n,
    image,
    imagePullPolicy: 'IfNotPresent',
    command: ['/bin/server'],
    args: ['--port=8080', '--log-level=info', '--metrics-addr=:9090'],
    ports: [
      { name: 'http', containerPort: 8080, protocol: 'TCP' },
      { name: 'metrics', containerPort: 9090, protocol: 'TCP' },
    ],
    env: [...env(n.toUpperCase(), 64), { name: 'DB_PASSWORD', value: 'not-in-events' }, { name: 'API_TOKEN', value: 'not-in-events-either' }],
    resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { cpu: '500m', memory: '512Mi' } },
    volumeMounts: [
      { name: 'config', mountPath: '/etc/app', readOnly: true },
      { name: 'cache', mountPath: '/var/cache/app' },
    ],
    livenessProbe: { httpGet: { path: '/healthz', port: 8080, scheme: 'HTTP' }, initialDelaySeconds: 5, periodSeconds: 10, timeoutSeconds: 1, successThreshold: 1, failureThreshold: 3 },
    readinessProbe: { httpGet: { path: '/readyz', port: 8080, scheme: 'HTTP' }, periodSeconds: 5, timeoutSeconds: 1, successThreshold: 1, failureThreshold: 3 },
    securityContext: { runAsNonRoot: true, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
    terminationMessagePath: '/dev/termination-log',
    terminationMessagePolicy: 'File',
  });
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: 'agents',
      labels: { app: 'shop', tier: 'web', 'app.kubernetes.io/name': 'shop', 'app.kubernetes.io/version': '1.4.2', ...labels },
      annotations: { 'prometheus.io/scrape': 'true', 'prometheus.io/port': '9090', 'example.com/owner': 'team-shop' },
    },
    spec: {
      containers: [container('app', 'registry.example.com/shop/web:1.4.2'), container('sidecar', 'registry.example.com/shop/proxy:2.0.1')],
      initContainers: [{ name: 'migrate', image: 'registry.example.com/shop/migrate:1.4.2', command: ['/bin/migrate', 'up'], env: env('MIGRATE', 20) }],
      volumes: [
        { name: 'config', configMap: { name: 'shop-config', defaultMode: 420 } },
        { name: 'cache', emptyDir: { sizeLimit: '1Gi' } },
      ],
      restartPolicy: 'Always',
      terminationGracePeriodSeconds: 30,
      dnsPolicy: 'ClusterFirst',
      serviceAccountName: 'default',
      securityContext: { fsGroup: 2000, seccompProfile: { type: 'RuntimeDefault' } },
      schedulerName: 'default-scheduler',
      tolerations: [
        { key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
        { key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
      ],
      priority: 0,
      enableServiceLinks: true,
      preemptionPolicy: 'PreemptLowerPriority',
    },
    status: { phase: 'Pending', qosClass: 'Burstable' },
  };
}

export function reviewBody(): string {
  return JSON.stringify({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: '705ab4f5-6393-11e8-b7cc-42010a800002',
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      requestKind: { group: '', version: 'v1', kind: 'Pod' },
      requestResource: { group: '', version: 'v1', resource: 'pods' },
      name: 'shop-web-7d4b9c',
      namespace: 'agents',
      operation: 'CREATE',
      userInfo: { username: 'agent-ci', uid: 'agent-ci-uid', groups: ['agents', 'system:authenticated'], extra: { 'kubetrail.io/session': ['01930000-0000-7000-8000-000000000000'] } },
      object: realisticPod('shop-web-7d4b9c'),
      oldObject: null,
      dryRun: false,
      options: { kind: 'CreateOptions', apiVersion: 'meta.k8s.io/v1', fieldManager: 'kubectl-client-side-apply' },
    },
  });
}

// ------------------------------------------------------------------ child servers

/** TLS connections a child's HTTPS servers accepted, and how many of them resumed a session (no full handshake). */
interface TlsCounts {
  connections: number;
  resumed: number;
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

async function serveNoop(): Promise<void> {
  const { testPki } = await import('../webhook/support.ts');
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

async function serveWebhook(): Promise<void> {
  const { harness } = await import('../support/env.ts');
  const { loadConfig } = await import('../../core/config.ts');
  const { createMetricsRegistry } = await import('../../core/health-server.ts');
  const { createEventPipeline } = await import('../../core/pipeline.ts');
  const { startWebhook } = await import('../../webhook/main.ts');
  const { testPki, quietLogger, policiesDir } = await import('./../webhook/support.ts');
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
      },
      policies: { dir: policies },
      webhook: { tls: { certFile: pki.certFile, keyFile: pki.keyFile } },
    },
  });
  const log = quietLogger();
  const registry = createMetricsRegistry();
  // `serve-webhook-memory` isolates the webhook's own cost (parse, guardrails, masking, sealing) from Kafka durability.
  const memory = process.argv[2] === 'serve-webhook-memory';
  const pipeline = memory ? new (await import('../../core/sinks/memory-sink.ts')).MemorySink({ source: { component: 'webhook' } }) : await createEventPipeline({ config, log, registry, component: 'webhook', instance: `bench-${id}` });
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

// ------------------------------------------------------------------ driver

interface Child {
  proc: ChildProcess;
  port: number;
  ca: string;
  caBundle: string;
}

function startChild(mode: string): Promise<Child> {
  return new Promise((resolve, reject) => {
    // BENCH_WEBHOOK_NODE_ARGS: node flags for the webhook children only (e.g. `--cpu-prof --cpu-prof-dir=/tmp/wprof` to profile them).
    const nodeArgs = mode.startsWith('serve-webhook') ? (process.env['BENCH_WEBHOOK_NODE_ARGS'] ?? '').split(/\s+/).filter((a) => a !== '') : [];
    const proc = spawn(process.execPath, [...nodeArgs, SELF, mode], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'], env: process.env });
    let buf = '';
    proc.stdout?.on('data', (c: Buffer) => {
      buf += c.toString();
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        const info = JSON.parse(buf.slice(0, nl)) as { port: number; ca: string; caBundle: string };
        resolve({ proc, ...info });
      }
    });
    proc.on('exit', (code) => reject(new Error(`${mode} exited with ${code}`)));
  });
}

/** What a child reports: reviews seen (no-op), its own review-duration sums per webhook (its Prometheus histogram), TLS connections accepted. */
interface ChildStats {
  reviews?: number;
  durations?: Record<string, { sum: number; count: number }>;
  tls: TlsCounts;
}

function childStats(c: Child): Promise<ChildStats> {
  return new Promise((resolve) => {
    c.proc.once('message', (m) => resolve(structuredClone(m) as ChildStats));
    c.proc.send('stats');
  });
}

async function stopChild(c: Child): Promise<void> {
  const exited = new Promise((r) => c.proc.once('exit', r));
  c.proc.kill('SIGTERM');
  await exited;
}

interface LoadResult {
  rps: number;
  p50: number;
  p90: number;
  p99: number;
  non2xx: number;
  errors: number;
  total: number;
}

/** Closed-loop full load with autocannon; several ports share the connections (replicas behind one client). */
async function load(port: number | number[], ca: string | string[], body: string, opts: { seconds: number; connections: number; rate?: number }): Promise<LoadResult> {
  const urls = (Array.isArray(port) ? port : [port]).map((p) => `https://127.0.0.1:${p}/validate?timeout=10s`);
  const r = await autocannon({
    url: urls.length === 1 ? (urls[0] as string) : urls,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
    connections: opts.connections,
    duration: opts.seconds,
    ...(opts.rate ? { overallRate: opts.rate } : {}),
    tlsOptions: { ca },
  } as autocannon.Options);
  return { rps: r.requests.average, p50: r.latency.p50, p90: r.latency.p90, p99: r.latency.p99, non2xx: r.non2xx, errors: r.errors, total: r.requests.total };
}

/**
 * Open-loop fixed-rate load (what autocannon's `overallRate` is not: it lets
 * every connection fire its share of a second in a burst at the start of the
 * second, so 1,000/s arrives as a 1,000-request burst and its queueing shows
 * up as latency — the no-op floor "measured" p99 > 300 ms that way).
 *
 * Requests are scheduled every 1/rate s. A timer tick sends every request
 * whose scheduled time has come, over a keep-alive pool (pre-opened, at most
 * `maxConnections`; a request finding every connection busy waits in the
 * pool, and that wait is counted). Latency is measured from the tick that
 * sent the request, so a slow server cannot hide its queueing by slowing the
 * generator (no coordinated omission: the schedule never waits for
 * responses); how late the generator's own ticks were against the schedule
 * (its event loop, on the shared CPU) is reported separately as `lag`, and
 * the latency from the scheduled time as `fromSchedule`. Runs in its own
 * process (`load-fixed`), apart from the server and from the driver.
 */
async function fixedRateLoad(opts: { ports: number[]; ca: string[]; body: string; rate: number; seconds: number; maxConnections: number; warmConnections: number }): Promise<FixedRateResult> {
  const body = Buffer.from(opts.body);
  const perPort = Math.ceil(opts.maxConnections / opts.ports.length);
  const agent = new https.Agent({ keepAlive: true, maxSockets: perPort, maxFreeSockets: perPort, scheduling: 'lifo' });
  let next = 0;
  const send = (): Promise<number> =>
    new Promise((resolve) => {
      // Several ports (replicas): requests go round robin, each port with its own pool.
      const port = opts.ports[next++ % opts.ports.length] as number;
      const req = https.request(
        { host: '127.0.0.1', port, path: '/validate?timeout=10s', method: 'POST', ca: opts.ca, agent, headers: { 'content-type': 'application/json', 'content-length': body.length } },
        (res) => {
          res.on('data', () => undefined);
          res.on('end', () => resolve(res.statusCode ?? 0));
          res.on('error', () => resolve(0));
        },
      );
      req.on('error', () => resolve(0));
      req.end(body);
    });
  // Open the pool and warm both sides (JIT, TLS sessions) before the clock starts.
  for (let i = 0; i < 3; i++) await Promise.all(Array.from({ length: opts.warmConnections }, send));
  const interval = 1000 / opts.rate;
  const total = Math.round(opts.rate * opts.seconds);
  const fromTick: number[] = [];
  const fromSchedule: number[] = [];
  const lag: number[] = [];
  let errors = 0;
  let sent = 0;
  const done: Promise<void>[] = [];
  const t0 = performance.now() + 5;
  await new Promise<void>((finish) => {
    const tick = (): void => {
      const now = performance.now();
      while (sent < total && t0 + sent * interval <= now) {
        const scheduled = t0 + sent * interval;
        sent++;
        lag.push(now - scheduled);
        done.push(
          send().then((status) => {
            const end = performance.now();
            if (status !== 200) errors++;
            fromTick.push(end - now);
            fromSchedule.push(end - scheduled);
          }),
        );
      }
      if (sent < total) setTimeout(tick, Math.max(0, t0 + sent * interval - performance.now() - 0.5));
      else finish();
    };
    setTimeout(tick, 5);
  });
  await Promise.all(done);
  const elapsed = (performance.now() - t0) / 1000;
  agent.destroy();
  const pct = (xs: number[], q: number): number => {
    const s = Float64Array.from(xs).sort();
    return s.length === 0 ? NaN : (s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)] as number);
  };
  return {
    rps: total / elapsed,
    p50: pct(fromTick, 0.5),
    p90: pct(fromTick, 0.9),
    p99: pct(fromTick, 0.99),
    non2xx: errors,
    errors: 0,
    total,
    scheduleP99: pct(fromSchedule, 0.99),
    lagP99: pct(lag, 0.99),
  };
}

interface FixedRateResult extends LoadResult {
  /** p99 measured from the scheduled send time (includes the generator's own lag). */
  scheduleP99: number;
  /** p99 of how late the generator's ticks were against the schedule. */
  lagP99: number;
}

/** Runs {@link fixedRateLoad} in a child process of its own. */
function fixedRate(port: number | number[], ca: string | string[], body: string, rate: number, seconds: number): Promise<FixedRateResult> {
  const ports = Array.isArray(port) ? port : [port];
  const cas = Array.isArray(ca) ? ca : [ca];
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [SELF, 'load-fixed'], { stdio: ['pipe', 'pipe', 'inherit'], env: process.env });
    let out = '';
    proc.stdout?.on('data', (c: Buffer) => (out += c.toString()));
    proc.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as FixedRateResult) : reject(new Error(`load-fixed exited with ${code}`))));
    proc.stdin?.end(JSON.stringify({ ports, ca: cas, body, rate, seconds, maxConnections: FIXED_RATE_MAX_CONNECTIONS, warmConnections: FIXED_RATE_WARM_CONNECTIONS }));
  });
}

/** Connections of the fixed-rate pool: at most (an API server keeps a similar pool per webhook), and opened before the clock starts. */
const FIXED_RATE_MAX_CONNECTIONS = 64;
const FIXED_RATE_WARM_CONNECTIONS = 16;

async function loadFixedChild(): Promise<void> {
  let input = '';
  for await (const c of process.stdin) input += (c as Buffer).toString();
  const opts = JSON.parse(input) as Parameters<typeof fixedRateLoad>[0];
  process.stdout.write(JSON.stringify(await fixedRateLoad(opts)));
}

async function apiRequest(url: string, token: string, ca: string, method: string, body?: string, agent?: https.Agent): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method, ca, agent: agent ?? false, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } }, (res) => {
      let b = '';
      res.on('data', (c: Buffer) => (b += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Creates `n` pods through the API server with `concurrency` in flight; returns pods/s. */
async function createPods(env: { APISERVER_URL: string; AGENT_TOKEN: string; APISERVER_CA: string }, prefix: string, label: string, n: number, concurrency: number): Promise<number> {
  const ca = readFileSync(env.APISERVER_CA, 'utf8');
  const agent = new https.Agent({ keepAlive: true, maxSockets: concurrency });
  let next = 0;
  let failures = 0;
  let firstFailure = '';
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        const i = next++;
        const pod = realisticPod(`${prefix}-${i}`, { 'kubetrail-test': label });
        delete (pod as { status?: unknown }).status;
        const r = await apiRequest(`${env.APISERVER_URL}/api/v1/namespaces/agents/pods`, env.AGENT_TOKEN, ca, 'POST', JSON.stringify(pod), agent);
        if (r.status !== 201) {
          failures++;
          firstFailure ||= `${r.status} ${r.body.slice(0, 300)}`;
        }
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  agent.destroy();
  if (failures > 0) throw new Error(`${failures} of ${n} pod creates failed; first: ${firstFailure}`);
  return n / seconds;
}

async function deletePods(env: { APISERVER_URL: string; ADMIN_TOKEN: string; APISERVER_CA: string }, label: string): Promise<void> {
  const ca = readFileSync(env.APISERVER_CA, 'utf8');
  await apiRequest(`${env.APISERVER_URL}/api/v1/namespaces/agents/pods?labelSelector=${encodeURIComponent(`kubetrail-test=${label}`)}&gracePeriodSeconds=0`, env.ADMIN_TOKEN, ca, 'DELETE');
}

/** Sum and count of the API server's own admission-webhook latency histogram, per webhook name (its /metrics). */
async function webhookCallStats(env: { APISERVER_URL: string; ADMIN_TOKEN: string; APISERVER_CA: string }): Promise<Map<string, { sum: number; count: number }>> {
  const ca = readFileSync(env.APISERVER_CA, 'utf8');
  const r = await apiRequest(`${env.APISERVER_URL}/metrics`, env.ADMIN_TOKEN, ca, 'GET');
  const out = new Map<string, { sum: number; count: number }>();
  for (const line of r.body.split('\n')) {
    const m = /^apiserver_admission_webhook_admission_duration_seconds_(sum|count)\{([^}]*)\} (\S+)$/.exec(line);
    if (!m) continue;
    const name = /(?:^|,)name="([^"]*)"/.exec(m[2] as string)?.[1] ?? '?';
    const e = out.get(name) ?? { sum: 0, count: 0 };
    if (m[1] === 'sum') e.sum += Number(m[3]);
    else e.count += Number(m[3]);
    out.set(name, e);
  }
  return out;
}

const fmt = (n: number, d = 0): string => n.toFixed(d);

/** CPU time (ms) a process has used so far, from /proc (Linux; clock ticks of 10 ms), or NaN. */
function procCpuMs(pid: number, tid?: number): number {
  try {
    const stat = readFileSync(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * 10;
  } catch {
    return NaN;
  }
}

/** Busy CPU time (ms) of the whole machine so far (all cores, /proc/stat), or NaN. */
function machineBusyMs(): number {
  try {
    const f = (readFileSync('/proc/stat', 'utf8').split('\n')[0] as string).trim().split(/\s+/).slice(1).map(Number);
    const idle = (f[3] ?? 0) + (f[4] ?? 0);
    return (f.reduce((a, b) => a + b, 0) - idle) * 10;
  } catch {
    return NaN;
  }
}

/** The harness processes whose CPU the pods part accounts for: the API server, etcd and the Kafka broker of this harness. */
function harnessPids(harnessDir: string): Record<string, number> {
  const out: Record<string, number> = {};
  let entries: string[] = [];
  try {
    entries = readdirSync('/proc').filter((e) => /^\d+$/.test(e));
  } catch {
    return out;
  }
  for (const e of entries) {
    try {
      const cmd = readFileSync(`/proc/${e}/cmdline`, 'utf8');
      if (!cmd.includes(harnessDir)) continue;
      const comm = readFileSync(`/proc/${e}/comm`, 'utf8').trim();
      if (comm === 'kube-apiserver') out['apiserver'] = Number(e);
      else if (comm === 'etcd') out['etcd'] = Number(e);
      else if (comm === 'java' && cmd.includes('server.properties')) out['broker'] = Number(e);
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

async function main(): Promise<void> {
  const { harness } = await import('../support/env.ts');
  const { grantAgent, registerWebhooks, uniqueId } = await import('../webhook/support.ts');
  const { kubectl } = await import('../support/env.ts');
  const env = harness();
  const body = reviewBody();
  const seconds = Number(process.env['BENCH_SECONDS'] ?? 6);
  const connections = Number(process.env['BENCH_CONNECTIONS'] ?? 64);
  process.stdout.write(`bench:webhook — review body ${fmt(Buffer.byteLength(body) / 1024, 1)} KiB (Pod CREATE by agent-ci), ${seconds} s per run, ${connections} connections, node ${process.version}\n\n`);

  const skipReviews = process.env['BENCH_SKIP_REVIEWS'] === '1';
  const hook = await startChild('serve-webhook');
  if (!skipReviews) {
    const noop = await startChild('serve-noop');
    const broker = harnessPids(env.HARNESS_DIR)['broker'];
    // CPU per review of each process over a full-load run (/proc, 10 ms ticks): where the machine's time goes.
    const cpu: string[] = [];
    // `main thread` is the servers' event-loop threads alone (the rest of `server` is the producer thread and Node's
    // helpers): one process's reviews/s cannot exceed 1 s / its main thread's CPU per review.
    const withCpu = async <R extends LoadResult>(name: string, servers: Child[], run: () => Promise<R>): Promise<R> => {
      const pids: Record<string, number> = { server: -1, 'generator (bench process)': process.pid, ...(broker ? { broker } : {}) };
      const before: Record<string, number> = { machine: machineBusyMs() };
      for (const [n, pid] of Object.entries(pids)) before[n] = procCpuMs(pid);
      const serverBefore = servers.map((c) => procCpuMs(c.proc.pid ?? -1));
      const mainBefore = servers.map((c) => procCpuMs(c.proc.pid ?? -1, c.proc.pid ?? -1));
      const r = await run();
      const per = (ms: number): string => `${fmt((ms * 1000) / Math.max(1, r.total))} µs`;
      const parts = [
        `server ${per(servers.reduce((a, c, i) => a + procCpuMs(c.proc.pid ?? -1) - (serverBefore[i] as number), 0))}` +
          ` (main thread ${per(servers.reduce((a, c, i) => a + procCpuMs(c.proc.pid ?? -1, c.proc.pid ?? -1) - (mainBefore[i] as number), 0))})`,
      ];
      for (const [n, pid] of Object.entries(pids)) if (n !== 'server') parts.push(`${n} ${per(procCpuMs(pid) - (before[n] as number))}`);
      parts.push(`whole machine ${per(machineBusyMs() - (before['machine'] as number))}`);
      cpu.push(`  ${name}: ${parts.join(', ')}`);
      return r;
    };
    const floor = await withCpu('floor', [noop], () => load(noop.port, noop.ca, body, { seconds, connections }));
    const rate = Number(process.env['BENCH_RATE'] ?? 1000);
    const floorAt1k = await fixedRate(noop.port, noop.ca, body, rate, seconds);
    await stopChild(noop);

    const mem = await startChild('serve-webhook-memory');
    await load(mem.port, mem.ca, body, { seconds: 2, connections });
    const memFull = await withCpu('in-memory sink', [mem], () => load(mem.port, mem.ca, body, { seconds, connections }));
    // The webhook's own latency at the offered rate, without waiting for Kafka.
    const memAt1k = await withCpu(`in-memory sink, fixed ${rate}/s`, [mem], () => fixedRate(mem.port, mem.ca, body, rate, seconds));
    await stopChild(mem);

    // Warm-up: JIT, Kafka producer, topic creation, and the broker's own JIT: with 2 s, the first full-load run after the
    // harness started measured 612/s with the broker at 375 µs of CPU per review, against 51 µs once it was warm.
    await load(hook.port, hook.ca, body, { seconds: Number(process.env['BENCH_KAFKA_WARMUP_SECONDS'] ?? 8), connections });
    const full = await withCpu('Kafka', [hook], () => load(hook.port, hook.ca, body, { seconds, connections }));
    const at1k = await withCpu(`Kafka, fixed ${rate}/s`, [hook], () => fixedRate(hook.port, hook.ca, body, rate, seconds));

    // Two webhook processes (as two replicas behind a Service would be: each its own pipeline and chain), same client.
    let replicas: { full: LoadResult; fixed: FixedRateResult } | undefined;
    if (process.env['BENCH_SKIP_REPLICAS'] !== '1') {
      const second = await startChild('serve-webhook');
      const pair = [hook, second];
      const ports = pair.map((c) => c.port);
      const cas = pair.map((c) => c.ca);
      await load(ports, cas, body, { seconds: 2, connections });
      replicas = { full: await withCpu('2 replicas + Kafka', pair, () => load(ports, cas, body, { seconds, connections })), fixed: await fixedRate(ports, cas, body, rate, seconds) };
      await stopChild(second);
    }

    const row = (name: string, r: LoadResult): string =>
      `${name.padEnd(52)} ${fmt(r.rps).padStart(8)} ${fmt(r.p50, 2).padStart(8)} ${fmt(r.p90, 2).padStart(8)} ${fmt(r.p99, 2).padStart(8)} ${String(r.non2xx + r.errors).padStart(7)}`;
    process.stdout.write(`${'review load'.padEnd(52)} ${'req/s'.padStart(8)} ${'p50 ms'.padStart(8)} ${'p90 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${'errors'.padStart(7)}\n`);
    process.stdout.write(`${row('no-op HTTPS handler (floor), full load', floor)}\n`);
    process.stdout.write(`${row('kubetrail /validate, in-memory sink, full load', memFull)}\n`);
    process.stdout.write(`${row('kubetrail /validate + Kafka, full load', full)}\n`);
    process.stdout.write(`${row(`no-op HTTPS handler (floor), fixed ${rate}/s`, floorAt1k)}\n`);
    process.stdout.write(`${row(`kubetrail /validate, in-memory sink, fixed ${rate}/s`, memAt1k)}\n`);
    process.stdout.write(`${row(`kubetrail /validate + Kafka, fixed ${rate}/s`, at1k)}\n`);
    const lagRow = (name: string, r: FixedRateResult): string => `  ${name}: p99 from the scheduled time ${fmt(r.scheduleP99, 2)} ms; generator tick lag p99 ${fmt(r.lagP99, 2)} ms`;
    process.stdout.write(`fixed-rate rows: open loop, keep-alive pool of at most ${FIXED_RATE_MAX_CONNECTIONS} connections (${FIXED_RATE_WARM_CONNECTIONS} pre-opened), generator in its own process, latency from the send tick\n`);
    process.stdout.write(`${lagRow('floor', floorAt1k)}\n${lagRow('kubetrail, in-memory sink', memAt1k)}\n${lagRow('kubetrail + Kafka', at1k)}\n`);
    if (replicas) {
      process.stdout.write(`${row('2 webhook processes (replicas) + Kafka, full load', replicas.full)}\n`);
      process.stdout.write(`${row(`2 webhook processes (replicas) + Kafka, fixed ${rate}/s`, replicas.fixed)}\n`);
      process.stdout.write(`${lagRow('2 replicas', replicas.fixed)}\n`);
      process.stdout.write(`ratio 2 replicas + Kafka / single-process floor (full load): ${fmt(replicas.full.rps / floor.rps, 2)}\n`);
    }
    process.stdout.write(`ratio kubetrail + Kafka / floor (full load): ${fmt(full.rps / floor.rps, 2)}; in-memory sink / floor: ${fmt(memFull.rps / floor.rps, 2)}\n`);
    process.stdout.write(`CPU per review (/proc, 10 ms ticks; server = the webhook process(es) with their worker threads), at full load unless the row says fixed:\n${cpu.join('\n')}\n\n`);
  }
  // Pods per second through the real API server: without webhooks, with no-op webhooks, with kubetrail's.
  if (process.env['BENCH_SKIP_PODS'] === '1') {
    await stopChild(hook);
    return;
  }
  const id = uniqueId();
  const n = Number(process.env['BENCH_PODS'] ?? 200);
  const conc = Number(process.env['BENCH_POD_CONCURRENCY'] ?? 8);
  const rounds = Number(process.env['BENCH_POD_ROUNDS'] ?? 3);
  const revoke = await grantAgent(env.ADMIN_KUBECONFIG, env.AGENT_KUBECONFIG, 'agents', `kt-bench-${id}`, [{ apiGroups: [''], resources: ['pods'], verbs: ['create', 'get', 'list', 'delete'] }]);
  // Every webhook pair stays registered for the whole part; each selects pods by label (objectSelector kubetrail-test=<label>),
  // so one run alternates the cases (a single "without" sample swung 143-351 pods/s between runs minutes apart).
  const noop = await startChild('serve-noop');
  // BENCH_POD_STAMP=1: also no-op webhooks that return kubetrail's stamp patch and an audit annotation (what the API server pays for a patch).
  const stamp = process.env['BENCH_POD_STAMP'] === '1' ? await startChild('serve-noop-stamp') : undefined;
  interface Case {
    name: string;
    label: string;
    server?: Child;
  }
  const cases: Case[] = [
    { name: 'without', label: `${id}-none` },
    { name: 'no-op', label: `${id}-noop`, server: noop },
    ...(stamp ? [{ name: 'no-op + stamp', label: `${id}-stamp`, server: stamp }] : []),
    { name: 'kubetrail', label: id, server: hook },
  ];
  const unregs: (() => Promise<void>)[] = [];
  try {
    for (const c of cases) {
      if (!c.server) continue;
      const server = c.server;
      const seen =
        server === hook
          ? async () => {
              const r = await kubectl(env.ADMIN_KUBECONFIG, ['-n', 'agents', 'get', 'configmap', `kt-probe-${c.label}`, '-o', 'json', '--ignore-not-found']);
              return r.stdout.includes('kubetrail.io/event');
            }
          : async () => ((await childStats(server)).reviews ?? 0) > 0;
      unregs.push(await registerWebhooks(env.ADMIN_KUBECONFIG, { id: c.label, url: `https://127.0.0.1:${server.port}`, caBundle: server.caBundle }, seen));
    }
    for (const c of cases) {
      await createPods(env, `warm-${c.label}`, c.label, 40, conc);
      await deletePods(env, c.label);
    }
    const rates = new Map<string, number[]>(cases.map((c) => [c.name, []]));
    const apiserver = new Map<string, Map<string, { sum: number; count: number }>>(cases.map((c) => [c.name, new Map()]));
    const own: Record<string, { sum: number; count: number }> = {};
    const conns = new Map<string, TlsCounts>(cases.map((c) => [c.name, { connections: 0, resumed: 0 }]));
    // CPU per pod of each process involved (and of the whole machine, where other work shows up), per case over all rounds.
    const pids: Record<string, number> = { ...harnessPids(env.HARNESS_DIR), client: process.pid };
    for (const c of cases) if (c.server) pids[c.name === 'kubetrail' ? 'kubetrail' : `${c.name} webhooks`] = c.server.proc.pid ?? -1;
    const cpu = new Map<string, Record<string, number>>(cases.map((c) => [c.name, {}]));
    const sampleCpu = (): Record<string, number> => {
      const o: Record<string, number> = { machine: machineBusyMs() };
      for (const [name, pid] of Object.entries(pids)) o[name] = procCpuMs(pid);
      return o;
    };
    const orders: string[] = [];
    for (let r = 0; r < rounds; r++) {
      // The order rotates each round, so no case always runs first (after the deletes of the previous one) or last.
      const order = cases.map((_, i) => cases[(i + r) % cases.length] as Case);
      orders.push(order.map((c) => c.name).join(', '));
      for (const c of order) {
        const before = await webhookCallStats(env);
        const statsBefore = c.server ? await childStats(c.server) : undefined;
        const cpuBefore = sampleCpu();
        rates.get(c.name)?.push(await createPods(env, `r${r}-${c.label}`, c.label, n, conc));
        const cpuAfter = sampleCpu();
        const per = cpu.get(c.name) as Record<string, number>;
        for (const [name, v] of Object.entries(cpuAfter)) per[name] = (per[name] ?? 0) + v - (cpuBefore[name] as number);
        const after = await webhookCallStats(env);
        if (c.server && statsBefore) {
          const statsAfter = await childStats(c.server);
          const t = conns.get(c.name) as TlsCounts;
          t.connections += statsAfter.tls.connections - statsBefore.tls.connections;
          t.resumed += statsAfter.tls.resumed - statsBefore.tls.resumed;
          for (const [which, a] of Object.entries(statsAfter.durations ?? {})) {
            const b = statsBefore.durations?.[which] ?? { sum: 0, count: 0 };
            const e = (own[which] ??= { sum: 0, count: 0 });
            e.sum += a.sum - b.sum;
            e.count += a.count - b.count;
          }
          const acc = apiserver.get(c.name) as Map<string, { sum: number; count: number }>;
          for (const [name, a] of after) {
            const b = before.get(name) ?? { sum: 0, count: 0 };
            const e = acc.get(name) ?? { sum: 0, count: 0 };
            acc.set(name, { sum: e.sum + a.sum - b.sum, count: e.count + a.count - b.count });
          }
        }
        await deletePods(env, c.label);
      }
    }
    const median = (xs: number[]): number => {
      const s = [...xs].sort((a, b) => a - b);
      return s.length % 2 === 1 ? (s[(s.length - 1) / 2] as number) : ((s[s.length / 2 - 1] as number) + (s[s.length / 2] as number)) / 2;
    };
    const ratios = (a: number[], b: number[]): number[] => a.map((x, i) => x / (b[i] as number));
    const list = (xs: number[], d: number): string => xs.map((x) => fmt(x, d)).join(' / ');
    const w = rates.get('without') as number[];
    const o = rates.get('no-op') as number[];
    const k = rates.get('kubetrail') as number[];
    process.stdout.write(`pods created through the API server (${n} pods per case and round, ${conc} in flight, agent token, ${rounds} rounds; every webhook pair registered throughout, selected by the pod's label)\n`);
    for (let r = 0; r < rounds; r++) process.stdout.write(`  round ${r + 1} (${orders[r]}): ${cases.map((c) => `${c.name} ${fmt(rates.get(c.name)?.[r] as number, 1)}`).join(', ')} pods/s\n`);
    process.stdout.write(`  without webhooks:                     median ${fmt(median(w), 1)} pods/s (${list(w, 1)})\n`);
    process.stdout.write(`  with no-op validate+mutate webhooks (the floor of any webhook): median ${fmt(median(o), 1)} pods/s; ratio to without per round ${list(ratios(o, w), 2)}, median ${fmt(median(ratios(o, w)), 2)}\n`);
    const st = rates.get('no-op + stamp');
    if (st) process.stdout.write(`  with no-op webhooks returning kubetrail's stamp patch: median ${fmt(median(st), 1)} pods/s; ratio to without per round ${list(ratios(st, w), 2)}, median ${fmt(median(ratios(st, w)), 2)}\n`);
    process.stdout.write(`  with kubetrail validate+mutate+Kafka: median ${fmt(median(k), 1)} pods/s\n`);
    process.stdout.write(`  ratio with / without: per round ${list(ratios(k, w), 2)}, median ${fmt(median(ratios(k, w)), 2)}; kubetrail / no-op webhooks per round ${list(ratios(k, o), 2)}, median ${fmt(median(ratios(k, o)), 2)}\n`);
    for (const [which, acc] of apiserver) {
      for (const [name, e] of acc) {
        if (!name.includes('kubetrail') || e.count === 0) continue;
        process.stdout.write(`  API server's own latency of the ${which === 'kubetrail' ? '' : `${which} `}${name} calls: mean ${fmt((e.sum / e.count) * 1000, 2)} ms over ${e.count} calls\n`);
      }
    }
    process.stdout.write(`  CPU per pod created (ms, /proc, 10 ms ticks summed over ${rounds} rounds of ${n} pods):\n`);
    for (const [which, per] of cpu) {
      const parts = Object.entries(per)
        .filter(([name, v]) => name !== 'machine' && v > 0)
        .map(([name, v]) => `${name} ${fmt(v / (rounds * n), 2)}`);
      process.stdout.write(`    ${which.padEnd(14)} ${parts.join(', ')}; whole machine ${fmt((per['machine'] ?? NaN) / (rounds * n), 2)}\n`);
    }
    for (const [which, t] of conns) {
      if (which === 'without') continue;
      process.stdout.write(`  TLS connections the API server opened to the ${which} webhooks: ${t.connections} for ${rounds * n * 2} calls (${t.resumed} resumed sessions)\n`);
    }
    for (const which of ['mutate', 'validate']) {
      const e = own[which];
      if (!e || e.count === 0) continue;
      process.stdout.write(`  kubetrail's own time for /${which} (parsed review to answer, event durable included): mean ${fmt((e.sum / e.count) * 1000, 2)} ms over ${e.count} reviews\n`);
    }
  } finally {
    for (const u of unregs.reverse()) await u();
    for (const c of cases) await deletePods(env, c.label);
    await revoke();
    await stopChild(noop);
    if (stamp) await stopChild(stamp);
    await stopChild(hook);
  }
}

if (import.meta.main) {
  const mode = process.argv[2];
  if (mode === 'serve-noop' || mode === 'serve-noop-stamp') await serveNoop();
  else if (mode === 'serve-webhook' || mode === 'serve-webhook-memory') await serveWebhook();
  else if (mode === 'load-fixed') await loadFixedChild();
  else {
    try {
      await main();
    } finally {
      const { harness } = await import('../support/env.ts');
      await dropBenchTopics(harness().KAFKA_BROKERS.split(','), /^kt-bench-webhook-/);
    }
  }
}
