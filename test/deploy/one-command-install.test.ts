/**
 * `kubectl apply -k manifests/` with no step before it, against the real API
 * server (no node here: the pods never run, which this test does not need).
 *
 * One apply creates everything: the webhook configurations come last and
 * kubetrail's namespace is outside every fail-closed entry. Then, with no
 * webhook running, kubetrail's namespace and kube-system stay writable while
 * other writes get the fail-closed refusal. Finally the leader's and the
 * gateway's work is done with the ServiceAccount tokens of the shipped RBAC
 * (Lease, Secrets, ConfigMap, the caBundle of the two configurations): the
 * RBAC is enough, and nothing else is needed before the pods can serve.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { loadConfig } from '../../core/config.ts';
import { KubeClient } from '../../core/kube-client.ts';
import { createLogger } from '../../core/logger.ts';
import { ensureSigningKey } from '../../core/signing-key-secret.ts';
import { startSelfManagedTls } from '../../certs/self-managed-runtime.ts';
import { harness, kubectl } from '../support/env.ts';
import { REPO, deleteNamespace, render, suffix, type K8sObject } from './support.ts';

const other = `kt-oci-${suffix()}`;
const scratch = mkdtempSync(path.join(tmpdir(), 'kt-oci-'));
const log = createLogger({ level: 'silent' });
const manifests = path.join(REPO, 'manifests');
let kubeconfig = '';
let objects: K8sObject[] = [];
let applied = false;

before(async () => {
  kubeconfig = harness().ADMIN_KUBECONFIG;
  const ns = await kubectl(kubeconfig, ['get', 'namespace', 'kubetrail', '-o', 'name']);
  assert.notEqual(ns.status, 0, 'the namespace kubetrail must not exist yet (a first install)');
  // Created before the webhook configurations exist: afterwards, creating it would be refused too.
  assert.equal((await kubectl(kubeconfig, ['create', 'namespace', other])).status, 0);
  objects = await render(kubeconfig, manifests);
});

after(async () => {
  // Webhook configurations first: while they exist, deletes outside kubetrail's namespace are refused.
  await kubectl(kubeconfig, ['delete', 'validatingwebhookconfiguration,mutatingwebhookconfiguration', 'kubetrail', '--ignore-not-found']);
  if (applied) await kubectl(kubeconfig, ['delete', '-k', manifests, '--ignore-not-found', '--wait=false'], undefined, { timeoutMs: 120_000 });
  await deleteNamespace(kubeconfig, 'kubetrail');
  await deleteNamespace(kubeconfig, other);
  rmSync(scratch, { recursive: true, force: true });
});

test('the rendered install puts the webhook configurations last, without a caBundle for kubetrail to fill', () => {
  const kinds = objects.map((o) => o.kind);
  const firstWebhook = kinds.findIndex((k) => k.endsWith('WebhookConfiguration'));
  assert.ok(firstWebhook > 0);
  assert.deepEqual(kinds.slice(firstWebhook).sort(), ['MutatingWebhookConfiguration', 'ValidatingWebhookConfiguration']);
  for (const o of objects.slice(firstWebhook)) {
    for (const w of o['webhooks'] as { clientConfig: { caBundle?: string } }[]) assert.equal(w.clientConfig.caBundle, undefined);
  }
  assert.equal(objects.some((o) => o.kind === 'Secret'), false, 'no Secret to create beforehand: kubetrail creates its own');
});

test('one kubectl apply -k manifests/ creates everything', async () => {
  const r = await kubectl(kubeconfig, ['apply', '-k', manifests], undefined, { timeoutMs: 120_000 });
  applied = true;
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /validatingwebhookconfiguration\.admissionregistration\.k8s\.io\/kubetrail created/);
  assert.match(r.stdout, /statefulset\.apps\/kubetrail-webhook created/);
});

test('with no webhook running, kubetrail\'s namespace and kube-system stay writable and other writes get the fail-closed refusal', async () => {
  for (const ns of ['kubetrail', 'kube-system']) {
    const r = await kubectl(kubeconfig, ['-n', ns, 'create', 'configmap', `kt-oci-probe`, '--from-literal=k=v']);
    assert.equal(r.status, 0, `${ns}: ${r.stderr}`);
    await kubectl(kubeconfig, ['-n', ns, 'delete', 'configmap', 'kt-oci-probe']);
  }
  const r = await kubectl(kubeconfig, ['-n', other, 'create', 'configmap', 'kt-oci-probe', '--from-literal=k=v']);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /failed calling webhook "validate\.kubetrail\.io"/);
});

async function serviceAccountKubeconfig(sa: string): Promise<string> {
  const t = await kubectl(kubeconfig, ['-n', 'kubetrail', 'create', 'token', sa]);
  assert.equal(t.status, 0, t.stderr);
  const env = harness();
  const file = path.join(scratch, `${sa}.kubeconfig`);
  writeFileSync(
    file,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'h', cluster: { server: env.APISERVER_URL, 'certificate-authority': env.APISERVER_CA } }],
      users: [{ name: sa, user: { token: t.stdout.trim() } }],
      contexts: [{ name: 'h', context: { cluster: 'h', user: sa } }],
      'current-context': 'h',
    }),
  );
  return file;
}

test('with the shipped RBAC, a webhook replica elects itself, creates the certificate and signing key and fills both caBundles; the gateway reads them', async () => {
  const shipped = loadConfig({ env: {}, file: path.join(REPO, 'manifests', 'components', 'self-managed', 'config.yaml') });
  const asWebhook = await serviceAccountKubeconfig('kubetrail-webhook');
  const cfg = loadConfig({ env: {}, document: { dataDir: path.join(scratch, 'data'), selfManaged: { ...structuredClone(shipped.selfManaged), inCluster: false, kubeconfig: asWebhook } } });
  const leader = await startSelfManagedTls({ config: cfg, log, role: 'webhook', manual: true, identity: 'kubetrail-webhook-0', dir: path.join(scratch, 'w') });
  try {
    await leader.elector?.step();
    assert.equal(leader.elector?.isLeader(), true);
    await leader.certificates?.reconcile();
    assert.equal(await leader.watcher.poll(), true);
    const admin = new KubeClient({ kubeconfig });
    for (const kind of ['validatingwebhookconfigurations', 'mutatingwebhookconfigurations']) {
      const c = await admin.get<{ metadata: { name: string }; webhooks: { clientConfig: { caBundle?: string } }[] }>(`/apis/admissionregistration.k8s.io/v1/${kind}/kubetrail`);
      assert.ok(c && c.webhooks.length > 0);
      for (const w of c.webhooks) assert.ok(w.clientConfig.caBundle, `${kind}: every webhook has the caBundle`);
    }
    const sk = { namespace: 'kubetrail', secret: 'kubetrail-signing-key', configMap: 'kubetrail-signing-public-key' };
    const byWebhook = await ensureSigningKey(new KubeClient({ kubeconfig: asWebhook }), sk, log);
    const asProxy = await serviceAccountKubeconfig('kubetrail-proxy');
    const byProxy = await ensureSigningKey(new KubeClient({ kubeconfig: asProxy }), sk, log);
    assert.equal(byProxy.publicPem, byWebhook.publicPem, 'both components sign with the one key');
    // A second apply (an upgrade) keeps the caBundle the leader wrote: the manifests do not set it.
    const before = await admin.get<{ metadata: { name: string }; webhooks: { clientConfig: { caBundle?: string } }[] }>('/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/kubetrail');
    const again = await kubectl(kubeconfig, ['apply', '-k', manifests], undefined, { timeoutMs: 120_000 });
    assert.equal(again.status, 0, again.stderr);
    const afterApply = await admin.get<{ metadata: { name: string }; webhooks: { clientConfig: { caBundle?: string } }[] }>('/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/kubetrail');
    assert.deepEqual(afterApply?.webhooks.map((w) => w.clientConfig.caBundle), before?.webhooks.map((w) => w.clientConfig.caBundle));
    const gateway = await startSelfManagedTls({ config: loadConfig({ env: {}, document: { ...cfg, selfManaged: { ...structuredClone(cfg.selfManaged), kubeconfig: asProxy } } }), log, role: 'gateway', manual: true, dir: path.join(scratch, 'p') });
    assert.equal(await gateway.watcher.poll(), true, 'the gateway reads the serving certificate');
    await gateway.close();
  } finally {
    await leader.close();
  }
});

test('kubectl delete -k manifests/ uninstalls with no webhook running and leaves no webhook configuration behind', async () => {
  // --ignore-not-found: objects an earlier test's cleanup already removed are not a failure; every other refusal is.
  const r = await kubectl(kubeconfig, ['delete', '-k', manifests, '--ignore-not-found', '--wait=false'], undefined, { timeoutMs: 120_000 });
  assert.equal(r.status, 0, r.stderr);
  applied = false;
  const left = await kubectl(kubeconfig, ['get', 'validatingwebhookconfiguration,mutatingwebhookconfiguration,clusterrole,clusterrolebinding', '-o', 'name']);
  assert.equal(left.status, 0, left.stderr);
  assert.doesNotMatch(left.stdout, /\/kubetrail/);
});
