/**
 * The gateway's own upstream credential can be a client certificate (as a
 * kubeconfig often has) instead of a bearer token: the API server then sees
 * the certificate's identity impersonating the caller. The certificate is
 * minted by this test from the harness CA.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { issueCert } from '../../certs/generate.ts';
import { harness, kubectl } from '../support/env.ts';
import { auditEntries, createNamespace, serviceAccountWithToken, startTestGateway, uniq, type TestGateway } from './support.ts';

const ns = `gw-cert-${uniq()}`;
const cn = `kubetrail-gateway-${uniq()}`;
let t: TestGateway;
let dropNs: () => Promise<void>;
const dir = mkdtempSync(path.join(tmpdir(), 'kubetrail-gw-cert-'));

before(async () => {
  const env = harness();
  dropNs = await createNamespace(ns);
  const ca = { certPem: readFileSync(env.APISERVER_CA, 'utf8'), keyPem: readFileSync(path.join(env.HARNESS_DIR, 'control-plane', 'ca.key'), 'utf8') };
  // system:masters stands in for the impersonate ClusterRole a deployed gateway's identity is bound to.
  const client = issueCert(ca, { commonName: cn, organization: ['system:masters'], usages: ['clientAuth'] });
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  const kc = path.join(dir, 'upstream.kubeconfig');
  writeFileSync(
    kc,
    `apiVersion: v1
kind: Config
clusters: [{name: h, cluster: {server: "${env.APISERVER_URL}", certificate-authority-data: ${b64(ca.certPem)}}}]
users: [{name: gw, user: {client-certificate-data: ${b64(client.certPem)}, client-key-data: ${b64(client.keyPem)}}}]
contexts: [{name: h, context: {cluster: h, user: gw}}]
current-context: h
`,
    { mode: 0o600 },
  );
  t = await startTestGateway({ upstreamKubeconfig: kc });
});
after(async () => {
  await t?.close();
  await dropNs?.();
  rmSync(dir, { recursive: true, force: true });
});

test('with a client-certificate upstream kubeconfig, the API server sees the certificate identity impersonating the caller', async () => {
  const kc = t.kubeconfigFor(await serviceAccountWithToken(ns, 'certy'), ns);
  const name = `cert-${uniq()}`;
  const r = await kubectl(kc, ['create', 'configmap', name, '--from-literal=a=b']);
  assert.equal(r.status, 0, r.stderr);
  // By name: with the harness node, the controller-manager also creates kube-root-ca.crt in the namespace.
  const entries = await auditEntries(
    (e) => e['verb'] === 'create' && String(e['requestURI']).includes(`/namespaces/${ns}/configmaps`) && (e['objectRef'] as { name?: string } | undefined)?.name === name && e['stage'] === 'ResponseComplete',
  );
  assert.equal(entries.length, 1);
  const e = entries[0] as { user: { username: string }; impersonatedUser: { username: string } };
  assert.equal(e.user.username, cn);
  assert.equal(e.impersonatedUser.username, `system:serviceaccount:${ns}:certy`);
});
