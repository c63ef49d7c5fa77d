/**
 * The starter pack (policies/) against the writes it exists to stop, through
 * the real API server: the shipped ValidatingWebhookConfiguration
 * (manifests/base/webhook-configurations.yaml, every entry with its rules,
 * selectors and matchConditions as shipped) pointed at an in-process webhook
 * running the pack. One test-only change: each entry gets a matchCondition
 * confining it to this test's agent user, because the harness API server is
 * shared with other tests and the real configuration reviews every write.
 *
 * Each row is an agent write that must be denied by kubetrail with the rule's
 * message, and its benign twin, which must be admitted. The agent has
 * system:masters so that RBAC is never what stops it.
 *
 * Writes the API server never sends to a webhook (webhook configurations and
 * admission policies) can only be refused by the gateway: those rows go
 * through a gateway running the same pack, as the harness agent (agent-ci,
 * group agents), with the real kubectl.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { MemorySink } from '../../core/sinks/memory-sink.ts';
import { compileGuardrail, type GuardrailPolicy } from '../../core/policy/guardrail.ts';
import { PolicyStore } from '../../core/policy/store.ts';
import { createNamespaceLookup } from '../../webhook/namespaces.ts';
import { harness, kubectl } from '../support/env.ts';
import { REPO } from '../deploy/policies-sync.ts';
import { deleteNamespace } from '../deploy/support.ts';
import { STARTER_PACK, startTestWebhook, uniqueId, type TestWebhook } from '../webhook/support.ts';
import { startTestGateway, type TestGateway } from '../gateway/support.ts';

const id = uniqueId();
const ns = `kt-pack-${id}`;
const agent = `kt-pack-agent-${id}`;
const label = { 'kubetrail-test': id };
const node = `kt-pack-node-${id}`;
const kubeSystemPod = `kt-pack-${id}`;
const csr = `kt-pack-${id}`;
const configName = `kt-pack-${id}`;
const sink = new MemorySink();
let w: TestWebhook;
let gw: TestGateway;
let gwKubeconfig: string;
let createdKubetrailNs = false;

type Obj = Record<string, any>;

/** A kubectl invocation as the agent: args, and the object piped to `-f -` when there is one. */
interface Write {
  args: string[];
  input?: Obj;
}

function asAgent(write: Write): ReturnType<typeof kubectl> {
  const env = harness();
  return kubectl(env.ADMIN_KUBECONFIG, [`--as=${agent}`, '--as-group=agents', '--as-group=system:masters', ...write.args], write.input === undefined ? undefined : JSON.stringify(write.input), { timeoutMs: 30_000 });
}

function admin(args: string[], input?: Obj): ReturnType<typeof kubectl> {
  return kubectl(harness().ADMIN_KUBECONFIG, args, input === undefined ? undefined : JSON.stringify(input), { timeoutMs: 30_000 });
}

let seq = 0;
function create(obj: Obj): Write {
  const o = structuredClone(obj);
  o['metadata'] = { name: `x${++seq}-${id}`, ...o['metadata'], labels: { ...o['metadata']?.labels, ...label } };
  return { args: ['create', '-f', '-'], input: o };
}

function inNs(obj: Obj, namespace = ns): Obj {
  return { ...obj, metadata: { ...obj['metadata'], namespace } };
}

const container = (extra: Obj = {}): Obj => ({ name: 'app', image: 'busybox', ...extra });
const podSpec = (extra: Obj = {}, c: Obj = {}): Obj => ({ containers: [container(c)], ...extra });
const pod = (extra: Obj = {}, c: Obj = {}, metadata: Obj = {}): Obj => inNs({ apiVersion: 'v1', kind: 'Pod', metadata, spec: podSpec(extra, c) });

