/**
 * Attack class: credentials in the event stream (issue 13 item 1). Anyone
 * who can read the topic must not be able to act as a caller.
 *
 * The real gateway (TokenReview authentication) in front of the real API
 * server, with the validating and mutating webhook registered for
 * TokenReviews, TokenRequests and this test's namespace, writing to the real
 * Kafka in every wire format (one webhook per format, each reviewing every
 * write). Callers use the harness users' static tokens and ServiceAccount
 * tokens (one issued through the gateway by TokenRequest); writes carry the
 * tokens in the places a credential travels (kubeconfig ConfigMaps, Secrets
 * of several types applied with kubectl, Pod env and args, an Authorization
 * header in a config file). Then every record of every topic (values and
 * headers), every file of the local logs and every log line is searched for
 * each token, raw and base64: zero hits.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Kafka, logLevel } from 'kafkajs';
import { loadConfig, type Config } from '../../core/config.ts';
import { createMetricsRegistry } from '../../core/health-server.ts';
import { createEventPipeline, type EventPipeline } from '../../core/pipeline.ts';
import type { EventSink } from '../../core/sinks/sink.ts';
import type { KubetrailEvent } from '../../core/events/model.ts';
import { render, type WireFormat } from '../../core/events/formats/index.ts';
import { canonicalJson } from '../../core/chain/canonical.ts';
import { harness, kubectl } from '../support/env.ts';
import { quietLogger, startTestWebhook, uniqueId, type TestWebhook } from '../webhook/support.ts';
import { createNamespace, serviceAccountWithToken, startTestGateway, type TestGateway } from '../gateway/support.ts';

const id = uniqueId();
const ns = `kt-leak-${id}`;
const FORMATS: readonly WireFormat[] = ['native', 'k8s-audit', 'ocsf'];
const topicsOf = (name: string): { events: string; sessions: string } => ({ events: `kt-leak-${id}-${name}`, sessions: `kt-leak-${id}-${name}-sessions` });
const dataDirs: string[] = [];
const pipelines: EventPipeline[] = [];
const webhooks: TestWebhook[] = [];
const cleanups: (() => Promise<unknown>)[] = [];
const seen: KubetrailEvent[] = [];
const logLines: string[] = [];
let gw: TestGateway;

function pipelineConfig(name: string, format: WireFormat): Config {
  const dataDir = mkdtempSync(path.join(tmpdir(), `kt-leak-${name}-`));
  dataDirs.push(dataDir);
  return loadConfig({ document: { dataDir, kafka: { brokers: harness().KAFKA_BROKERS.split(','), topics: topicsOf(name), format } } });
}

/** A sink that also keeps what was emitted (to know when the writes' events are in). */
function observed(p: EventPipeline): EventSink {
  return {
    emit: async (d) => {
      const e = await p.emit(d);
      seen.push(e);
      return e;
    },
    flush: () => p.flush(),
    close: () => Promise.resolve(),
  };
}

