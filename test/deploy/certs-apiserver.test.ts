/**
 * `kubetrail certs` against the real API server (harness): its output serves
 * TLS that the API server accepts when calling a webhook registered with the
 * printed caBundle, for both key types; and a CA rotation keeps the old CA in
 * the bundle, so the certificate served before the rollover stays trusted —
 * until `--drop-old-ca`, after which it is refused (the negative control).
 */
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { harness, kubectl } from '../support/env.ts';
import { deleteNamespace, kubetrailCerts, suffix } from './support.ts';

const ns = `kt-certs-${suffix()}`;
const webhookConfigs: string[] = [];
const scratch = mkdtempSync(path.join(tmpdir(), 'kt-certs-api-'));

before(async () => {
  const r = await kubectl(harness().ADMIN_KUBECONFIG, ['create', 'namespace', ns]);
  assert.equal(r.status, 0, r.stderr);
});

after(async () => {
  const env = harness();
  for (const name of webhookConfigs) await kubectl(env.ADMIN_KUBECONFIG, ['delete', 'validatingwebhookconfiguration', name, '--ignore-not-found']);
  await kubectl(env.ADMIN_KUBECONFIG, ['-n', ns, 'delete', 'configmaps', '--all']);
  await deleteNamespace(env.ADMIN_KUBECONFIG, ns);
  rmSync(scratch, { recursive: true, force: true });
});

/** An HTTPS admission handler that admits everything except names starting with "deny". */
async function startHandler(certDir: string): Promise<{ server: Server; port: number; seen: string[]; serve: (dir: string) => void }> {
  const seen: string[] = [];
  const load = (dir: string): { cert: Buffer; key: Buffer } => ({ cert: readFileSync(path.join(dir, 'tls.crt')), key: readFileSync(path.join(dir, 'tls.key')) });
  const server = createServer(load(certDir), (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const review = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { request: { uid: string; name: string } };
      seen.push(review.request.name);
      const deny = review.request.name.startsWith('deny');
      res.writeHead(200, { 'content-type': 'application/json' }).end(
        JSON.stringify({
          apiVersion: 'admission.k8s.io/v1',
          kind: 'AdmissionReview',
          response: { uid: review.request.uid, allowed: !deny, ...(deny ? { status: { code: 403, message: 'the certs test says no' } } : {}) },
        }),
      );
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    server,
    port: (server.address() as AddressInfo).port,
    seen,
    // New certificate for new connections; dropping the open ones makes the API server handshake again.
    serve: (dir: string) => {
      server.setSecureContext(load(dir));
      server.closeAllConnections();
    },
  };
}

/**
 * Registers (or updates) a webhook for CREATE configmaps in the test namespace only, trusting
 * `caBundle`. Each test removes its own when it ends: tests share the namespace, and a
 * configuration left pointing at a closed server would fail the next test's creates.
 */
async function register(t: { after: (fn: () => Promise<void>) => void }, name: string, port: number, caBundle: string): Promise<void> {
  if (!webhookConfigs.includes(name)) {
    t.after(async () => void (await kubectl(harness().ADMIN_KUBECONFIG, ['delete', 'validatingwebhookconfiguration', name, '--ignore-not-found'])));
  }
  const vwc = {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'ValidatingWebhookConfiguration',
    metadata: { name },
    webhooks: [
      {
        name: 'certs-test.kubetrail.io',
        clientConfig: { url: `https://127.0.0.1:${port}/validate`, caBundle },
        rules: [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['configmaps'] }],
        namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': ns } },
        sideEffects: 'None',
        admissionReviewVersions: ['v1'],
        failurePolicy: 'Fail',
        timeoutSeconds: 5,
      },
    ],
  };
  if (!webhookConfigs.includes(name)) webhookConfigs.push(name);
  const r = await kubectl(harness().ADMIN_KUBECONFIG, ['apply', '-f', '-'], JSON.stringify(vwc));
  assert.equal(r.status, 0, r.stderr);
}

let counter = 0;
/** Creates a ConfigMap through the API server (so through the webhook); returns how kubectl ended. */
async function createConfigMap(prefix: string): Promise<{ ok: boolean; name: string; stderr: string }> {
  const name = `${prefix}-${++counter}`;
  const r = await kubectl(harness().ADMIN_KUBECONFIG, ['-n', ns, 'create', 'configmap', name, '--from-literal=k=v']);
  return { ok: r.status === 0, name, stderr: r.stderr };
}

/**
 * The API server applies webhook configuration changes asynchronously: retry
 * until `want` holds for a fresh create (or give up after 30 s and report the last result).
 */
