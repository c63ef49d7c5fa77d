/**
 * The manifests against the real API server (harness): every overlay renders
 * with kubectl's kustomize and passes `kubectl apply --dry-run=server`
 * (admission, schema and CEL compilation of matchConditions included), and the
 * rendered objects keep the properties the deployment relies on.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { loadConfig } from '../../core/config.ts';
import { harness, kubectl } from '../support/env.ts';
import { drift } from './policies-sync.ts';
import { OVERLAYS, REPO, deleteNamespace, find, preparedManifests, render, type K8sObject } from './support.ts';

let prepared: Awaited<ReturnType<typeof preparedManifests>>;
const rendered = new Map<string, K8sObject[]>();
let createdNamespace = false;

// Minimal CRDs for cert-manager's Issuer and Certificate: enough for the API server to accept the
// cert-manager overlay's objects in a server-side dry run (cert-manager itself is not installed here).
const certManagerCrds = ['issuers', 'certificates'].map((plural) => ({
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: `${plural}.cert-manager.io` },
  spec: {
    group: 'cert-manager.io',
    scope: 'Namespaced',
    names: { plural, singular: plural.slice(0, -1), kind: plural === 'issuers' ? 'Issuer' : 'Certificate', listKind: plural === 'issuers' ? 'IssuerList' : 'CertificateList' },
    versions: [{ name: 'v1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } } }],
  },
}));
const createdCrds: string[] = [];

before(async () => {
  const env = harness();
  prepared = await preparedManifests();
  for (const o of OVERLAYS) rendered.set(o, await render(env.ADMIN_KUBECONFIG, path.join(prepared.dir, o)));
  // A server-side dry run does not create the Namespace, so the namespaced objects need it to exist.
  const ns = await kubectl(env.ADMIN_KUBECONFIG, ['get', 'namespace', 'kubetrail', '-o', 'name']);
  if (ns.status !== 0) {
    const c = await kubectl(env.ADMIN_KUBECONFIG, ['create', 'namespace', 'kubetrail']);
    assert.equal(c.status, 0, c.stderr);
    createdNamespace = true;
  }
  for (const crd of certManagerCrds) {
    const exists = await kubectl(env.ADMIN_KUBECONFIG, ['get', 'crd', crd.metadata.name, '-o', 'name']);
    if (exists.status === 0) continue;
    const c = await kubectl(env.ADMIN_KUBECONFIG, ['create', '-f', '-'], JSON.stringify(crd));
    assert.equal(c.status, 0, c.stderr);
    createdCrds.push(crd.metadata.name);
  }
  if (createdCrds.length > 0) {
    const w = await kubectl(env.ADMIN_KUBECONFIG, ['wait', '--for=condition=Established', '--timeout=60s', ...createdCrds.map((n) => `crd/${n}`)]);
    assert.equal(w.status, 0, w.stderr);
  }
});

after(async () => {
  const env = harness();
  for (const n of createdCrds) await kubectl(env.ADMIN_KUBECONFIG, ['delete', 'crd', n, '--ignore-not-found', '--wait=false']);
  if (createdNamespace) await deleteNamespace(env.ADMIN_KUBECONFIG, 'kubetrail');
  prepared?.cleanup();
});

for (const overlay of OVERLAYS) {
  test(`kubectl apply --dry-run=server -k manifests/${overlay === '.' ? '' : overlay} succeeds on the real API server`, async () => {
    const env = harness();
    const r = await kubectl(env.ADMIN_KUBECONFIG, ['apply', '--dry-run=server', '--validate=strict', '-k', path.join(prepared.dir, overlay)], undefined, { timeoutMs: 120_000 });
    assert.equal(r.status, 0, r.stderr);
    const workload = overlay === 'overlays/dev' ? 'deployment.apps' : 'statefulset.apps';
    for (const what of [
      'validatingwebhookconfiguration.admissionregistration.k8s.io/kubetrail',
      'mutatingwebhookconfiguration.admissionregistration.k8s.io/kubetrail',
      `${workload}/kubetrail-webhook`,
      `${workload}/kubetrail-proxy`,
      'clusterrole.rbac.authorization.k8s.io/kubetrail-proxy',
      'networkpolicy.networking.k8s.io/kubetrail-default-deny',
      'poddisruptionbudget.policy/kubetrail-webhook',
    ]) {
      assert.match(r.stdout, new RegExp(`${what.replace(/[.]/g, '\\.')} (created|configured|unchanged) \\(server dry run\\)`), `${what} in:\n${r.stdout}`);
    }
    if (overlay === 'overlays/cert-manager') assert.match(r.stdout, /certificate\.cert-manager\.io\/kubetrail-serving created \(server dry run\)/);
    else if (overlay === '.' || overlay === 'overlays/self-managed') assert.doesNotMatch(r.stdout, /secret\/kubetrail-tls/, 'kubetrail creates its own TLS Secret');
    else assert.match(r.stdout, /secret\/kubetrail-tls (created|configured) \(server dry run\)/);
  });
}

test('kubectl apply -k manifests/ installs the self-managed overlay, with the image named in manifests/kustomization.yaml', () => {
  const image = (objs: K8sObject[] | undefined): string =>
    JSON.stringify(objs ?? []).replace(/"image":"registry\.example\.com\/kubetrail\/kubetrail:0\.1\.0"/g, '"image":"kubetrail"');
  assert.match(JSON.stringify(rendered.get('.')), /"image":"registry\.example\.com\/kubetrail\/kubetrail:0\.1\.0"/);
  assert.equal(image(rendered.get('.')), JSON.stringify(rendered.get('overlays/self-managed')));
});

test('the webhook configurations carry the caBundle that kubetrail certs printed', () => {
  for (const [overlay, ca] of [['overlays/dev', prepared.caBundles.dev], ['overlays/prod', prepared.caBundles.prod]] as const) {
    for (const kind of ['ValidatingWebhookConfiguration', 'MutatingWebhookConfiguration']) {
      const webhooks = find(rendered.get(overlay) ?? [], kind, 'kubetrail')['webhooks'] as { name: string; clientConfig: { caBundle?: string } }[];
      assert.ok(webhooks.length > 0);
      // kustomize folds the base64 over lines; the API server's base64 decoding skips the newlines.
      for (const w of webhooks) assert.equal(w.clientConfig.caBundle?.replace(/\s/g, ''), ca, `${overlay} ${kind} ${w.name}`);
    }
  }
});

test('with cert-manager, the cainjector annotation replaces a caBundle from files', () => {
  const objs = rendered.get('overlays/cert-manager') ?? [];
  for (const kind of ['ValidatingWebhookConfiguration', 'MutatingWebhookConfiguration']) {
    const o = find(objs, kind, 'kubetrail');
    assert.equal(o.metadata.annotations?.['cert-manager.io/inject-ca-from'], 'kubetrail/kubetrail-serving');
  }
  const cert = find(objs, 'Certificate', 'kubetrail-serving') as K8sObject & { spec: { secretName: string; dnsNames: string[] } };
  assert.equal(cert.spec.secretName, 'kubetrail-tls');
  assert.ok(cert.spec.dnsNames.includes('kubetrail-webhook.kubetrail.svc'));
  assert.equal(objs.some((o) => o.kind === 'Secret' && o.metadata.name === 'kubetrail-tls'), false, 'cert-manager owns the TLS Secret');
});

interface Webhook {
  name: string;
  failurePolicy: string;
  sideEffects: string;
  timeoutSeconds: number;
  rules: { operations: string[]; resources: string[] }[];
  namespaceSelector: { matchExpressions?: { key: string; operator: string; values: string[] }[]; matchLabels?: Record<string, string> };
  matchConditions?: { name: string; expression: string }[];
  clientConfig: { service: { namespace: string; name: string; path: string } };
}

test('the webhooks fail closed for guardrails, open for the stamp, for kube-system exec and debug, and for kubetrail\'s own namespace', () => {
  const objs = rendered.get('overlays/prod') ?? [];
  const validating = find(objs, 'ValidatingWebhookConfiguration', 'kubetrail')['webhooks'] as Webhook[];
  const mutating = find(objs, 'MutatingWebhookConfiguration', 'kubetrail')['webhooks'] as Webhook[];
  const byName = new Map([...validating, ...mutating].map((w) => [w.name, w]));
  const expected: { name: string; failurePolicy: string; path: string }[] = [
    { name: 'validate.kubetrail.io', failurePolicy: 'Fail', path: '/validate' },
    { name: 'exec-kube-system.kubetrail.io', failurePolicy: 'Ignore', path: '/validate' },
    { name: 'kubetrail-namespace.kubetrail.io', failurePolicy: 'Ignore', path: '/validate' },
    // Binds approval decisions to the authenticated approver: nobody approves while kubetrail is down.
    { name: 'approvals.kubetrail.io', failurePolicy: 'Fail', path: '/validate' },
    { name: 'kubetrail-cluster-objects.kubetrail.io', failurePolicy: 'Ignore', path: '/validate' },
    { name: 'mutate.kubetrail.io', failurePolicy: 'Ignore', path: '/mutate' },
  ];
  assert.deepEqual([...byName.keys()].sort(), expected.map((e) => e.name).sort());
  for (const e of expected) {
    const w = byName.get(e.name) as Webhook;
    assert.equal(w.failurePolicy, e.failurePolicy, e.name);
    assert.equal(w.sideEffects, 'NoneOnDryRun', e.name);
    assert.ok(w.timeoutSeconds >= 1 && w.timeoutSeconds <= 10, e.name);
    assert.deepEqual(w.clientConfig.service, { namespace: 'kubetrail', name: 'kubetrail-webhook', path: e.path, port: 443 });
  }
  for (const name of ['validate.kubetrail.io', 'mutate.kubetrail.io']) {
    const excluded = byName.get(name)?.namespaceSelector.matchExpressions?.find((m) => m.key === 'kubernetes.io/metadata.name' && m.operator === 'NotIn')?.values ?? [];
    for (const ns of ['kube-system', 'kube-node-lease', 'kubetrail']) assert.ok(excluded.includes(ns), `${name} excludes ${ns}`);
    assert.ok((byName.get(name)?.matchConditions ?? []).length > 0, `${name} has matchConditions`);
  }
  const v = byName.get('validate.kubetrail.io') as Webhook;
  assert.ok(v.rules.some((r) => r.operations.includes('DELETE') && r.resources.includes('*/*')));
  assert.ok(v.rules.some((r) => r.operations.includes('CONNECT') && ['pods/exec', 'pods/attach', 'pods/portforward'].every((s) => r.resources.includes(s))));
  assert.ok(v.rules.some((r) => r.operations.includes('CONNECT') && r.resources.includes('nodes/proxy')), 'nodes/proxy is reviewed');
  assert.deepEqual(byName.get('exec-kube-system.kubetrail.io')?.namespaceSelector.matchLabels, { 'kubernetes.io/metadata.name': 'kube-system' });
  assert.ok(byName.get('exec-kube-system.kubetrail.io')?.rules.some((r) => r.operations.includes('UPDATE') && r.resources.includes('pods/ephemeralcontainers')), 'kubectl debug in kube-system is reviewed');
  // kubetrail's own namespace: only the fail-open entry reviews it, so a down kubetrail never blocks its own repair.
  assert.deepEqual(byName.get('kubetrail-namespace.kubetrail.io')?.namespaceSelector.matchLabels, { 'kubernetes.io/metadata.name': 'kubetrail' });
});