async function until(what: string, ok: () => boolean | Promise<boolean>, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last events: ${JSON.stringify(seen.slice(-12).map((e) => [e.source.component, e.type, e.target?.resource, e.target?.name]))}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function registration(): Record<string, unknown>[] {
  const common = { admissionReviewVersions: ['v1'], sideEffects: 'NoneOnDryRun', failurePolicy: 'Fail', timeoutSeconds: 10 };
  // TokenReviews and TokenRequests are what carry tokens; the namespace's objects are where callers put them.
  // (A namespaceSelector does not apply to cluster-scoped TokenReviews.)
  const rules = [
    { operations: ['CREATE'], apiGroups: ['authentication.k8s.io'], apiVersions: ['*'], resources: ['tokenreviews'], scope: 'Cluster' },
    { operations: ['CREATE', 'UPDATE', 'DELETE'], apiGroups: [''], apiVersions: ['v1'], resources: ['configmaps', 'secrets', 'pods', 'serviceaccounts/token'], scope: 'Namespaced' },
  ];
  const selector = { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': ns } } };
  return webhooks.flatMap((w, i) => [
    { apiVersion: 'admissionregistration.k8s.io/v1', kind: 'ValidatingWebhookConfiguration', metadata: { name: `kt-leak-${id}-${i}` }, webhooks: [{ name: `v${i}.leak.kubetrail.io`, clientConfig: { url: `${w.url}/validate`, caBundle: w.pki.caBundle }, rules, ...selector, ...common }] },
    { apiVersion: 'admissionregistration.k8s.io/v1', kind: 'MutatingWebhookConfiguration', metadata: { name: `kt-leak-${id}-${i}` }, webhooks: [{ name: `m${i}.leak.kubetrail.io`, clientConfig: { url: `${w.url}/mutate`, caBundle: w.pki.caBundle }, rules, ...selector, reinvocationPolicy: 'Never', ...common }] },
  ]);
}

before(async () => {
  const env = harness();
  cleanups.push(await createNamespace(ns));
  for (const format of FORMATS) {
    const p = await createEventPipeline({ config: pipelineConfig(format, format), log: quietLogger(logLines), registry: createMetricsRegistry(), component: 'webhook', instance: `leak-${format}-${id}` });
    pipelines.push(p);
    webhooks.push(await startTestWebhook(observed(p)));
  }
  const gwPipeline = await createEventPipeline({ config: pipelineConfig('gateway', 'native'), log: quietLogger(logLines), registry: createMetricsRegistry(), component: 'proxy', instance: `leak-gw-${id}` });
  pipelines.push(gwPipeline);
  gw = await startTestGateway({ sink: observed(gwPipeline) });
  const docs = registration();
  const applied = await kubectl(env.ADMIN_KUBECONFIG, ['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: docs }));
  assert.equal(applied.status, 0, applied.stderr);
  cleanups.push(async () => {
    for (const d of docs) await kubectl(env.ADMIN_KUBECONFIG, ['delete', (d['kind'] as string).toLowerCase(), (d['metadata'] as { name: string }).name, '--ignore-not-found']);
  });
  // The API server picks the configurations up asynchronously: probe until every webhook reviewed a ConfigMap.
  await until('the webhooks to be called', async () => {
    await kubectl(env.ADMIN_KUBECONFIG, ['-n', ns, 'create', 'configmap', `probe-${Date.now()}`]);
    return new Set(seen.filter((e) => e.type === 'admission.review' && e.target?.resource === 'configmaps').map((e) => e.source.instance)).size === FORMATS.length;
  });
});

after(async () => {
  for (const c of cleanups.reverse()) await c();
  await gw?.close();
  for (const w of webhooks) await w.close();
  for (const p of pipelines) await p.close();
  for (const d of dataDirs) rmSync(d, { recursive: true, force: true });
});

/** Every record of `topic` from the beginning: values and header values as text. */
async function readTopic(kafka: Kafka, topic: string): Promise<string[]> {
  const admin = kafka.admin();
  await admin.connect();
  let offsets: { partition: number; high: string }[];
  try {
    if (!(await admin.listTopics()).includes(topic)) return [];
    offsets = await admin.fetchTopicOffsets(topic);
  } finally {
    await admin.disconnect();
  }
  const want = new Map(offsets.filter((o) => o.high !== '0').map((o) => [o.partition, BigInt(o.high) - 1n]));
  if (want.size === 0) return [];
  const consumer = kafka.consumer({ groupId: `kt-leak-${id}-${topic}` });
  await consumer.connect();
  const out: string[] = [];
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${topic} not read to its end`)), 60_000);
      void consumer.run({
        eachMessage: async ({ partition, message }) => {
          out.push(message.value?.toString('utf8') ?? '');
          for (const v of Object.values(message.headers ?? {})) out.push(String(v));
          if (BigInt(message.offset) >= (want.get(partition) ?? -1n)) want.delete(partition);
          if (want.size === 0) {
            clearTimeout(timer);
            resolve();
          }
        },
      });
    });
  } finally {
    await consumer.disconnect();
  }
  return out;
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).map((f) => path.join(dir, f)).filter((f) => statSync(f).isFile());
}

/** The secrets found in `text`: raw, base64, or inside any base64 run of it (a ConfigMap's binaryData, a Secret's data). */
function findSecrets(text: string, secrets: Record<string, string>): string[] {
  const decoded = [...text.matchAll(/[A-Za-z0-9+/]{16,}={0,2}/g)].map((m) => Buffer.from(m[0], 'base64').toString('latin1')).join('\n');
  return Object.entries(secrets)
    .filter(([, s]) => text.includes(s) || text.includes(Buffer.from(s).toString('base64')) || decoded.includes(s))
    .map(([name]) => name);
}

test("no caller's token reaches any Kafka topic (every format), the local logs or the logs", { timeout: 240_000 }, async () => {
  const env = harness();
  const admin = gw.kubeconfigFor(env.ADMIN_TOKEN, ns);
  const agent = gw.kubeconfigFor(env.AGENT_TOKEN, ns);
  // A ServiceAccount token issued by TokenRequest through the gateway, and one issued directly.
  const direct = await serviceAccountWithToken(ns, 'leak-direct');
  const viaGateway = await kubectl(admin, ['-n', ns, 'create', 'token', 'leak-direct', '--duration=1h']);
  assert.equal(viaGateway.status, 0, viaGateway.stderr);
  const issued = viaGateway.stdout.trim();
  const secrets: Record<string, string> = { ADMIN_TOKEN: env.ADMIN_TOKEN, AGENT_TOKEN: env.AGENT_TOKEN, 'SA token (direct)': direct, 'SA token (TokenRequest via gateway)': issued };

  // Every token is used as a caller through the gateway (each is checked by a TokenReview the webhooks review).
  for (const token of [env.AGENT_TOKEN, direct, issued]) await kubectl(gw.kubeconfigFor(token, ns), ['-n', ns, 'get', 'configmaps']);
  const kubeconfigOf = (token: string): string =>
    `apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: '${env.APISERVER_URL}'}\nusers:\n- name: u\n  user:\n    token: ${token}\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\n`;
  const manifests = [
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'kubeconfigs' }, data: { config: kubeconfigOf(env.AGENT_TOKEN), 'nginx.conf': `proxy_set_header Authorization "Bearer ${env.ADMIN_TOKEN}";` }, binaryData: { 'sa.json': Buffer.from(JSON.stringify({ apiVersion: 'v1', kind: 'Config', users: [{ name: 'sa', user: { token: direct } }] })).toString('base64') } },
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'opaque' }, stringData: { token: env.ADMIN_TOKEN, kubeconfig: kubeconfigOf(issued) } },
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'sa-token', annotations: { 'kubernetes.io/service-account.name': 'leak-direct' } }, type: 'kubernetes.io/service-account-token', data: { token: Buffer.from(direct).toString('base64') } },
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'bootstrap-token-abcdef' }, type: 'bootstrap.kubernetes.io/token', stringData: { 'token-id': 'abcdef', 'token-secret': env.AGENT_TOKEN.slice(0, 16) } },
    { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'leaky' }, spec: { containers: [{ name: 'app', image: 'busybox', args: ['--token', issued], env: [{ name: 'API_TOKEN', value: env.AGENT_TOKEN }] }] } },
  ];
  secrets['bootstrap token-secret'] = env.AGENT_TOKEN.slice(0, 16);
  for (const m of manifests) {
    // Client-side apply (the last-applied-configuration annotation copies the object), then a server-side apply of a change.
    const csa = await kubectl(admin, ['-n', ns, 'apply', '-f', '-'], JSON.stringify(m));
    assert.equal(csa.status, 0, csa.stderr);
    const changed = { ...m, metadata: { ...m.metadata, labels: { changed: 'yes' } } };
    const ssa = await kubectl(admin, ['-n', ns, 'apply', '--server-side', '--force-conflicts', '-f', '-'], JSON.stringify(changed));
    assert.equal(ssa.status, 0, ssa.stderr);
  }
  const deleted = await kubectl(admin, ['-n', ns, 'delete', 'secret', 'opaque']);
  assert.equal(deleted.status, 0, deleted.stderr);
  const sentinel = await kubectl(agent, ['-n', ns, 'create', 'configmap', 'leak-done']);
  // The agent may not write here: refused or not, the request went through the gateway and the TokenReview.
  void sentinel;
  const done = await kubectl(admin, ['-n', ns, 'create', 'configmap', 'leak-done-admin']);
  assert.equal(done.status, 0, done.stderr);

  await until('every event of the last write', () => {
    const reviews = seen.filter((e) => e.type === 'admission.review' && e.target?.name === 'leak-done-admin');
    // The gateway records a create after the API server answered it, so after the webhooks' events of it.
    const first = seen.findIndex((e) => e.target?.name === 'leak-done-admin');
    return reviews.length >= 2 * FORMATS.length && seen.slice(first).some((e) => e.type === 'api.request' && e.target?.resource === 'configmaps' && (e.body as { method: string }).method === 'POST');
  });
  assert.ok(seen.some((e) => e.type === 'admission.review' && e.target?.resource === 'tokenreviews'), 'the TokenReviews were reviewed');
  assert.ok(seen.some((e) => e.type === 'admission.review' && e.target?.subresource === 'token'), 'the TokenRequest was reviewed');
  for (const p of pipelines) await p.flush();

  const hits: string[] = [];
  const kafka = new Kafka({ clientId: `kt-leak-${id}`, brokers: env.KAFKA_BROKERS.split(','), logLevel: logLevel.NOTHING });
  let records = 0;
  for (const name of [...FORMATS, 'gateway']) {
    for (const topic of Object.values(topicsOf(name))) {
      const texts = await readTopic(kafka, topic);
      records += texts.length;
      for (const t of texts) for (const s of findSecrets(t, secrets)) hits.push(`${s} in Kafka topic ${topic}`);
    }
  }
  assert.ok(records > 0, 'the topics were read');
  // The gateway's events rendered in the two other formats, as a gateway configured with them would write them.
  for (const e of seen.filter((x) => x.source.component === 'proxy')) {
    for (const f of FORMATS) for (const s of findSecrets(render(e, canonicalJson(e), f).value, secrets)) hits.push(`${s} in the gateway's ${f} rendering of ${e.type}`);
  }
  for (const d of dataDirs) for (const f of filesUnder(d)) for (const s of findSecrets(readFileSync(f, 'latin1'), secrets)) hits.push(`${s} in ${path.relative(d, f)}`);
  for (const line of [...logLines, ...webhooks.flatMap((w) => w.logLines)]) for (const s of findSecrets(line, secrets)) hits.push(`${s} in a log line`);
  assert.deepEqual([...new Set(hits)], []);
});