/** The same pod spec in every built-in carrier of a pod template. */
function carriers(spec: Obj): [string, Obj][] {
  const tpl = { metadata: { labels: { app: 'x' } }, spec };
  const jobTpl = { metadata: {}, spec: { ...spec, restartPolicy: 'Never' } };
  const sel = { matchLabels: { app: 'x' } };
  return [
    ['Pod', inNs({ apiVersion: 'v1', kind: 'Pod', spec })],
    ['PodTemplate', inNs({ apiVersion: 'v1', kind: 'PodTemplate', template: tpl })],
    ['ReplicationController', inNs({ apiVersion: 'v1', kind: 'ReplicationController', spec: { replicas: 0, selector: { app: 'x' }, template: tpl } })],
    ['Deployment', inNs({ apiVersion: 'apps/v1', kind: 'Deployment', spec: { replicas: 0, selector: sel, template: tpl } })],
    ['ReplicaSet', inNs({ apiVersion: 'apps/v1', kind: 'ReplicaSet', spec: { replicas: 0, selector: sel, template: tpl } })],
    ['StatefulSet', inNs({ apiVersion: 'apps/v1', kind: 'StatefulSet', spec: { replicas: 0, serviceName: 'x', selector: sel, template: tpl } })],
    ['DaemonSet', inNs({ apiVersion: 'apps/v1', kind: 'DaemonSet', spec: { selector: sel, template: tpl } })],
    ['Job', inNs({ apiVersion: 'batch/v1', kind: 'Job', spec: { suspend: true, template: jobTpl } })],
    ['CronJob', inNs({ apiVersion: 'batch/v1', kind: 'CronJob', spec: { schedule: '0 0 1 1 *', suspend: true, jobTemplate: { spec: { template: jobTpl } } } })],
  ];
}

const clusterRole = (rules: Obj[], extra: Obj = {}): Obj => ({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', rules, ...extra });
const role = (rules: Obj[]): Obj => inNs({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'Role', rules });
const clusterBinding = (roleName: string, subject: Obj = { kind: 'User', name: agent, apiGroup: 'rbac.authorization.k8s.io' }): Obj => ({
  apiVersion: 'rbac.authorization.k8s.io/v1',
  kind: 'ClusterRoleBinding',
  roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: roleName },
  subjects: [subject],
});
const binding = (roleName: string): Obj => inNs({ ...clusterBinding(roleName), kind: 'RoleBinding' });
const pv = (source: Obj, extra: Obj = {}): Obj => ({ apiVersion: 'v1', kind: 'PersistentVolume', spec: { capacity: { storage: '1Gi' }, accessModes: ['ReadWriteOnce'], ...source, ...extra } });
const nodeAffinity = { nodeAffinity: { required: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'In', values: ['n1'] }] }] } } };

interface Case {
  name: string;
  deny: Write;
  /** The rule's message (a regular expression on kubectl's stderr after "denied the request:"). */
  message: RegExp;
  /** A benign twin the pack must admit. */
  allow?: Write;
}

