/**
 * The manifests' RBAC, applied for real and asked through
 * SubjectAccessReviews on the real API server's RBAC authorizer: each
 * component gets what it uses and nothing else. The roles are the rendered
 * prod overlay's, renamed with a unique suffix and bound in a test namespace
 * (the harness is shared; nothing named `kubetrail-*` is touched).
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { harness, kubectl } from '../support/env.ts';
import { deleteNamespace, find, preparedManifests, render, suffix, type K8sObject } from './support.ts';

const sfx = suffix();
const ns = `kt-rbac-${sfx}`;
const clusterScoped: string[] = [];
let configMapName = '';

before(async () => {
  const env = harness();
  const prepared = await preparedManifests();
  let objs: K8sObject[];
  try {
    objs = await render(env.ADMIN_KUBECONFIG, path.join(prepared.dir, 'overlays', 'prod'));
  } finally {
    prepared.cleanup();
  }
  const docs: K8sObject[] = [];
  for (const component of ['proxy', 'webhook']) {
    const role = structuredClone(find(objs, 'ClusterRole', `kubetrail-${component}`));
    role.metadata = { name: `kubetrail-${component}-${sfx}` };
    const binding = structuredClone(find(objs, 'ClusterRoleBinding', `kubetrail-${component}`)) as K8sObject & { roleRef: { name: string }; subjects: { namespace: string }[] };
    binding.metadata = { name: `kubetrail-${component}-${sfx}` };
    binding.roleRef.name = role.metadata.name;
    for (const s of binding.subjects) s.namespace = ns;
    docs.push(role, binding);
    clusterScoped.push(`clusterrole/${role.metadata.name}`, `clusterrolebinding/${binding.metadata.name}`);
    docs.push({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: `kubetrail-${component}`, namespace: ns } });
  }
  const role = structuredClone(find(objs, 'Role', 'kubetrail-read-own-config')) as K8sObject & { rules: { resourceNames: string[] }[] };
  role.metadata = { name: 'kubetrail-read-own-config', namespace: ns };
  configMapName = role.rules[0]?.resourceNames.find((n) => n.startsWith('kubetrail-config-')) ?? '';
  const rb = structuredClone(find(objs, 'RoleBinding', 'kubetrail-read-own-config')) as K8sObject & { subjects: { namespace: string }[] };
  rb.metadata = { name: 'kubetrail-read-own-config', namespace: ns };
  for (const s of rb.subjects) s.namespace = ns;
  docs.push(role, rb);

  const created = await kubectl(env.ADMIN_KUBECONFIG, ['create', 'namespace', ns]);
  assert.equal(created.status, 0, created.stderr);
  const applied = await kubectl(env.ADMIN_KUBECONFIG, ['apply', '-f', '-'], docs.map((d) => JSON.stringify(d)).join('\n'));
  assert.equal(applied.status, 0, applied.stderr);
});

after(async () => {
  const env = harness();
  if (clusterScoped.length > 0) await kubectl(env.ADMIN_KUBECONFIG, ['delete', '--ignore-not-found', ...clusterScoped]);
  await kubectl(env.ADMIN_KUBECONFIG, ['-n', ns, 'delete', 'serviceaccounts,roles,rolebindings', '--all']);
  await deleteNamespace(env.ADMIN_KUBECONFIG, ns);
});

interface Attrs {
  verb: string;
  group?: string;
  resource: string;
  subresource?: string;
  name?: string;
  namespace?: string;
}

/** Asks the real authorizer whether the component's ServiceAccount may do `a`. */
async function allowed(component: 'proxy' | 'webhook', a: Attrs): Promise<boolean> {
  const sar = {
    apiVersion: 'authorization.k8s.io/v1',
    kind: 'SubjectAccessReview',
    spec: {
      user: `system:serviceaccount:${ns}:kubetrail-${component}`,
      groups: ['system:serviceaccounts', `system:serviceaccounts:${ns}`, 'system:authenticated'],
      resourceAttributes: { group: '', ...a },
    },
  };
  const r = await kubectl(harness().ADMIN_KUBECONFIG, ['create', '-o', 'json', '-f', '-'], JSON.stringify(sar));
  assert.equal(r.status, 0, r.stderr);
  return (JSON.parse(r.stdout) as { status: { allowed: boolean } }).status.allowed;
}

