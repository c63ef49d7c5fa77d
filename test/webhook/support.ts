/**
 * Test support for the webhook: test-only PKI, a running webhook on a free
 * port over a policies directory copied from the starter pack, an HTTPS
 * client that trusts the test CA, and AdmissionReview builders.
 */
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { loadConfig, type Config, type ConfigInput } from '../../core/config.ts';
import { createLogger, type Logger } from '../../core/logger.ts';
import { createMetricsRegistry } from '../../core/health-server.ts';
import type { EventSink } from '../../core/sinks/sink.ts';
import { createCA, issueCert, type CertKeyPair } from '../../certs/generate.ts';
import { startWebhook, type Webhook } from '../../webhook/main.ts';
import type { NamespaceLookup } from '../../webhook/handler.ts';
import type { Drain } from '../../core/drain.ts';

/** The repository's starter pack of policies. */
export const STARTER_PACK = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'policies');

/** Test PKI written to a temp dir. */
export interface TestPki {
  dir: string;
  ca: CertKeyPair;
  certFile: string;
  keyFile: string;
  caBundle: string;
}

/** Creates a CA and a serving cert for 127.0.0.1/localhost in a fresh temp dir. */
export function testPki(): TestPki {
  const dir = mkdtempSync(path.join(tmpdir(), 'kt-webhook-tls-'));
  const ca = createCA({ commonName: 'kubetrail-test-webhook-ca' });
  const serving = issueCert(ca, { commonName: 'kubetrail-webhook', ips: ['127.0.0.1'], dnsNames: ['localhost'] });
  const certFile = path.join(dir, 'tls.crt');
  const keyFile = path.join(dir, 'tls.key');
  writeFileSync(certFile, serving.certPem);
  writeFileSync(keyFile, serving.keyPem);
  return { dir, ca, certFile, keyFile, caBundle: Buffer.from(ca.certPem).toString('base64') };
}

/** A logger that discards everything (or keeps lines when `lines` is given). */
export function quietLogger(lines?: string[]): Logger {
  return createLogger({
    level: 'debug',
    destination: new Writable({
      write(chunk, _enc, cb) {
        lines?.push(String(chunk));
        cb();
      },
    }),
  });
}

/** A policies dir: a copy of the starter pack (or empty), removed by `cleanup`. */
export function policiesDir(withStarterPack = true): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'kt-webhook-policies-'));
  if (withStarterPack) cpSync(STARTER_PACK, dir, { recursive: true });
  return dir;
}

/** A running test webhook and what it was built from. */
export interface TestWebhook {
  webhook: Webhook;
  pki: TestPki;
  policies: string;
  config: Config;
  url: string;
  logLines: string[];
  close(): Promise<void>;
}

/** Starts a webhook on 127.0.0.1:0 with `sink`, the starter pack, and config overrides. */
export async function startTestWebhook(sink: EventSink, overrides: ConfigInput = {}, opts: { policies?: string; namespaceLookup?: NamespaceLookup; drain?: Drain } = {}): Promise<TestWebhook> {
  const pki = testPki();
  const policies = opts.policies ?? policiesDir();
  const config = loadConfig({ document: { ...overrides, policies: { dir: policies, reloadDebounceMs: 50 }, webhook: { ...(overrides.webhook ?? {}), tls: { certFile: pki.certFile, keyFile: pki.keyFile } } } });
  const logLines: string[] = [];
  let webhook: Webhook;
  try {
    webhook = await startWebhook({ config, log: quietLogger(logLines), sink, registry: createMetricsRegistry(), listen: '127.0.0.1:0', ...(opts.namespaceLookup ? { namespaceLookup: opts.namespaceLookup } : {}), ...(opts.drain ? { drain: opts.drain } : {}) });
  } catch (err) {
    rmSync(pki.dir, { recursive: true, force: true });
    if (!opts.policies) rmSync(policies, { recursive: true, force: true });
    throw err;
  }
  return {
    webhook,
    pki,
    policies,
    config,
    url: `https://127.0.0.1:${webhook.port}`,
    logLines,
    close: async () => {
      await webhook.close();
      rmSync(pki.dir, { recursive: true, force: true });
      if (!opts.policies) rmSync(policies, { recursive: true, force: true });
    },
  };
}

