/**
 * The harness's control plane: etcd and kube-apiserver built from the Go
 * module proxy (build-go.sh, cached), their PKI, service-account keys and one
 * kubeconfig per test user, on free loopback ports.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createCA, issueCert, rsaKeyPem, type CertKeyPair } from '../../certs/generate.ts';
import type { NodePlan } from './node.ts';
import { cacheDir, freePort, progress, spawnLogged, stopChild, waitFor } from './processes.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));

/** Builds etcd and kube-apiserver (and the node's binaries unless KUBETRAIL_NODE=0) if the cache lacks them (prints progress). */
export function ensureGoComponents(): { etcd: string; apiserver: string } {
  const bin = path.join(cacheDir(), 'bin');
  const r = spawnSync('bash', [path.join(HERE, 'build-go.sh')], { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, KUBETRAIL_CACHE: cacheDir() } });
  if (r.status !== 0) throw new Error(`building etcd/kube-apiserver failed (exit ${r.status}); see the output above`);
  return { etcd: path.join(bin, 'etcd'), apiserver: path.join(bin, 'kube-apiserver') };
}

/** Credentials and addresses of the running etcd + kube-apiserver. */
export interface ControlPlane {
  readonly url: string;
  readonly port: number;
  readonly caFile: string;
  /** CA that signed the serving certificate (PEM), also used to sign test certs. */
  readonly ca: CertKeyPair;
  readonly adminToken: string;
  readonly agentToken: string;
  readonly adminKubeconfig: string;
  readonly agentKubeconfig: string;
  readonly auditLog: string;
  readonly dir: string;
  readonly pids: number[];
  /** Directory of the built Kubernetes binaries. */
  readonly binDir: string;
  readonly caKeyFile: string;
  /** Key the controller-manager signs ServiceAccount tokens with. */
  readonly saKeyFile: string;
  stop(): Promise<void>;
}

/** Options for {@link startControlPlane}. */
export interface ControlPlaneOptions {
  dir: string;
  detached?: boolean;
  /** A node will join: advertise its host address, serve its addresses, run the Node authorizer and ServiceAccount admission. */
  node?: NodePlan;
}

function writeKubeconfig(file: string, server: string, caFile: string, user: string, token: string): void {
  const yaml = `apiVersion: v1
kind: Config
clusters:
- name: harness
  cluster:
    server: ${server}
    certificate-authority: ${caFile}
users:
- name: ${user}
  user:
    token: ${token}
contexts:
- name: ${user}@harness
  context:
    cluster: harness
    user: ${user}
current-context: ${user}@harness
`;
  writeFileSync(file, yaml, { mode: 0o600 });
}

