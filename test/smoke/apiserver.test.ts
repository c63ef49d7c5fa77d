import assert from 'node:assert/strict';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { createCA, issueCert } from '../../certs/generate.ts';
import { harness, kubectl } from '../support/env.ts';

test('kubectl lists namespaces on the real API server with the admin kubeconfig', async () => {
  const env = harness();
  const r = await kubectl(env.ADMIN_KUBECONFIG, ['get', 'namespaces', '-o', 'name']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /namespace\/default/);
  assert.match(r.stdout, /namespace\/kube-system/);
});

test('the agent user is forbidden to create a ClusterRoleBinding (RBAC is real)', async () => {
  const env = harness();
  const r = await kubectl(env.AGENT_KUBECONFIG, ['create', 'clusterrolebinding', 'escalate', '--clusterrole=cluster-admin', '--user=agent-ci']);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /forbidden/i);
  assert.match(r.stderr, /agent-ci/);
});

test('a ValidatingWebhookConfiguration registered by URL makes the API server call our HTTPS handler, and its denial reaches kubectl', async (t) => {
  const env = harness();
  // Test-only PKI, generated here (never read from certs/).
  const ca = createCA({ commonName: 'smoke-webhook-ca' });
  const serving = issueCert(ca, { commonName: 'smoke-webhook', ips: ['127.0.0.1'], dnsNames: ['localhost'] });
  const seen: { operation: string; name: string; username: string }[] = [];
  const server = createServer({ cert: serving.certPem, key: serving.keyPem }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const review = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      seen.push({ operation: review.request.operation, name: review.request.name, username: review.request.userInfo.username });
      const deny = review.request.name === 'smoke-denied';
      res.writeHead(200, { 'content-type': 'application/json' }).end(
        JSON.stringify({
          apiVersion: 'admission.k8s.io/v1',
          kind: 'AdmissionReview',
          response: deny
            ? { uid: review.request.uid, allowed: false, status: { code: 403, message: 'smoke test says no' } }
            : { uid: review.request.uid, allowed: true },
        }),
      );
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.after(() => server.close());
  const port = (server.address() as AddressInfo).port;
  const cfgName = `smoke-${port}`;
  const vwc = {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'ValidatingWebhookConfiguration',
    metadata: { name: cfgName },
    webhooks: [
      {
        name: 'smoke.kubetrail.io',
        clientConfig: { url: `https://127.0.0.1:${port}/validate`, caBundle: Buffer.from(ca.certPem).toString('base64') },
        rules: [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['configmaps'] }],
        namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'default' } },
        sideEffects: 'None',
        admissionReviewVersions: ['v1'],
        failurePolicy: 'Fail',
        timeoutSeconds: 5,
      },
    ],
  };
  const applied = await kubectl(env.ADMIN_KUBECONFIG, ['apply', '-f', '-'], JSON.stringify(vwc));
  assert.equal(applied.status, 0, applied.stderr);
  t.after(async () => void await kubectl(env.ADMIN_KUBECONFIG, ['delete', 'validatingwebhookconfiguration', cfgName, '--ignore-not-found']));

  // The API server picks up new webhook configurations asynchronously; retry the allowed create until the webhook sees it.
  const deadline = Date.now() + 30_000;
  while (!seen.some((s) => s.name === 'smoke-allowed') && Date.now() < deadline) {
    await kubectl(env.ADMIN_KUBECONFIG, ['-n', 'default', 'delete', 'configmap', 'smoke-allowed', '--ignore-not-found']);
    await kubectl(env.ADMIN_KUBECONFIG, ['-n', 'default', 'create', 'configmap', 'smoke-allowed', '--from-literal=a=b']);
    await new Promise((r) => setTimeout(r, 300));
  }
  assert.ok(seen.some((s) => s.name === 'smoke-allowed' && s.operation === 'CREATE' && s.username === 'admin'), 'webhook was never called');

  const denied = await kubectl(env.ADMIN_KUBECONFIG, ['-n', 'default', 'create', 'configmap', 'smoke-denied', '--from-literal=a=b']);
  assert.notEqual(denied.status, 0);
  assert.match(denied.stderr, /admission webhook "smoke.kubetrail.io" denied the request: smoke test says no/);
  const audit = readFileSync(env.APISERVER_AUDIT_LOG, 'utf8');
  assert.match(audit, /"name":"smoke-denied"/);
});