/** What an HTTPS call returned. */
export interface HttpResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  json(): any;
}

/** POSTs (or `method`s) to the webhook, trusting the test CA. */
export function call(url: string, caPem: string, body: string | Buffer, opts: { method?: string; contentType?: string | null; agent?: https.Agent } = {}): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    if (opts.contentType !== null) headers['content-type'] = opts.contentType ?? 'application/json';
    const req = https.request(url, { method: opts.method ?? 'POST', ca: caPem, headers, agent: opts.agent ?? false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text, json: () => JSON.parse(text) });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** A v1 AdmissionReview for `request` fields over sensible defaults. */
export function review(request: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: randomUUID(),
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      requestKind: { group: '', version: 'v1', kind: 'Pod' },
      requestResource: { group: '', version: 'v1', resource: 'pods' },
      name: 'web',
      namespace: 'agents',
      operation: 'CREATE',
      userInfo: { username: 'agent-ci', uid: 'u-1', groups: ['agents', 'system:authenticated'], extra: { 'kubetrail.io/session': ['sess-123'] } },
      object: pod(),
      oldObject: null,
      dryRun: false,
      options: { kind: 'CreateOptions', apiVersion: 'meta.k8s.io/v1' },
      ...request,
    },
  };
}

/** A small Pod; `extra` is merged into the container. */
export function pod(extra: Record<string, unknown> = {}, name = 'web'): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: 'agents', labels: { app: 'web' } },
    spec: { containers: [{ name: 'app', image: 'nginx:1.27', env: [{ name: 'DB_PASSWORD', value: 'hunter2' }, { name: 'MODE', value: 'prod' }], ...extra }] },
  };
}

/** Options of {@link registerWebhooks}. */
export interface RegistrationOptions {
  /** Unique id: names the configurations and is the value of the `kubetrail-test` label objects must carry. */
  id: string;
  url: string;
  caBundle: string;
  /** Namespaces whose labelled objects go through the webhooks (default [agents]). */
  namespaces?: string[];
  /** Also register CONNECT on pods/exec|attach|portforward in kube-system for these pod names. */
  connectPods?: string[];
  timeoutSeconds?: number;
}

/**
 * Registers a Validating- and a MutatingWebhookConfiguration by URL with the
 * given caBundle, scoped so that only this test's objects reach the webhook
 * (objects labelled kubetrail-test=<id>; CONNECT only for the named pods, as a
 * non-empty objectSelector never matches CONNECT), waits until the API server
 * calls it, and returns the cleanup.
 */
