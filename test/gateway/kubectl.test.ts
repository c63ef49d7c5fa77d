/**
 * The machine's kubectl through the gateway to the real API server, for an
 * OIDC user (test issuer on loopback) and a ServiceAccount token: get, apply,
 * delete, watch; RBAC decisions are the impersonated user's; every request is
 * recorded as an api.request event, and the API server's audit log shows the
 * gateway impersonating the caller with the session id in userInfo.extra.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { KubetrailEvent } from '../../core/events/model.ts';
import { harness, kubectl } from '../support/env.ts';
import { startOidcIssuer, type OidcIssuer } from '../tools/oidc-issuer.ts';
import { adminApply, auditEntries, createNamespace, serviceAccountWithToken, startTestGateway, uniq, type TestGateway } from './support.ts';

const ns = `gw-kubectl-${uniq()}`;
let issuer: OidcIssuer;
let t: TestGateway;
let dropNs: () => Promise<void>;
let aliceKc: string;
let robotKc: string;
let robotToken: string;

before(async () => {
  issuer = await startOidcIssuer();
  t = await startTestGateway({ issuers: [issuer] });
  dropNs = await createNamespace(ns);
  await adminApply(`apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: oidc-devs-edit, namespace: ${ns}}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: gw-editor}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: "oidc:devs"}
`);
  aliceKc = t.kubeconfigFor(await issuer.sign({ sub: 'alice', aud: 'kubetrail', groups: ['devs'], exp: Math.floor(Date.now() / 1000) + 3600 }), ns);
  robotToken = await serviceAccountWithToken(ns, 'robot');
  robotKc = t.kubeconfigFor(robotToken, ns);
});

after(async () => {
  await t?.close();
  await issuer?.close();
  await dropNs?.();
});

function apiRequests(pred: (e: KubetrailEvent<'api.request'>) => boolean): KubetrailEvent<'api.request'>[] {
  return t.sink.ofType('api.request').filter(pred);
}

for (const who of [
  { name: 'an OIDC user', kc: () => aliceKc, user: 'oidc:alice', authn: 'oidc' },
  { name: 'a ServiceAccount token', kc: () => robotKc, user: `system:serviceaccount:${ns}:robot`, authn: 'serviceaccount' },
]) {
  test(`${who.name}: kubectl apply, get and delete work through the gateway and each request is recorded`, async () => {
    const cm = `cm-${uniq()}`;
    const manifest = `apiVersion: v1
kind: ConfigMap
metadata: {name: ${cm}}
data: {greeting: hello}
`;
    const applied = await kubectl(who.kc(), ['apply', '-f', '-'], manifest);
    assert.equal(applied.status, 0, applied.stderr);
    const got = await kubectl(who.kc(), ['get', 'configmap', cm, '-o', 'jsonpath={.data.greeting}']);
    assert.equal(got.status, 0, got.stderr);
    assert.equal(got.stdout, 'hello');
    const deleted = await kubectl(who.kc(), ['delete', 'configmap', cm]);
    assert.equal(deleted.status, 0, deleted.stderr);

    const create = apiRequests((e) => e.target?.name === undefined && e.target?.namespace === ns && e.body.verb === 'create' && (e.body.requestBody as { metadata?: { name?: string } } | undefined)?.metadata?.name === cm);
    assert.equal(create.length, 1, 'one api.request for the create');
    const ev = create[0] as KubetrailEvent<'api.request'>;
    assert.equal(ev.actor?.username, who.user);
    assert.equal(ev.actor?.authn, who.authn);
    assert.equal(ev.body.status, 201);
    assert.equal(ev.target?.resource, 'configmaps');
    assert.ok(ev.body.bytesIn > 0 && ev.body.bytesOut > 0);
    assert.ok(ev.correlation?.session, 'session id recorded');
    assert.ok(ev.correlation?.auditId, 'API server audit id recorded');
    const del = apiRequests((e) => e.target?.name === cm && e.body.verb === 'delete');
    assert.equal(del.length, 1);
    assert.equal(del[0]?.body.status, 200);

    // The API server saw the gateway (admin) impersonating the caller, with the session id in extra.
    const entries = await auditEntries((e) => e['auditID'] === ev.correlation?.auditId && e['stage'] === 'ResponseComplete');
    assert.equal(entries.length, 1, 'the audit log has the create');
    const entry = entries[0] as { user: { username: string }; impersonatedUser: { username: string; extra?: Record<string, string[]> } };
    assert.equal(entry.user.username, 'admin');
    assert.equal(entry.impersonatedUser.username, who.user);
    assert.deepEqual(entry.impersonatedUser.extra?.['kubetrail.io/session'], [ev.correlation?.session]);
  });

  test(`${who.name}: RBAC decisions are those of the impersonated user`, async () => {
    const denied = await kubectl(who.kc(), ['-n', 'kube-system', 'get', 'secrets']);
    assert.notEqual(denied.status, 0);
    assert.match(denied.stderr, /forbidden/i);
    assert.ok(denied.stderr.includes(who.user), denied.stderr);
    const cannot = await kubectl(who.kc(), ['auth', 'can-i', 'create', 'clusterrolebindings']);
    assert.equal(cannot.stdout.trim(), 'no');
    const can = await kubectl(who.kc(), ['auth', 'can-i', 'create', 'configmaps']);
    assert.equal(can.stdout.trim(), 'yes');
  });
}

test('kubectl get -w streams watch events through the gateway as they happen', async () => {
  const first = `watched-${uniq()}`;
  const second = `watched-${uniq()}`;
  const child = spawn('kubectl', ['--kubeconfig', aliceKc, 'get', 'configmaps', '-w', '-o', 'name'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  const waitFor = (name: string): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`watch never showed ${name}; stdout=${out} stderr=${err}`)), 60_000);
      const check = (): void => {
        if (out.includes(`configmap/${name}`)) {
          clearTimeout(timer);
          child.stdout.off('data', check);
          resolve();
        }
      };
      child.stdout.on('data', check);
      check();
    });
  const admin = harness().ADMIN_KUBECONFIG;
  try {
    // The first may show up in the initial listing or on the watch; once it is printed, the watch is
    // established, so the second can only arrive as a streamed watch event.
    assert.equal((await kubectl(admin, ['-n', ns, 'create', 'configmap', first, '--from-literal=a=b'])).status, 0);
    await waitFor(first);
    assert.equal((await kubectl(admin, ['-n', ns, 'create', 'configmap', second, '--from-literal=a=b'])).status, 0);
    await waitFor(second);
  } finally {
    child.kill('SIGTERM');
  }
  await new Promise((r) => child.once('close', r));
  // The ended watch is recorded once the gateway sees the client go away.
  const deadline = Date.now() + 10_000;
  while (apiRequests((e) => e.body.verb === 'watch' && e.target?.namespace === ns && e.actor?.username === 'oidc:alice').length === 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(apiRequests((e) => e.body.verb === 'watch' && e.target?.namespace === ns && e.actor?.username === 'oidc:alice').length >= 1, 'the ended watch is recorded');
});

test('kubectl --as is refused for a caller without impersonate rights and works for one that has them', async () => {
  const refused = await kubectl(aliceKc, ['get', 'configmaps', '--as=bob']);
  assert.notEqual(refused.status, 0);
  assert.match(refused.stderr, /cannot impersonate/);
  const bob = `bob-${uniq()}`;

  await adminApply(`apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: ${ns}-impersonate-bob}
rules:
- {apiGroups: [""], resources: [users], verbs: [impersonate], resourceNames: [${bob}]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: ${ns}-impersonate-bob}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: ${ns}-impersonate-bob}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "oidc:alice"}
`);
  try {
    const ok = await kubectl(aliceKc, ['auth', 'whoami', '-o', 'jsonpath={.status.userInfo.username}', `--as=${bob}`]);
    assert.equal(ok.status, 0, ok.stderr);
    assert.equal(ok.stdout, bob);
    const ev = apiRequests((e) => e.actor?.username === bob);
    assert.ok(ev.length >= 1);
    assert.deepEqual(ev[0]?.actor?.extra?.['kubetrail.io/impersonator'], ['oidc:alice']);
    // Allowed for this name only.
    const other = await kubectl(aliceKc, ['get', 'configmaps', '--as=someone-else']);
    assert.notEqual(other.status, 0);
    assert.match(other.stderr, /cannot impersonate/);
  } finally {
    await kubectl(harness().ADMIN_KUBECONFIG, ['delete', 'clusterrolebinding,clusterrole', `${ns}-impersonate-bob`, '--ignore-not-found']);
  }
});

type WhoAmI = { status: { userInfo: { username: string; uid?: string; groups: string[]; extra?: Record<string, string[]> } } };

test('the API server sees exactly the caller identity plus the gateway session (kubectl auth whoami)', async () => {
  const r = await kubectl(robotKc, ['auth', 'whoami', '-o', 'json']);
  assert.equal(r.status, 0, r.stderr);
  const info = (JSON.parse(r.stdout) as WhoAmI).status.userInfo;
  assert.equal(info.username, `system:serviceaccount:${ns}:robot`);
  assert.ok(info.groups.includes(`system:serviceaccounts:${ns}`));
  assert.equal(info.extra?.['kubetrail.io/session']?.length, 1);
  assert.match(info.extra?.['kubetrail.io/session']?.[0] ?? '', /^[0-9a-f-]{36}$/);
  // The same token straight to the API server: the gateway leaves out the groups the API server derives itself
  // (system:authenticated, and a ServiceAccount's own groups), so compare what the API server ends up with.
  const h = harness();
  const dir = await mkdtemp(join(tmpdir(), 'kt-whoami-'));
  try {
    const direct = join(dir, 'kubeconfig');
    await writeFile(direct, `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "${h.APISERVER_URL}", certificate-authority: "${h.APISERVER_CA}"}}]
users: [{name: u, user: {token: "${robotToken}"}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`, { mode: 0o600 });
    const d = await kubectl(direct, ['auth', 'whoami', '-o', 'json']);
    assert.equal(d.status, 0, d.stderr);
    const want = (JSON.parse(d.stdout) as WhoAmI).status.userInfo;
    assert.equal(info.username, want.username);
    assert.equal(info.uid, want.uid);
    assert.deepEqual([...info.groups].sort(), [...want.groups].sort());
    const { ['kubetrail.io/session']: _session, ...extra } = info.extra ?? {};
    assert.deepEqual(extra, want.extra ?? {});
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