/** Starts etcd and kube-apiserver on free ports, with TLS, RBAC, tokens and an audit log. */
export async function startControlPlane(opts: ControlPlaneOptions): Promise<ControlPlane> {
  const { etcd, apiserver } = ensureGoComponents();
  const dir = opts.dir;
  mkdirSync(dir, { recursive: true });
  const detached = opts.detached ?? false;
  const children: ChildProcess[] = [];

  // etcd
  const etcdPort = await freePort();
  const etcdPeer = await freePort();
  const etcdLog = path.join(dir, 'etcd.log');
  const etcdChild = spawnLogged(
    etcd,
    [
      '--name=harness',
      `--data-dir=${path.join(dir, 'etcd-data')}`,
      `--listen-client-urls=http://127.0.0.1:${etcdPort}`,
      `--advertise-client-urls=http://127.0.0.1:${etcdPort}`,
      `--listen-peer-urls=http://127.0.0.1:${etcdPeer}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeer}`,
      `--initial-cluster=harness=http://127.0.0.1:${etcdPeer}`,
      '--log-level=warn',
      // Test data only: skipping fsync makes the control plane several times faster here.
      '--unsafe-no-fsync',
    ],
    etcdLog,
    detached,
  );
  children.push(etcdChild);
  await waitFor('etcd', async () => (await fetch(`http://127.0.0.1:${etcdPort}/health`)).ok, 30_000, etcdChild, etcdLog);

  // PKI, tokens, audit policy
  const ca = createCA({ commonName: 'harness-ca' });
  const node = opts.node;
  const serving = issueCert(ca, {
    commonName: 'kube-apiserver',
    dnsNames: ['localhost', 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc'],
    ips: node ? ['127.0.0.1', node.hostIp, node.kubernetesServiceIp] : ['127.0.0.1', '10.0.0.1'],
  });
  const kubeletClient = issueCert(ca, { commonName: 'kube-apiserver-kubelet-client', organization: ['system:masters'], usages: ['clientAuth'] });
  const sa = rsaKeyPem();
  const caFile = path.join(dir, 'ca.crt');
  writeFileSync(caFile, ca.certPem);
  writeFileSync(path.join(dir, 'ca.key'), ca.keyPem, { mode: 0o600 });
  writeFileSync(path.join(dir, 'apiserver.crt'), serving.certPem);
  writeFileSync(path.join(dir, 'apiserver.key'), serving.keyPem, { mode: 0o600 });
  writeFileSync(path.join(dir, 'kubelet-client.crt'), kubeletClient.certPem);
  writeFileSync(path.join(dir, 'kubelet-client.key'), kubeletClient.keyPem, { mode: 0o600 });
  writeFileSync(path.join(dir, 'sa.key'), sa.privatePem, { mode: 0o600 });
  writeFileSync(path.join(dir, 'sa.pub'), sa.publicPem);
  const adminToken = randomBytes(24).toString('hex');
  const agentToken = randomBytes(24).toString('hex');
  // token,user,uid,"group1,group2"
  writeFileSync(
    path.join(dir, 'tokens.csv'),
    `${adminToken},admin,admin-uid,"system:masters"\n${agentToken},agent-ci,agent-ci-uid,"agents"\n`,
    { mode: 0o600 },
  );
  const auditLog = path.join(dir, 'audit.log');
  writeFileSync(
    path.join(dir, 'audit-policy.yaml'),
    `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: RequestResponse
  resources:
  - group: ""
    resources: ["pods", "configmaps", "secrets", "namespaces", "pods/exec", "pods/attach", "pods/portforward"]
  - group: "apps"
  - group: "rbac.authorization.k8s.io"
- level: Metadata
`,
  );

  const port = await freePort();
  const apiLog = path.join(dir, 'kube-apiserver.log');
  const apiChild = spawnLogged(
    apiserver,
    [
      `--etcd-servers=http://127.0.0.1:${etcdPort}`,
      // Loopback only; with a node, a relay on the node's veth (node.ts) carries the
      // advertised address, which is the endpoint of the `kubernetes` Service.
      '--bind-address=127.0.0.1',
      `--advertise-address=${node ? node.hostIp : '127.0.0.1'}`,
      `--secure-port=${port}`,
      `--cert-dir=${path.join(dir, 'cert-dir')}`,
      `--tls-cert-file=${path.join(dir, 'apiserver.crt')}`,
      `--tls-private-key-file=${path.join(dir, 'apiserver.key')}`,
      `--client-ca-file=${caFile}`,
      `--token-auth-file=${path.join(dir, 'tokens.csv')}`,
      ...(node
        ? // No NodeRestriction: tests impersonate kubelets (system:node:*, system:nodes) to check
          // that the webhooks skip them, and it would refuse their non-mirror pods first.
          ['--authorization-mode=Node,RBAC', '--enable-admission-plugins=NamespaceLifecycle,ServiceAccount,MutatingAdmissionWebhook,ValidatingAdmissionWebhook']
        : [
            '--authorization-mode=RBAC',
            '--enable-admission-plugins=NamespaceLifecycle,MutatingAdmissionWebhook,ValidatingAdmissionWebhook',
            // Without the controller-manager nothing creates the default ServiceAccount;
            // tests create the ServiceAccounts they need explicitly.
            '--disable-admission-plugins=ServiceAccount',
          ]),
      // Our webhook, not the API server, is what must refuse privileged pods in tests.
      '--allow-privileged=true',
      '--service-account-issuer=https://kubernetes.default.svc',
      `--service-account-key-file=${path.join(dir, 'sa.pub')}`,
      `--service-account-signing-key-file=${path.join(dir, 'sa.key')}`,
      '--api-audiences=https://kubernetes.default.svc',
      `--service-cluster-ip-range=${node ? node.serviceCidr : '10.0.0.0/24'}`,
      `--audit-log-path=${auditLog}`,
      `--audit-policy-file=${path.join(dir, 'audit-policy.yaml')}`,
      '--audit-log-format=json',
      // Rotated at 100 MB (the default); keep a bounded history, or a long-lived `harness up` fills the disk (37 GB after an afternoon of benchmarks).
      '--audit-log-maxsize=100',
      '--audit-log-maxbackup=3',
      '--audit-log-mode=blocking',
      `--kubelet-client-certificate=${path.join(dir, 'kubelet-client.crt')}`,
      `--kubelet-client-key=${path.join(dir, 'kubelet-client.key')}`,
      `--kubelet-certificate-authority=${caFile}`,
      '--kubelet-preferred-address-types=InternalIP',
      '--profiling=false',
      '--enable-priority-and-fairness=false',
      // With a node, the `kubernetes` Service needs its endpoint (the advertised address).
      `--endpoint-reconciler-type=${node ? 'lease' : 'none'}`,
      '--v=1',
    ],
    apiLog,
    detached,
  );
  children.push(apiChild);
  const url = `https://127.0.0.1:${port}`;
  const started = Date.now();
  await waitFor(
    'kube-apiserver',
    async () => {
      const r = spawnSync('curl', ['-sf', '--cacert', caFile, '-H', `Authorization: Bearer ${adminToken}`, `${url}/readyz`], { encoding: 'utf8' });
      return r.status === 0 && r.stdout.trim() === 'ok';
    },
    120_000,
    apiChild,
    apiLog,
  );
  progress(`kube-apiserver ready on ${url} in ${Date.now() - started} ms`);

  const adminKubeconfig = path.join(dir, 'admin.kubeconfig');
  const agentKubeconfig = path.join(dir, 'agent.kubeconfig');
  writeKubeconfig(adminKubeconfig, url, caFile, 'admin', adminToken);
  writeKubeconfig(agentKubeconfig, url, caFile, 'agent-ci', agentToken);
  // The agent may work in namespace "agents" and read cluster-wide, like a CI bot. The
  // built-in edit/view ClusterRoles are aggregated by kube-controller-manager, which the
  // harness does not run (they would have no rules), so the harness states its own rules.
  const rbac = `apiVersion: v1
kind: Namespace
metadata: {name: agents}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: harness-agent-edit}
rules:
- apiGroups: ["", "apps", "batch", "networking.k8s.io", "policy", "autoscaling"]
  resources: ["*"]
  verbs: ["*"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: harness-agent-view}
rules:
- apiGroups: ["", "apps", "batch", "networking.k8s.io", "policy", "autoscaling", "rbac.authorization.k8s.io", "admissionregistration.k8s.io", "apiextensions.k8s.io", "storage.k8s.io", "coordination.k8s.io", "discovery.k8s.io"]
  resources: ["*"]
  verbs: ["get", "list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: agents-edit, namespace: agents}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: harness-agent-edit}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: agents}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: agents-view}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: harness-agent-view}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: agents}
`;
  await waitFor(
    'bootstrap RBAC roles',
    async () => spawnSync('kubectl', ['--kubeconfig', adminKubeconfig, 'get', 'clusterrole', 'cluster-admin'], { encoding: 'utf8' }).status === 0,
    60_000,
  );
  const applied = spawnSync('kubectl', ['--kubeconfig', adminKubeconfig, 'apply', '-f', '-'], { input: rbac, encoding: 'utf8' });
  if (applied.status !== 0) throw new Error(`applying harness RBAC failed: ${applied.stderr}`);

  return {
    url,
    port,
    caFile,
    ca,
    adminToken,
    agentToken,
    adminKubeconfig,
    agentKubeconfig,
    auditLog,
    dir,
    pids: children.map((c) => c.pid ?? 0),
    binDir: path.dirname(apiserver),
    caKeyFile: path.join(dir, 'ca.key'),
    saKeyFile: path.join(dir, 'sa.key'),
    stop: async () => {
      for (const c of [...children].reverse()) await stopChild(c, 'SIGTERM');
    },
  };
}