const cases: { component: 'proxy' | 'webhook'; what: string; a: () => Attrs; want: boolean }[] = [
  { component: 'proxy', what: 'impersonate any user', a: () => ({ verb: 'impersonate', resource: 'users', name: 'oidc:alice' }), want: true },
  { component: 'proxy', what: 'impersonate any group', a: () => ({ verb: 'impersonate', resource: 'groups', name: 'agents' }), want: true },
  { component: 'proxy', what: 'impersonate a service account', a: () => ({ verb: 'impersonate', resource: 'serviceaccounts', namespace: 'agents', name: 'ci' }), want: true },
  { component: 'proxy', what: 'impersonate a uid', a: () => ({ verb: 'impersonate', group: 'authentication.k8s.io', resource: 'uids', name: '1234' }), want: true },
  { component: 'proxy', what: 'set the session extra', a: () => ({ verb: 'impersonate', group: 'authentication.k8s.io', resource: 'userextras', subresource: 'kubetrail.io/session', name: '019a-session' }), want: true },
  { component: 'proxy', what: 'forward a service account pod-name extra', a: () => ({ verb: 'impersonate', group: 'authentication.k8s.io', resource: 'userextras', subresource: 'authentication.kubernetes.io/pod-name', name: 'runner-0' }), want: true },
  { component: 'proxy', what: 'set any other extra', a: () => ({ verb: 'impersonate', group: 'authentication.k8s.io', resource: 'userextras', subresource: 'scopes', name: 'admin' }), want: false },
  { component: 'proxy', what: 'create TokenReviews', a: () => ({ verb: 'create', group: 'authentication.k8s.io', resource: 'tokenreviews' }), want: true },
  { component: 'proxy', what: 'create SubjectAccessReviews', a: () => ({ verb: 'create', group: 'authorization.k8s.io', resource: 'subjectaccessreviews' }), want: true },
  { component: 'proxy', what: 'watch namespaces', a: () => ({ verb: 'watch', resource: 'namespaces' }), want: true },
  { component: 'proxy', what: 'read secrets (it acts only as the caller)', a: () => ({ verb: 'get', resource: 'secrets', namespace: 'default', name: 'x' }), want: false },
  { component: 'proxy', what: 'create pods in its own name', a: () => ({ verb: 'create', resource: 'pods', namespace: 'default' }), want: false },
  { component: 'proxy', what: 'exec into pods in its own name', a: () => ({ verb: 'create', resource: 'pods', subresource: 'exec', namespace: 'default', name: 'p' }), want: false },
  { component: 'webhook', what: 'list namespaces', a: () => ({ verb: 'list', resource: 'namespaces' }), want: true },
  { component: 'webhook', what: 'read the policies ConfigMap', a: () => ({ verb: 'get', resource: 'configmaps', namespace: ns, name: 'kubetrail-policies' }), want: true },
  { component: 'webhook', what: 'read its config ConfigMap (hashed name)', a: () => ({ verb: 'get', resource: 'configmaps', namespace: ns, name: configMapName }), want: true },
  { component: 'webhook', what: 'read another ConfigMap in its namespace', a: () => ({ verb: 'get', resource: 'configmaps', namespace: ns, name: 'someone-else' }), want: false },
  { component: 'webhook', what: 'change the policies ConfigMap', a: () => ({ verb: 'update', resource: 'configmaps', namespace: ns, name: 'kubetrail-policies' }), want: false },
  { component: 'webhook', what: 'impersonate anyone', a: () => ({ verb: 'impersonate', resource: 'users', name: 'admin' }), want: false },
  { component: 'webhook', what: 'read secrets', a: () => ({ verb: 'get', resource: 'secrets', namespace: ns, name: 'kubetrail-tls' }), want: false },
];
for (const c of cases) {
  test(`the ${c.component} ${c.want ? 'may' : 'may not'} ${c.what}`, async () => {
    assert.equal(await allowed(c.component, c.a()), c.want);
  });
}