interface PodSpec {
  serviceAccountName: string;
  securityContext: { runAsNonRoot?: boolean; runAsUser?: number };
  containers: {
    name: string;
    args: string[];
    securityContext: { readOnlyRootFilesystem?: boolean; allowPrivilegeEscalation?: boolean; capabilities?: { drop?: string[] } };
    resources: { requests?: Record<string, string>; limits?: Record<string, string> };
    livenessProbe?: unknown;
    readinessProbe?: unknown;
  }[];
  affinity?: { podAntiAffinity?: unknown };
}

for (const overlay of ['overlays/self-managed', 'overlays/dev', 'overlays/prod', 'overlays/cert-manager']) {
  test(`${overlay}: both workloads run non-root on a read-only root filesystem, with probes, resources and anti-affinity`, () => {
    const objs = rendered.get(overlay) ?? [];
    const kind = overlay === 'overlays/dev' ? 'Deployment' : 'StatefulSet';
    for (const component of ['webhook', 'proxy']) {
      const w = find(objs, kind, `kubetrail-${component}`) as K8sObject & { spec: { replicas: number; template: { spec: PodSpec }; volumeClaimTemplates?: unknown[] } };
      const pod = w.spec.template.spec;
      assert.equal(pod.serviceAccountName, `kubetrail-${component}`);
      assert.equal(pod.securityContext.runAsNonRoot, true);
      assert.ok((pod.securityContext.runAsUser ?? 0) > 0);
      assert.ok(pod.affinity?.podAntiAffinity);
      const c = pod.containers[0];
      assert.ok(c);
      assert.deepEqual(c.args.slice(0, 1), [component]);
      assert.equal(c.securityContext.readOnlyRootFilesystem, true);
      assert.equal(c.securityContext.allowPrivilegeEscalation, false);
      assert.deepEqual(c.securityContext.capabilities?.drop, ['ALL']);
      assert.ok(c.resources.requests?.['cpu'] && c.resources.limits?.['memory']);
      assert.ok(c.livenessProbe && c.readinessProbe);
      if (overlay === 'overlays/dev') assert.equal(w.spec.replicas, 1);
      else {
        assert.equal(w.spec.replicas, 2);
        assert.equal(w.spec.volumeClaimTemplates?.length, 1, 'the spool is on a claim per replica');
      }
      find(objs, 'PodDisruptionBudget', `kubetrail-${component}`);
      find(objs, 'Service', `kubetrail-${component}`);
    }
  });
}