export async function registerWebhooks(kubeconfig: string, o: RegistrationOptions, seen: () => boolean | Promise<boolean>): Promise<() => Promise<void>> {
  const { kubectl } = await import('../support/env.ts');
  const namespaces = o.namespaces ?? ['agents'];
  const common = {
    admissionReviewVersions: ['v1'],
    sideEffects: 'NoneOnDryRun',
    failurePolicy: 'Fail',
    timeoutSeconds: o.timeoutSeconds ?? 10,
    namespaceSelector: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: namespaces }] },
    objectSelector: { matchLabels: { 'kubetrail-test': o.id } },
  };
  const objectRules = [
    { operations: ['CREATE', 'UPDATE', 'DELETE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods', 'secrets', 'configmaps'] },
    { operations: ['CREATE', 'UPDATE', 'DELETE'], apiGroups: ['apps'], apiVersions: ['v1'], resources: ['deployments'] },
  ];
  const validating: Record<string, unknown>[] = [
    { name: 'objects.validate.kubetrail.io', clientConfig: { url: `${o.url}/validate`, caBundle: o.caBundle }, rules: objectRules, ...common },
  ];
  if (o.connectPods && o.connectPods.length > 0) {
    validating.push({
      name: 'connect.validate.kubetrail.io',
      clientConfig: { url: `${o.url}/validate`, caBundle: o.caBundle },
      rules: [{ operations: ['CONNECT'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods/exec', 'pods/attach', 'pods/portforward'] }],
      ...common,
      objectSelector: {},
      namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } },
      matchConditions: [{ name: 'this-test-only', expression: `request.name in ${JSON.stringify(o.connectPods)}` }],
    });
  }
  const docs = [
    { apiVersion: 'admissionregistration.k8s.io/v1', kind: 'ValidatingWebhookConfiguration', metadata: { name: `kt-validate-${o.id}` }, webhooks: validating },
    {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'MutatingWebhookConfiguration',
      metadata: { name: `kt-mutate-${o.id}` },
      webhooks: [{ name: 'objects.mutate.kubetrail.io', clientConfig: { url: `${o.url}/mutate`, caBundle: o.caBundle }, rules: objectRules, reinvocationPolicy: 'Never', ...common }],
    },
  ];
  const cleanup = async (): Promise<void> => {
    await kubectl(kubeconfig, ['delete', 'validatingwebhookconfiguration', `kt-validate-${o.id}`, '--ignore-not-found']);
    await kubectl(kubeconfig, ['delete', 'mutatingwebhookconfiguration', `kt-mutate-${o.id}`, '--ignore-not-found']);
  };
  const applied = await kubectl(kubeconfig, ['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: docs }));
  if (applied.status !== 0) {
    await cleanup();
    throw new Error(`registering the webhooks failed: ${applied.stderr}`);
  }
  // The API server picks configurations up asynchronously: probe with a labelled ConfigMap until the webhook sees one.
  const probe = `kt-probe-${o.id}`;
  const ns = namespaces[0] as string;
  const deadline = Date.now() + 60_000;
  let ok = await seen();
  while (!ok && Date.now() < deadline) {
    await kubectl(kubeconfig, ['-n', ns, 'delete', 'configmap', probe, '--ignore-not-found', '--wait=false']);
    await kubectl(kubeconfig, ['-n', ns, 'apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: probe, labels: { 'kubetrail-test': o.id } }, data: { probe: 'yes' } }));
    ok = await seen();
    if (!ok) await new Promise((r) => setTimeout(r, 250));
  }
  await kubectl(kubeconfig, ['-n', ns, 'delete', 'configmap', probe, '--ignore-not-found', '--wait=false']);
  if (!ok) {
    await cleanup();
    throw new Error('the API server never called the registered webhook');
  }
  return cleanup;
}

/** A short unique id for names (lowercase, DNS-safe). */
export function uniqueId(): string {
  return `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
}

/**
 * Grants agent-ci what these tests need in `namespace` with a Role and
 * RoleBinding of its own, and waits until RBAC allows it. (The harness binds
 * the aggregated ClusterRole `edit`, but without kube-controller-manager the
 * aggregation never fills its rules, so `edit` grants nothing.)
 */
export async function grantAgent(kubeconfig: string, agentKubeconfig: string, namespace: string, name: string, rules: Record<string, unknown>[]): Promise<() => Promise<void>> {
  const { kubectl } = await import('../support/env.ts');
  const docs = [
    { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'Role', metadata: { name, namespace }, rules },
    { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', metadata: { name, namespace }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name }, subjects: [{ kind: 'User', name: 'agent-ci', apiGroup: 'rbac.authorization.k8s.io' }] },
  ];
  const r = await kubectl(kubeconfig, ['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: docs }));
  if (r.status !== 0) throw new Error(`granting the agent failed: ${r.stderr}`);
  // Probe with a plain resource: `can-i create pods/exec` would read "exec" as a resource name.
  const probe = rules.find((r) => (r as { resources: string[] }).resources.some((x) => !x.includes('/'))) as { resources: string[]; verbs: string[] };
  const resource = probe.resources.find((x) => !x.includes('/')) as string;
  for (let i = 0; i < 80; i++) {
    const can = await kubectl(agentKubeconfig, ['auth', 'can-i', probe.verbs[0] as string, resource, '-n', namespace]);
    if (can.stdout.trim() === 'yes') break;
    await new Promise((res) => setTimeout(res, 250));
  }
  return async () => void (await kubectl(kubeconfig, ['-n', namespace, 'delete', `role/${name}`, `rolebinding/${name}`, '--ignore-not-found']));
}