const cases: Case[] = [
  ...carriers(podSpec({}, { securityContext: { privileged: true } })).map(([kind, obj], i): Case => ({
    name: `a privileged ${kind}`,
    deny: create(obj),
    message: /privileged containers are not allowed for agents \(container app\)/,
    allow: create((carriers(podSpec())[i] as [string, Obj])[1]),
  })),
  { name: 'capabilities.add SYS_ADMIN', deny: create(pod({}, { securityContext: { capabilities: { add: ['SYS_ADMIN'] } } })), message: /capabilities beyond the Pod Security Standards baseline set \(SYS_ADMIN\)/, allow: create(pod({}, { securityContext: { capabilities: { add: ['CHOWN'] } } })) },
  { name: 'capabilities.add ALL', deny: create(pod({}, { securityContext: { capabilities: { add: ['ALL'] } } })), message: /baseline set \(ALL\)/, allow: create(pod({}, { securityContext: { capabilities: { add: ['NET_BIND_SERVICE'], drop: ['ALL'] } } })) },
  { name: 'capabilities.add NET_ADMIN in an init container', deny: create(pod({ initContainers: [container({ name: 'init', securityContext: { capabilities: { add: ['NET_ADMIN'] } } })] })), message: /baseline set \(NET_ADMIN\)/ },
  { name: 'capabilities.add in the CAP_ spelling the runtime also accepts', deny: create(pod({}, { securityContext: { capabilities: { add: ['CAP_SYS_ADMIN'] } } })), message: /baseline set \(CAP_SYS_ADMIN\)/ },
  { name: 'capabilities.add in lower case', deny: create(pod({}, { securityContext: { capabilities: { add: ['sys_admin'] } } })), message: /baseline set \(sys_admin\)/ },
  {
    name: 'a benign Deployment patched to privileged (UPDATE)',
    deny: { args: ['-n', ns, 'patch', 'deployment', `benign-${id}`, '--type=json', '-p', JSON.stringify([{ op: 'add', path: '/spec/template/spec/containers/0/securityContext', value: { privileged: true } }])] },
    message: /privileged containers are not allowed for agents \(container app\)/,
    allow: { args: ['-n', ns, 'patch', 'deployment', `benign-${id}`, '--type=json', '-p', JSON.stringify([{ op: 'add', path: '/spec/template/spec/containers/0/securityContext', value: { readOnlyRootFilesystem: true } }])] },
  },
  { name: 'a hostPath volume', deny: create(pod({ volumes: [{ name: 'v', hostPath: { path: '/' } }] })), message: /hostPath volumes are not allowed/, allow: create(pod({ volumes: [{ name: 'v', emptyDir: {} }] })) },
  { name: 'hostNetwork', deny: create(pod({ hostNetwork: true })), message: /hostNetwork is not allowed/, allow: create(pod({ hostNetwork: false })) },
  { name: 'hostPID', deny: create(pod({ hostPID: true })), message: /hostPID is not allowed/ },
  { name: 'hostIPC', deny: create(pod({ hostIPC: true })), message: /hostIPC is not allowed/ },
  { name: 'a hostPort', deny: create(pod({}, { ports: [{ containerPort: 80, hostPort: 8080 }] })), message: /hostPort is not allowed/, allow: create(pod({}, { ports: [{ containerPort: 80 }] })) },
  { name: 'procMount Unmasked', deny: create(pod({ hostUsers: false }, { securityContext: { procMount: 'Unmasked' } })), message: /may not unmask \/proc/, allow: create(pod({}, { securityContext: { procMount: 'Default' } })) },
  { name: 'seccomp Unconfined for the pod', deny: create(pod({ securityContext: { seccompProfile: { type: 'Unconfined' } } })), message: /seccomp Unconfined/, allow: create(pod({ securityContext: { seccompProfile: { type: 'RuntimeDefault' } } })) },
  { name: 'seccomp Unconfined for a container', deny: create(pod({}, { securityContext: { seccompProfile: { type: 'Unconfined' } } })), message: /seccomp Unconfined/ },
  { name: 'AppArmor Unconfined', deny: create(pod({}, { securityContext: { appArmorProfile: { type: 'Unconfined' } } })), message: /without AppArmor confinement/, allow: create(pod({}, { securityContext: { appArmorProfile: { type: 'RuntimeDefault' } } })) },
  {
    name: 'AppArmor unconfined by annotation',
    deny: create(pod({}, {}, { annotations: { 'container.apparmor.security.beta.kubernetes.io/app': 'unconfined' } })),
    message: /without AppArmor confinement/,
    allow: create(pod({}, {}, { annotations: { 'container.apparmor.security.beta.kubernetes.io/app': 'runtime/default' } })),
  },
  { name: 'SELinux type spc_t', deny: create(pod({ securityContext: { seLinuxOptions: { type: 'spc_t' } } })), message: /SELinux/, allow: create(pod({ securityContext: { seLinuxOptions: { type: 'container_t', level: 's0:c1,c2' } } })) },
  { name: 'SELinux user in a container', deny: create(pod({}, { securityContext: { seLinuxOptions: { user: 'system_u' } } })), message: /SELinux/ },
  { name: 'an unsafe sysctl', deny: create(pod({ securityContext: { sysctls: [{ name: 'kernel.msgmax', value: '65536' }] } })), message: /sysctls outside the Pod Security Standards safe set/, allow: create(pod({ securityContext: { sysctls: [{ name: 'net.ipv4.tcp_syncookies', value: '1' }] } })) },
  {
    name: 'a Windows hostProcess pod',
    deny: create(pod({ hostNetwork: true, os: { name: 'windows' }, securityContext: { windowsOptions: { hostProcess: true, runAsUserName: 'NT AUTHORITY\\SYSTEM' } } })),
    message: /Windows hostProcess containers are not allowed/,
    allow: create(pod({ os: { name: 'windows' }, securityContext: { windowsOptions: { hostProcess: false } } })),
  },
  {
    name: 'a probe aimed at another host',
    deny: create(pod({}, { livenessProbe: { httpGet: { host: '169.254.169.254', path: '/latest/meta-data/', port: 80 } } })),
    message: /probes and lifecycle hooks may not set a host/,
    allow: create(pod({}, { livenessProbe: { httpGet: { path: '/healthz', port: 80 } } })),
  },
  { name: 'a lifecycle hook aimed at another host', deny: create(pod({}, { lifecycle: { preStop: { tcpSocket: { host: '10.0.0.1', port: 22 } } } })), message: /probes and lifecycle hooks may not set a host/ },
  {
    name: 'a privileged ephemeral container (kubectl debug --profile=sysadmin)',
    deny: { args: ['-n', ns, 'debug', `target-${id}`, '--image=busybox', '--profile=sysadmin', '-c', `dbg1-${id}`] },
    message: /privileged containers are not allowed for agents \(container dbg1-/,
    allow: { args: ['-n', ns, 'debug', `target-${id}`, '--image=busybox', '--profile=baseline', '-c', `dbg2-${id}`] },
  },
  { name: 'an ephemeral container with SYS_PTRACE (kubectl debug --profile=general)', deny: { args: ['-n', ns, 'debug', `target-${id}`, '--image=busybox', '--profile=general', '-c', `dbg3-${id}`] }, message: /baseline set \(SYS_PTRACE\)/ },
  {
    name: 'an ephemeral container in kube-system (kubectl debug)',
    deny: { args: ['-n', 'kube-system', 'debug', kubeSystemPod, '--image=busybox', '--profile=baseline', '-c', `dbg-${id}`] },
    message: /agents may not add ephemeral containers \(kubectl debug\) in kube-system/,
  },
  { name: 'a node debugging pod (kubectl debug node/...)', deny: { args: ['-n', ns, 'debug', `node/${node}`, '--image=busybox', '--profile=sysadmin'] }, message: /hostPath volumes are not allowed.*hostNetwork is not allowed.*hostPID is not allowed/ },
  { name: 'a hostPath PersistentVolume', deny: create(pv({ hostPath: { path: '/' } })), message: /hostPath PersistentVolumes/, allow: create(pv({ csi: { driver: 'csi.example.com', volumeHandle: `vol-${id}` } })) },
  { name: 'a local PersistentVolume', deny: create(pv({ local: { path: '/var/lib' } }, nodeAffinity)), message: /local PersistentVolumes/ },
  { name: 'a ClusterRole with aggregationRule', deny: create(clusterRole([], { aggregationRule: { clusterRoleSelectors: [{ matchLabels: { [`kt-pack-${id}`]: 'true' } }] } })), message: /aggregated ClusterRoles/, allow: create(clusterRole([{ apiGroups: [''], resources: ['pods'], verbs: ['get', 'list'] }])) },
  {
    name: 'a ClusterRole that aggregates into edit',
    deny: create(clusterRole([{ apiGroups: [''], resources: ['configmaps'], verbs: ['get'] }], { metadata: { labels: { 'rbac.authorization.k8s.io/aggregate-to-edit': 'true' } } })),
    message: /aggregate into other roles/,
  },
  ...(['escalate', 'bind', 'impersonate'] as const).map((verb): Case => ({ name: `a ClusterRole with the ${verb} verb`, deny: create(clusterRole([{ apiGroups: ['rbac.authorization.k8s.io', ''], resources: ['clusterroles', 'users'], verbs: [verb] }])), message: /escalate, bind or impersonate verbs/ })),
  {
    name: 'a ClusterRole with every verb spelled out',
    deny: create(clusterRole([{ apiGroups: [''], resources: ['configmaps'], verbs: ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete', 'deletecollection'] }])),
    message: /list every verb/,
    allow: create(clusterRole([{ apiGroups: [''], resources: ['configmaps'], verbs: ['get', 'list', 'watch', 'create', 'update', 'patch'] }])),
  },
  { name: 'a ClusterRole with wildcard verbs', deny: create(clusterRole([{ apiGroups: [''], resources: ['configmaps'], verbs: ['*'] }])), message: /wildcard \("\*"\) verbs/ },
  { name: 'a ClusterRole with nonResourceURLs ["*"]', deny: create(clusterRole([{ nonResourceURLs: ['*'], verbs: ['get'] }])), message: /wildcard nonResourceURLs/, allow: create(clusterRole([{ nonResourceURLs: ['/healthz'], verbs: ['get'] }])) },
  { name: 'a ClusterRole granting nodes/proxy', deny: create(clusterRole([{ apiGroups: [''], resources: ['nodes/proxy'], verbs: ['get'] }])), message: /nodes\/proxy/, allow: create(clusterRole([{ apiGroups: [''], resources: ['nodes'], verbs: ['get'] }])) },
  { name: 'a Role that reads Secrets', deny: create(role([{ apiGroups: [''], resources: ['secrets'], verbs: ['get'] }])), message: /read Secrets/, allow: create(role([{ apiGroups: [''], resources: ['secrets'], verbs: ['create'] }])) },
  { name: 'a Role that mints tokens', deny: create(role([{ apiGroups: [''], resources: ['serviceaccounts/token'], verbs: ['create'] }])), message: /mint service account tokens/ },
  { name: 'a ClusterRole that edits webhook configurations', deny: create(clusterRole([{ apiGroups: ['admissionregistration.k8s.io'], resources: ['validatingwebhookconfigurations'], verbs: ['delete'] }])), message: /change admission control/, allow: create(clusterRole([{ apiGroups: ['admissionregistration.k8s.io'], resources: ['validatingwebhookconfigurations'], verbs: ['get', 'list'] }])) },
  { name: 'a ClusterRole that approves CSRs', deny: create(clusterRole([{ apiGroups: ['certificates.k8s.io'], resources: ['certificatesigningrequests/approval'], verbs: ['update'] }])), message: /approve or sign certificate requests/ },
  ...(['cluster-admin', 'admin', 'edit'] as const).map((r): Case => ({ name: `a ClusterRoleBinding to ${r}`, deny: create(clusterBinding(r)), message: new RegExp(`agents may not bind ${r}\\b`), allow: create(clusterBinding('view')) })),
  ...(['admin', 'edit'] as const).map((r): Case => ({ name: `a RoleBinding to ${r}`, deny: create(binding(r)), message: new RegExp(`agents may not bind ${r}\\b`), allow: create(binding('view')) })),
  { name: 'a RoleBinding to a control-plane ClusterRole', deny: create(binding('system:controller:clusterrole-aggregation-controller')), message: /agents may not bind system:controller:clusterrole-aggregation-controller/ },
  { name: "a binding to every service account of a namespace", deny: create({ ...binding('view'), subjects: [{ kind: 'Group', name: 'system:serviceaccounts:kube-system', apiGroup: 'rbac.authorization.k8s.io' }] }), message: /every service account/ },
  { name: "a ClusterRoleBinding to kubetrail's own impersonating role", deny: create(clusterBinding('kubetrail-proxy')), message: /agents may not bind kubetrail-proxy/ },
  { name: 'a binding to the system:masters group', deny: create(clusterBinding('view', { kind: 'Group', name: 'system:masters', apiGroup: 'rbac.authorization.k8s.io' })), message: /system:masters/ },
  { name: 'nodes/proxy (kubectl get --raw)', deny: { args: ['get', '--raw', `/api/v1/nodes/${node}/proxy/healthz`] }, message: new RegExp(`agents may not use nodes/proxy \\(node ${node}\\)`), allow: { args: ['get', 'node', node, '-o', 'name'] } },
  { name: 'a service account token (kubectl create token)', deny: { args: ['-n', ns, 'create', 'token', 'kt-sa'] }, message: /agents may not create service account tokens \(serviceaccount kt-sa\)/, allow: create(inNs({ apiVersion: 'v1', kind: 'ServiceAccount' })) },
  {
    name: 'a service account token Secret',
    deny: create(inNs({ apiVersion: 'v1', kind: 'Secret', type: 'kubernetes.io/service-account-token', metadata: { annotations: { 'kubernetes.io/service-account.name': 'kt-sa' } } })),
    message: /service account token Secrets/,
    allow: create(inNs({ apiVersion: 'v1', kind: 'Secret', type: 'Opaque', stringData: { a: 'b' } })),
  },
  { name: 'approving a CSR (kubectl certificate approve)', deny: { args: ['certificate', 'approve', csr] }, message: new RegExp(`agents may not approve certificate signing requests \\(${csr}\\)`), allow: { args: ['certificate', 'deny', csr] } },
  {
    name: "relabelling a namespace's Pod Security level",
    deny: { args: ['label', 'namespace', ns, '--overwrite', 'pod-security.kubernetes.io/enforce=privileged'] },
    message: new RegExp(`agents may not change the pod-security.kubernetes.io labels of namespace ${ns}`),
    allow: { args: ['label', 'namespace', ns, '--overwrite', `team=kt-pack`] },
  },
  {
    name: 'a new namespace at the privileged Pod Security level',
    deny: create({ apiVersion: 'v1', kind: 'Namespace', metadata: { labels: { 'pod-security.kubernetes.io/enforce': 'privileged' } } }),
    message: /privileged Pod Security level/,
  },
  { name: 'a ConfigMap in the kubetrail namespace', deny: create(inNs({ apiVersion: 'v1', kind: 'ConfigMap', data: { a: 'b' } }, 'kubetrail')), message: /agents may not change anything in the kubetrail namespace/, allow: create(inNs({ apiVersion: 'v1', kind: 'ConfigMap', data: { a: 'b' } })) },
  // A server-side dry run is reviewed like the real delete, and cannot strand the namespace if it were ever admitted.
  { name: 'deleting the kubetrail namespace', deny: { args: ['delete', 'namespace', 'kubetrail', '--dry-run=server'] }, message: /agents may not change anything in the kubetrail namespace/ },
  { name: "a ClusterRole named like kubetrail's own", deny: create(clusterRole([], { metadata: { name: `kubetrail-${id}` } })), message: /agents may not change kubetrail's own clusterroles/ },
];

/** The shipped ValidatingWebhookConfiguration, pointed at `url` and confined to this test's agent. */
function shippedValidatingConfiguration(url: string, caBundle: string): Obj {
  const docs = parseAllDocuments(readFileSync(path.join(REPO, 'manifests', 'base', 'webhook-configurations.yaml'), 'utf8')).map((d) => d.toJS() as Obj);
  const cfg = structuredClone(docs.find((d) => d['kind'] === 'ValidatingWebhookConfiguration')) as Obj;
  assert.ok(cfg, 'the manifests hold a ValidatingWebhookConfiguration');
  cfg['metadata'] = { name: configName };
  for (const hook of cfg['webhooks'] as Obj[]) {
    hook['clientConfig'] = { url: `${url}${hook['clientConfig'].service.path}`, caBundle };
    hook['matchConditions'] = [...(hook['matchConditions'] ?? []), { name: 'this-test-only', expression: `request.userInfo.username == '${agent}'` }];
  }
  return cfg;
}

/** A PEM certificate signing request, made with openssl (test-only key, thrown away). */
function csrPem(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'kt-pack-csr-'));
  try {
    execFileSync('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', path.join(dir, 'k.pem'), '-out', path.join(dir, 'r.pem'), '-subj', `/CN=kt-pack-${id}`], { stdio: 'ignore' });
    return readFileSync(path.join(dir, 'r.pem'), 'utf8');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function mustSucceed(r: Promise<{ status: number | null; stderr: string }>, what: string): Promise<void> {
  const x = await r;
  assert.equal(x.status, 0, `${what}: ${x.stderr}`);
}

before(async () => {
  const env = harness();
  w = await startTestWebhook(sink, {}, { namespaceLookup: createNamespaceLookup({ kubeconfig: env.ADMIN_KUBECONFIG, cacheTtlMs: 100 }) });
  await mustSucceed(admin(['create', 'namespace', ns]), 'namespace');
  if ((await admin(['get', 'namespace', 'kubetrail', '--ignore-not-found', '-o', 'name'])).stdout.trim() === '') {
    await mustSucceed(admin(['create', 'namespace', 'kubetrail']), 'kubetrail namespace');
    createdKubetrailNs = true;
  }
  await mustSucceed(admin(['create', '-f', '-'], inNs({ apiVersion: 'v1', kind: 'Pod', metadata: { name: `target-${id}`, labels: label }, spec: podSpec() })), 'target pod');
  await mustSucceed(admin(['create', '-f', '-'], inNs({ apiVersion: 'v1', kind: 'Pod', metadata: { name: kubeSystemPod, labels: label }, spec: podSpec() }, 'kube-system')), 'kube-system pod');
  await mustSucceed(admin(['create', '-f', '-'], inNs({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'kt-sa' } })), 'service account');
  const deployment = carriers(podSpec()).find(([kind]) => kind === 'Deployment')?.[1] as Obj;
  await mustSucceed(admin(['create', '-f', '-'], { ...deployment, metadata: { name: `benign-${id}`, namespace: ns, labels: label } }), 'benign deployment');
  await mustSucceed(admin(['create', '-f', '-'], { apiVersion: 'v1', kind: 'Node', metadata: { name: node, labels: label } }), 'node');
  await mustSucceed(
    admin(['create', '-f', '-'], {
      apiVersion: 'certificates.k8s.io/v1',
      kind: 'CertificateSigningRequest',
      metadata: { name: csr, labels: label },
      spec: { request: Buffer.from(csrPem()).toString('base64'), signerName: 'example.com/kt-pack', usages: ['client auth'] },
    }),
    'csr',
  );
  await mustSucceed(admin(['apply', '-f', '-'], shippedValidatingConfiguration(w.url, w.pki.caBundle)), 'webhook configuration');
  // The API server loads webhook configurations asynchronously: write as the agent until the webhook sees it.
  const deadline = Date.now() + 60_000;
  const probe = (): boolean => sink.ofType('admission.review').some((e) => e.target?.name === `probe-${id}`);
  while (!probe() && Date.now() < deadline) {
    await asAgent({ args: ['-n', ns, 'delete', 'configmap', `probe-${id}`, '--ignore-not-found'] });
    await asAgent({ args: ['-n', ns, 'create', 'configmap', `probe-${id}`] });
    if (!probe()) await new Promise((r) => setTimeout(r, 250));
  }
  assert.ok(probe(), 'the API server never called the registered webhook');

  const store = new PolicyStore({ dir: STARTER_PACK, compilers: { GuardrailPolicy: compileGuardrail } });
  const pack = (await store.load()).of<GuardrailPolicy>('GuardrailPolicy');
  await store.close();
  gw = await startTestGateway({ guardrails: () => pack });
  gwKubeconfig = gw.kubeconfigFor(env.AGENT_TOKEN);
  // Lets agent-ci read what the gateway rows try to change, so the benign twins pass RBAC too.
  await mustSucceed(
    admin(['apply', '-f', '-'], {
      apiVersion: 'v1',
      kind: 'List',
      items: [
        { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name: `kt-pack-read-${id}`, labels: label }, rules: [{ apiGroups: ['admissionregistration.k8s.io'], resources: ['*'], verbs: ['get', 'list'] }] },
        { ...clusterBinding(`kt-pack-read-${id}`, { kind: 'User', name: 'agent-ci', apiGroup: 'rbac.authorization.k8s.io' }), metadata: { name: `kt-pack-read-${id}`, labels: label } },
      ],
    }),
    'agent-ci read grant',
  );
});

after(async () => {
  await admin(['delete', 'validatingwebhookconfiguration', configName, '--ignore-not-found']);
  await admin(['delete', 'clusterroles,clusterrolebindings,persistentvolumes,certificatesigningrequests,nodes', '-l', `kubetrail-test=${id}`, '--ignore-not-found', '--wait=false']);
  await admin(['-n', 'kube-system', 'delete', 'pod', kubeSystemPod, '--ignore-not-found', '--grace-period=0', '--force']);
  // The harness runs no namespace controller: deleteNamespace finalizes the namespace itself.
  await deleteNamespace(harness().ADMIN_KUBECONFIG, ns);
  const leaked = await admin(['get', 'namespaces', '-l', `kubetrail-test=${id}`, '-o', 'name']);
  for (const n of leaked.stdout.split('\n').filter((l) => l !== '')) await deleteNamespace(harness().ADMIN_KUBECONFIG, n.replace(/^namespace\//, ''));
  if (createdKubetrailNs) await deleteNamespace(harness().ADMIN_KUBECONFIG, 'kubetrail');
  await w?.close();
  await gw?.close();
});

for (const c of cases) {
  test(`an agent's write is denied by the starter pack: ${c.name}${c.allow ? ' (and its benign twin is admitted)' : ''}`, async () => {
    const denied = await asAgent(c.deny);
    // Never print stdout: for `create token` it is a live credential.
    assert.notEqual(denied.status, 0, 'the write was admitted');
    assert.match(denied.stderr, /admission webhook "[a-z.-]*kubetrail\.io" denied the request: /, 'kubetrail (not the API server) refused it');
    assert.match(denied.stderr, c.message);
    if (c.allow) {
      const admitted = await asAgent(c.allow);
      assert.equal(admitted.status, 0, admitted.stderr);
    }
  });
}

/** Rows through the gateway: requests the API server would never show kubetrail's webhook. */
const gatewayCases: Case[] = [
  { name: 'deleting a ValidatingWebhookConfiguration (kubetrail\'s own, here the test\'s)', deny: { args: ['delete', 'validatingwebhookconfiguration', configName] }, message: new RegExp(`agents may not change admission control \\(validatingwebhookconfigurations ${configName}\\)`), allow: { args: ['get', 'validatingwebhookconfiguration', configName, '-o', 'name'] } },
  { name: 'patching a webhook out of a ValidatingWebhookConfiguration', deny: { args: ['patch', 'validatingwebhookconfiguration', configName, '--type=json', '-p', '[{"op":"remove","path":"/webhooks/0"}]'] }, message: /agents may not change admission control/ },
  {
    name: 'creating a MutatingWebhookConfiguration',
    deny: create({ apiVersion: 'admissionregistration.k8s.io/v1', kind: 'MutatingWebhookConfiguration', webhooks: [] }),
    message: /agents may not change admission control \(mutatingwebhookconfigurations/,
  },
  { name: 'deleting a ValidatingAdmissionPolicy', deny: { args: ['delete', 'validatingadmissionpolicy', `kt-pack-${id}`] }, message: /agents may not change admission control \(validatingadmissionpolicies/ },
  { name: 'nodes/proxy GET (kubectl get --raw)', deny: { args: ['get', '--raw', `/api/v1/nodes/${node}/proxy/pods`] }, message: new RegExp(`agents may not use nodes/proxy \\(node ${node}\\)`), allow: { args: ['get', 'node', node, '-o', 'name'] } },
];

for (const c of gatewayCases) {
  test(`through the gateway, an agent's request is denied by the starter pack: ${c.name}${c.allow ? ' (and its benign twin is forwarded)' : ''}`, async () => {
    const viaGateway = (x: Write): ReturnType<typeof kubectl> => kubectl(gwKubeconfig, x.args, x.input === undefined ? undefined : JSON.stringify(x.input), { timeoutMs: 30_000 });
    const denied = await viaGateway(c.deny);
    assert.notEqual(denied.status, 0, 'the request was forwarded');
    assert.match(denied.stderr, /kubetrail guardrail "agents-[a-z-]+" denied the request: /, 'the gateway (not the API server) refused it');
    assert.match(denied.stderr, c.message);
    if (c.allow) {
      const forwarded = await viaGateway(c.allow);
      assert.equal(forwarded.status, 0, forwarded.stderr);
    }
  });
}

test('the webhook configuration the gateway rows tried to remove is still there, whole', async () => {
  const got = await admin(['get', 'validatingwebhookconfiguration', configName, '-o', 'json']);
  assert.equal(got.status, 0, got.stderr);
  const webhooks = (JSON.parse(got.stdout) as { webhooks: unknown[] }).webhooks;
  assert.equal(webhooks.length, (shippedValidatingConfiguration('https://x', 'x')['webhooks'] as unknown[]).length);
});

test('the opt-in Restricted example warns an agent about a root pod and is silent for a restricted one', async () => {
  const file = path.join(w.policies, 'agents-pod-security-restricted.yaml');
  const reloaded = (): Promise<void> =>
    new Promise((resolve) => {
      const off = w.webhook.policies.onChange(() => {
        off();
        resolve();
      });
    });
  const loaded = reloaded();
  copyFileSync(path.join(REPO, 'docs', 'examples', 'agents-pod-security-restricted.yaml'), file);
  await loaded;
  try {
    const root = await asAgent(create(pod()));
    assert.equal(root.status, 0, root.stderr);
    for (const m of [/runAsNonRoot/, /allowPrivilegeEscalation: false/, /seccompProfile RuntimeDefault or Localhost/, /drop ALL capabilities/]) {
      assert.match(root.stderr, new RegExp(`Warning: agents-pod-security-restricted: restricted: .*${m.source}`));
    }
    const hardened = { runAsNonRoot: true, runAsUser: 1000, allowPrivilegeEscalation: false, seccompProfile: { type: 'RuntimeDefault' }, capabilities: { drop: ['ALL'] } };
    const ok = await asAgent(create(pod({ volumes: [{ name: 'tmp', emptyDir: {} }] }, { securityContext: hardened })));
    assert.equal(ok.status, 0, ok.stderr);
    assert.doesNotMatch(ok.stderr, /agents-pod-security-restricted/);
  } finally {
    const removed = reloaded();
    rmSync(file, { force: true });
    await removed;
  }
});