test('the proxy may impersonate, review tokens and access; the webhook may only read namespaces and its ConfigMaps, and manage ApprovalRequests', () => {
  const objs = rendered.get('overlays/prod') ?? [];
  type Rule = { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] };
  const rules = (kind: string, name: string): Rule[] => find(objs, kind, name)['rules'] as Rule[];
  const can = (rs: Rule[], group: string, resource: string, verb: string): boolean =>
    rs.some((r) => r.apiGroups.includes(group) && r.resources.includes(resource) && r.verbs.includes(verb));
  const proxy = rules('ClusterRole', 'kubetrail-proxy');
  for (const [g, r, v] of [
    ['', 'users', 'impersonate'],
    ['', 'groups', 'impersonate'],
    ['', 'serviceaccounts', 'impersonate'],
    ['authentication.k8s.io', 'uids', 'impersonate'],
    ['authentication.k8s.io', 'userextras/kubetrail.io/session', 'impersonate'],
    ['authentication.k8s.io', 'tokenreviews', 'create'],
    ['authorization.k8s.io', 'subjectaccessreviews', 'create'],
    ['', 'namespaces', 'watch'],
  ] as const) {
    assert.ok(can(proxy, g, r, v), `proxy: ${v} ${g}/${r}`);
  }
  assert.equal(proxy.some((r) => r.verbs.includes('*') || r.resources.includes('*') || r.resources.includes('userextras/*')), false, 'no wildcards');
  const webhook = rules('ClusterRole', 'kubetrail-webhook');
  // Namespaces, plus what human approval needs (ApprovalRequests, their status, SAR, SelfSubjectReview).
  assert.deepEqual(webhook, [
    { apiGroups: [''], resources: ['namespaces'], verbs: ['get', 'list', 'watch'] },
    { apiGroups: ['kubetrail.io'], resources: ['approvalrequests'], verbs: ['create', 'get', 'list', 'watch'] },
    { apiGroups: ['kubetrail.io'], resources: ['approvalrequests/status'], verbs: ['get', 'update'] },
    { apiGroups: ['authorization.k8s.io'], resources: ['subjectaccessreviews'], verbs: ['create'] },
    { apiGroups: ['authentication.k8s.io'], resources: ['selfsubjectreviews'], verbs: ['create'] },
  ]);
  const own = rules('Role', 'kubetrail-read-own-config');
  assert.equal(own.length, 1);
  assert.ok(own[0]?.resourceNames?.includes('kubetrail-policies'));
  assert.ok(own[0]?.resourceNames?.some((n) => n.startsWith('kubetrail-config-')), 'resourceNames follow the hashed ConfigMap name');
});

