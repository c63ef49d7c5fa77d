/**
 * The self-managed signing key against the real API server: replicas racing
 * to create it end up with one key; an existing key is never replaced (nor
 * an unusable one); its public key is published in a ConfigMap, and
 * `kubetrail verify --public-key-from-cluster` checks a log signed with it.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Registry } from 'prom-client';
import { KubeClient } from '../../core/kube-client.ts';
import { createLogger } from '../../core/logger.ts';
import { createEventPipeline, localLogDir } from '../../core/pipeline.ts';
import { SIGNING_KEY_CONFIGMAP_KEY, SigningKeyError, ensureSigningKey, withClusterSigningKey } from '../../core/signing-key-secret.ts';
import { apiRequestDraft, pipelineConfig } from '../pipeline/support.ts';
import { harness, kubectl, run } from '../support/env.ts';
import { REPO, deleteNamespace, suffix } from './support.ts';

const ns = `kt-sk-${suffix()}`;
const scratch = mkdtempSync(path.join(tmpdir(), 'kt-sk-'));
const log = createLogger({ level: 'silent' });
let kubeconfig = '';
let client: KubeClient;

before(async () => {
  kubeconfig = harness().ADMIN_KUBECONFIG;
  client = new KubeClient({ kubeconfig });
  assert.equal((await kubectl(kubeconfig, ['create', 'namespace', ns])).status, 0);
});
after(async () => {
  await deleteNamespace(kubeconfig, ns);
  rmSync(scratch, { recursive: true, force: true });
});

test('replicas racing to create the signing key all end up with the one key that was stored', async () => {
  const loc = { namespace: ns, secret: 'race-key', configMap: 'race-pub' };
  const results = await Promise.all([0, 1, 2, 3].map(() => ensureSigningKey(new KubeClient({ kubeconfig }), loc, log)));
  assert.equal(new Set(results.map((r) => r.privatePem)).size, 1);
  const stored = await client.get<{ metadata: { name: string }; data: Record<string, string> }>(`/api/v1/namespaces/${ns}/secrets/race-key`);
  assert.equal(Buffer.from(stored?.data['signing.pem'] ?? '', 'base64').toString(), results[0]?.privatePem);
  const cm = await client.get<{ metadata: { name: string }; data: Record<string, string> }>(`/api/v1/namespaces/${ns}/configmaps/race-pub`);
  assert.equal(cm?.data[SIGNING_KEY_CONFIGMAP_KEY], results[0]?.publicPem);
});

test('an existing key is used as it is, and a ConfigMap that disagrees with it is corrected', async () => {
  const pem = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  assert.equal((await kubectl(kubeconfig, ['-n', ns, 'create', 'secret', 'generic', 'own-key', `--from-literal=signing.pem=${pem}`])).status, 0);
  assert.equal((await kubectl(kubeconfig, ['-n', ns, 'create', 'configmap', 'own-pub', '--from-literal=signing.pub.pem=stale'])).status, 0);
  const r = await ensureSigningKey(client, { namespace: ns, secret: 'own-key', configMap: 'own-pub' }, log);
  assert.equal(r.privatePem, pem);
  const cm = await client.get<{ metadata: { name: string }; data: Record<string, string> }>(`/api/v1/namespaces/${ns}/configmaps/own-pub`);
  assert.equal(cm?.data[SIGNING_KEY_CONFIGMAP_KEY], r.publicPem);
});

test('an unusable key is refused (SIGNKEY_ERR_UNUSABLE) and left as it is', async () => {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  assert.equal((await kubectl(kubeconfig, ['-n', ns, 'create', 'secret', 'generic', 'bad-key', `--from-literal=signing.pem=${rsa}`])).status, 0);
  await assert.rejects(ensureSigningKey(client, { namespace: ns, secret: 'bad-key', configMap: 'bad-pub' }, log), (err: unknown) => err instanceof SigningKeyError && err.code === 'SIGNKEY_ERR_UNUSABLE');
  const stored = await client.get<{ metadata: { name: string }; data: Record<string, string> }>(`/api/v1/namespaces/${ns}/secrets/bad-key`);
  assert.equal(Buffer.from(stored?.data['signing.pem'] ?? '', 'base64').toString(), rsa);
});

test('kubetrail verify --public-key-from-cluster checks a log signed with the cluster key, and --public-key still works', async () => {
  const dataDir = path.join(scratch, 'data');
  const cfg = await withClusterSigningKey(pipelineConfig(dataDir, { selfManaged: { namespace: ns, kubeconfig, signingKey: { secret: 'pipe-key', configMap: 'pipe-pub' } } }), log);
  assert.ok(cfg.signing.keyFile?.startsWith(path.join(dataDir, 'keys')));
  const p = await createEventPipeline({ config: cfg, log, registry: new Registry(), component: 'proxy', instance: 'sk' });
  for (let i = 0; i < 20; i++) await p.emit(apiRequestDraft(i, 10));
  await p.close();
  const logDir = localLogDir(dataDir, 'proxy');
  const cli = path.join(REPO, 'cli', 'main.ts');
  const ok = await run(process.execPath, [cli, 'verify', '--log-dir', logDir, '--public-key-from-cluster', `${ns}/pipe-pub`, '--kubeconfig', kubeconfig]);
  assert.equal(ok.status, 0, ok.stdout + ok.stderr);
  // A key that did not sign the log: the checkpoints do not verify.
  const other = path.join(scratch, 'other.pub.pem');
  writeFileSync(other, generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }).toString());
  const bad = await run(process.execPath, [cli, 'verify', '--log-dir', logDir, '--public-key', other]);
  assert.equal(bad.status, 1, bad.stdout + bad.stderr);
  const missing = await run(process.execPath, [cli, 'verify', '--log-dir', logDir, '--public-key-from-cluster', `${ns}/nope`, '--kubeconfig', kubeconfig]);
  assert.equal(missing.status, 2);
  assert.match(missing.stderr, /ConfigMap .*\/nope has no signing\.pub\.pem \(it does not exist\)/);
});