async function eventually(prefix: string, want: (r: { ok: boolean; name: string; stderr: string }) => boolean): Promise<{ ok: boolean; name: string; stderr: string }> {
  const deadline = Date.now() + 30_000;
  let last = await createConfigMap(prefix);
  while (!want(last) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 250));
    last = await createConfigMap(prefix);
  }
  return last;
}

async function certs(dir: string, ...extra: string[]): Promise<string> {
  const r = await kubetrailCerts(['--out', dir, '--dns', 'localhost', '--ip', '127.0.0.1', ...extra]);
  assert.equal(r.status, 0, r.stderr);
  const caBundle = r.stdout.trim();
  assert.match(caBundle, /^[A-Za-z0-9+/]+=*$/, 'stdout is the base64 caBundle alone');
  return caBundle;
}

for (const keyType of ['ecdsa-p256', 'rsa-2048'] as const) {
  test(`the API server accepts a ${keyType} serving certificate from kubetrail certs, trusting the printed caBundle`, async (t) => {
    const dir = path.join(scratch, keyType);
    const caBundle = await certs(dir, '--key-type', keyType);
    const h = await startHandler(dir);
    t.after(() => h.server.close());
    await register(t, `kt-certs-${keyType}-${suffix()}`, h.port, caBundle);
    const allowed = await eventually(`allow-${keyType.slice(0, 3)}`, (r) => r.ok && h.seen.includes(r.name));
    assert.ok(allowed.ok && h.seen.includes(allowed.name), `the webhook was never called: ${allowed.stderr}`);
    const denied = await createConfigMap(`deny-${keyType.slice(0, 3)}`);
    assert.equal(denied.ok, false);
    assert.match(denied.stderr, /admission webhook "certs-test\.kubetrail\.io" denied the request: the certs test says no/);
  });
}

test('after a CA rotation the bundle trusts both the new and the old serving certificate; --drop-old-ca then refuses the old one', async (t) => {
  const dir = path.join(scratch, 'rollover');
  const oldCerts = path.join(scratch, 'rollover-old');
  const bundle1 = await certs(dir);
  // Keep the pre-rotation serving pair, as a pod that has not picked up the new Secret yet would.
  cpSync(dir, oldCerts, { recursive: true });

  const h = await startHandler(oldCerts);
  t.after(() => h.server.close());
  const name = `kt-certs-rollover-${suffix()}`;
  await register(t, name, h.port, bundle1);
  const before = await eventually('before', (r) => r.ok && h.seen.includes(r.name));
  assert.ok(before.ok && h.seen.includes(before.name), before.stderr);

  // Rotate: new CA first in the bundle, old CA kept; the serving cert is re-issued by the new CA.
  const bundle2 = await certs(dir, '--rotate-ca');
  assert.notEqual(bundle2, bundle1);
  assert.ok(Buffer.from(bundle2, 'base64').toString().includes(Buffer.from(bundle1, 'base64').toString()), 'the old CA is still in the bundle');
  await register(t, name, h.port, bundle2);

  // Once the API server uses the new bundle it accepts the new certificate (bundle1 alone could not verify it) ...
  h.serve(dir);
  const withNew = await eventually('new-cert', (r) => r.ok && h.seen.includes(r.name));
  assert.ok(withNew.ok && h.seen.includes(withNew.name), `new certificate refused: ${withNew.stderr}`);
  // ... and, with that same bundle, still the old one: a replica that has not reloaded keeps working.
  h.serve(oldCerts);
  for (let i = 0; i < 3; i++) {
    const withOld = await createConfigMap('old-cert');
    assert.ok(withOld.ok && h.seen.includes(withOld.name), `old certificate refused during the rollover: ${withOld.stderr}`);
  }

  // Ending the rollover removes the old CA: the old certificate is no longer trusted.
  const bundle3 = await certs(dir, '--drop-old-ca');
  assert.equal(Buffer.from(bundle3, 'base64').toString().match(/BEGIN CERTIFICATE/g)?.length, 1);
  await register(t, name, h.port, bundle3);
  h.serve(oldCerts);
  const refused = await eventually('after-drop', (r) => !r.ok);
  assert.equal(refused.ok, false, 'the old certificate was still accepted after --drop-old-ca');
  assert.match(refused.stderr, /failed calling webhook "certs-test\.kubetrail\.io".*(x509|certificate)/s);
  // And the current certificate is accepted with the one-CA bundle.
  h.serve(dir);
  const current = await eventually('current', (r) => r.ok && h.seen.includes(r.name));
  assert.ok(current.ok, current.stderr);
});