test('the policies ConfigMap in the manifests is the starter pack in policies/', () => {
  assert.deepEqual(drift(), [], 'run: node test/deploy/policies-sync.ts --write');
});

test('self-managed: the webhook may manage only its Lease, Secrets, ConfigMap and its own webhook configurations; the gateway only reads the certificate', () => {
  const objs = rendered.get('overlays/self-managed') ?? [];
  type Rule = { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] };
  const rules = (kind: string, name: string): Rule[] => find(objs, kind, name)['rules'] as Rule[];
  for (const [name, rs] of [['webhook', rules('Role', 'kubetrail-self-managed-webhook')], ['proxy', rules('Role', 'kubetrail-self-managed-proxy')]] as const) {
    for (const r of rs) {
      assert.ok(!r.verbs.includes('*') && !r.resources.includes('*'), `${name}: no wildcards`);
      // Only create may go without resourceNames (RBAC cannot narrow it by name).
      if (!(r.verbs.length === 1 && r.verbs[0] === 'create')) assert.ok(r.resourceNames && r.resourceNames.length > 0, `${name}: ${r.verbs.join(',')} ${r.resources.join(',')} is narrowed by name`);
      assert.ok(!r.verbs.includes('delete') && !r.verbs.includes('list') && !r.verbs.includes('watch'), `${name}: no delete, list or watch`);
    }
  }
  const proxySecrets = rules('Role', 'kubetrail-self-managed-proxy').filter((r) => r.resources.includes('secrets') && r.resourceNames?.includes('kubetrail-tls'));
  assert.deepEqual(proxySecrets.flatMap((r) => r.verbs), ['get'], 'the gateway cannot change the certificate');
  assert.deepEqual(rules('ClusterRole', 'kubetrail-webhook-configurations'), [
    { apiGroups: ['admissionregistration.k8s.io'], resources: ['validatingwebhookconfigurations', 'mutatingwebhookconfigurations'], resourceNames: ['kubetrail'], verbs: ['get', 'update'] },
  ]);
  for (const kind of ['StatefulSet']) {
    for (const c of ['webhook', 'proxy']) {
      const pod = (find(objs, kind, `kubetrail-${c}`) as K8sObject & { spec: { template: { spec: { volumes: { name: string }[] } } } }).spec.template.spec;
      assert.equal(pod.volumes.some((v) => v.name === 'tls'), false, `${c}: no TLS Secret volume (it does not exist before the pods start)`);
    }
  }
});

test('manifests/components/self-managed/config.yaml manages certificates and signing key for the shipped names', () => {
  const cfg = loadConfig({ file: path.join(REPO, 'manifests/components/self-managed/config.yaml'), env: { KUBETRAIL_INSTANCE: 'kubetrail-webhook-0' } });
  assert.equal(cfg.webhook.tls, undefined);
  assert.equal(cfg.proxy.tls, undefined);
  assert.equal(cfg.signing.keyFile, undefined);
  assert.equal(cfg.selfManaged?.inCluster, true);
  assert.deepEqual(cfg.selfManaged?.tls?.validatingWebhookConfigurations, ['kubetrail']);
  assert.deepEqual(cfg.selfManaged?.tls?.mutatingWebhookConfigurations, ['kubetrail']);
  assert.ok(cfg.selfManaged?.tls?.dnsNames.includes('kubetrail-webhook.kubetrail.svc'));
  assert.ok(cfg.selfManaged?.tls?.dnsNames.includes('kubetrail-proxy.kubetrail.svc'));
  assert.equal(cfg.selfManaged?.signingKey?.configMap, 'kubetrail-signing-public-key');
});

const shippedConfigs = ['manifests/base/config/config.yaml', 'manifests/components/production/config.yaml'];
for (const file of shippedConfigs) {
  test(`${file} is a valid kubetrail configuration, with the environment the pods set`, () => {
    // The env the workloads set (KUBETRAIL_INSTANCE from the pod name; the dev overlay adds the other two).
    const env = { KUBETRAIL_INSTANCE: 'kubetrail-webhook-0', KUBETRAIL_LOG_LEVEL: 'debug', KUBETRAIL_CLUSTER: 'dev' };
    const cfg = loadConfig({ file: path.join(REPO, file), env });
    assert.equal(cfg.instance, 'kubetrail-webhook-0');
    assert.equal(cfg.dataDir, '/var/lib/kubetrail');
    assert.equal(cfg.policies.dir, '/etc/kubetrail/policies');
    assert.equal(cfg.proxy.upstream.inCluster, true);
    // The paths the pods mount: TLS from the kubetrail-tls Secret, listeners on the container ports.
    for (const tls of [cfg.webhook.tls, cfg.proxy.tls]) assert.deepEqual(tls, { certFile: '/etc/kubetrail/tls/tls.crt', keyFile: '/etc/kubetrail/tls/tls.key' });
    assert.deepEqual([cfg.webhook.listen, cfg.webhook.health, cfg.proxy.listen, cfg.proxy.health], ['0.0.0.0:8443', '0.0.0.0:8080', '0.0.0.0:9443', '0.0.0.0:8081']);
    if (file.includes('production')) {
      assert.equal(cfg.signing.keyFile, '/etc/kubetrail/signing/signing.pem');
      assert.ok(cfg.kafka && cfg.kafka.brokers.length > 0, 'production sends events to Kafka');
    }
  });
}
