/**
 * The harness's node: containerd + runc + CNI + kubelet + kube-proxy, in a
 * network namespace of its own, registered with the harness API server.
 *
 * Why a namespace: kube-proxy owns global iptables chains (KUBE-SERVICES, …),
 * the CNI bridge and kubelet's ports are per host, and several harnesses run
 * on one machine (one per worktree, plus CI). In its own namespace each node
 * has its own bridge, rules and ports, and deleting the namespace removes them.
 * The processes keep the host's mount namespace (`nsenter --net`, not
 * `ip netns exec`), because kubelet's volume mounts must be visible to runc.
 *
 *   host netns                        node netns (ktnode-N)
 *   kth-N 172.30.N.1/30  ── veth ──   eth0 172.30.N.2/30 (the node's InternalIP)
 *   routes: 10.210.N.0/24 (pods),     kt0 bridge 10.210.N.1/24 ── pods
 *           10.211.N.0/24 (services)  kube-proxy iptables (masquerade-all)
 *           via 172.30.N.2
 *
 * The API server listens on 127.0.0.1 only; a socat relay on 172.30.N.1
 * (the address it advertises, so the endpoint of `kubernetes.default`) lets
 * the kubelet, kube-proxy and pods reach it without exposing it on eth0.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { issueCert, type CertKeyPair } from '../../certs/generate.ts';
import { NODE_STATE, cleanNode, type NodeState } from './node-cleanup.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));

/** The node's name in the API. */
export const NODE_NAME = 'harness-node';

/** Addresses of one node, fixed before the control plane starts (its certificate names them). */
export interface NodePlan {
  readonly index: number;
  readonly netns: string;
  readonly hostIf: string;
  /** Host end of the veth: what the API server advertises (through the relay). */
  readonly hostIp: string;
  /** The node's InternalIP (kubelet's address). */
  readonly nodeIp: string;
  readonly podCidr: string;
  readonly bridgeIp: string;
  readonly serviceCidr: string;
  /** ClusterIP of `kubernetes.default`. */
  readonly kubernetesServiceIp: string;
  readonly dir: string;
  readonly state: NodeState;
}

function progress(msg: string): void {
  process.stderr.write(`[harness ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

function sh(cmd: string, args: readonly string[], input?: string): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...(input === undefined ? {} : { input }) });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.status}): ${(r.stderr ?? '').trim()}`);
  return r.stdout;
}

function saveState(state: NodeState): void {
  writeFileSync(path.join(state.dir, NODE_STATE), JSON.stringify(state, null, 2) + '\n');
}

/**
 * Claims a free index (an `ip netns add` that succeeds is the claim), creates
 * the namespace, the veth pair and the host routes, and writes the state file
 * before anything else so that a kill at any later point can be cleaned up.
 */
export function planNode(dir: string, owner: number): NodePlan {
  mkdirSync(dir, { recursive: true });
  for (let index = 1; index < 250; index++) {
    const netns = `ktnode-${index}`;
    if (existsSync(`/var/run/netns/${netns}`)) continue;
    if (spawnSync('ip', ['netns', 'add', netns]).status !== 0) continue;
    const hostIf = `kth-${index}`;
    const state: NodeState = { dir, netns, hostIf, owner, pids: [] };
    saveState(state);
    const plan: NodePlan = {
      index,
      netns,
      hostIf,
      hostIp: `172.30.${index}.1`,
      nodeIp: `172.30.${index}.2`,
      podCidr: `10.210.${index}.0/24`,
      bridgeIp: `10.210.${index}.1`,
      serviceCidr: `10.211.${index}.0/24`,
      kubernetesServiceIp: `10.211.${index}.1`,
      dir,
      state,
    };
    try {
      spawnSync('ip', ['link', 'del', hostIf]); // a leftover from a run nobody cleaned
      const inNs = (...a: string[]): string => sh('ip', ['netns', 'exec', netns, ...a]);
      sh('ip', ['link', 'add', hostIf, 'type', 'veth', 'peer', 'name', `ktn-${index}`]);
      sh('ip', ['link', 'set', `ktn-${index}`, 'netns', netns]);
      sh('ip', ['addr', 'add', `${plan.hostIp}/30`, 'dev', hostIf]);
      sh('ip', ['link', 'set', hostIf, 'up']);
      inNs('ip', 'link', 'set', `ktn-${index}`, 'name', 'eth0');
      inNs('ip', 'addr', 'add', `${plan.nodeIp}/30`, 'dev', 'eth0');
      inNs('ip', 'link', 'set', 'eth0', 'up');
      inNs('ip', 'link', 'set', 'lo', 'up');
      inNs('ip', 'route', 'add', 'default', 'via', plan.hostIp);
      // Per-namespace switches: the node routes between its pods, the host and services.
      inNs('sysctl', '-qw', 'net.ipv4.ip_forward=1');
      sh('ip', ['route', 'add', plan.podCidr, 'via', plan.nodeIp]);
      sh('ip', ['route', 'add', plan.serviceCidr, 'via', plan.nodeIp]);
    } catch (err) {
      cleanNode(state);
      throw err;
    }
    return plan;
  }
  throw new Error('no free node index (ktnode-1..249 all exist): run `npm run harness -- down`, or `ip netns del` the stale ones');
}

/** A started node. */
export interface RunningNode {
  readonly plan: NodePlan;
  readonly busyboxImage: string;
  readonly pauseImage: string;
  /** Removes everything the node created (see node-cleanup.ts). */
  stop(): Promise<void>;
}

/** What the node needs from the control plane. */
export interface NodeControlPlane {
  readonly port: number;
  readonly ca: CertKeyPair;
  readonly caFile: string;
  readonly adminKubeconfig: string;
  readonly binDir: string;
}

function writeCertKubeconfig(file: string, server: string, caFile: string, user: string, cert: CertKeyPair, dir: string): void {
  const certFile = path.join(dir, `${user}.crt`);
  const keyFile = path.join(dir, `${user}.key`);
  writeFileSync(certFile, cert.certPem);
  writeFileSync(keyFile, cert.keyPem, { mode: 0o600 });
  writeFileSync(
    file,
    `apiVersion: v1
kind: Config
clusters:
- name: harness
  cluster: {server: "${server}", certificate-authority: "${caFile}"}
users:
- name: ${user}
  user: {client-certificate: "${certFile}", client-key: "${keyFile}"}
contexts:
- name: ${user}
  context: {cluster: harness, user: ${user}}
current-context: ${user}
`,
    { mode: 0o600 },
  );
}

/** Writes a kubeconfig with a client certificate from the harness CA. */
export function certKubeconfig(cp: NodeControlPlane, dir: string, name: string, commonName: string, organization: string[], server: string): string {
  const cert = issueCert(cp.ca, { commonName, organization, usages: ['clientAuth'] });
  const file = path.join(dir, `${name}.kubeconfig`);
  writeCertKubeconfig(file, server, cp.caFile, name, cert, dir);
  return file;
}

/** Builds (if not cached) the test and sandbox images; returns names and archives. */
export function ensureImages(): { busybox: string; busyboxArchive: string; pause: string; pauseArchive: string } {
  const r = spawnSync('bash', [path.join(HERE, '..', 'images', 'build.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.status !== 0) throw new Error(`building the test images failed (exit ${r.status}); see the output above`);
  const v: Record<string, string> = {};
  for (const line of r.stdout.split('\n')) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line);
    if (m) v[m[1] as string] = m[2] as string;
  }
  const need = (k: string): string => {
    const x = v[k];
    if (!x) throw new Error(`test/images/build.sh printed no ${k}`);
    return x;
  };
  return { busybox: need('BUSYBOX_IMAGE'), busyboxArchive: need('BUSYBOX_ARCHIVE'), pause: need('PAUSE_IMAGE'), pauseArchive: need('PAUSE_ARCHIVE') };
}

async function waitUntil(what: string, check: () => boolean, timeoutMs: number, child?: ChildProcess, logFile?: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child && child.exitCode !== null) throw new Error(`${what}: process exited with code ${child.exitCode}${logFile ? `; see ${logFile}` : ''}`);
    try {
      if (check()) return;
    } catch {
      // not yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${what} not ready after ${timeoutMs} ms${logFile ? `; see ${logFile}` : ''}`);
}

/** Spawns `cmd` inside the node's network namespace, logging to `logFile`. */
function spawnInNode(plan: NodePlan, cmd: string, args: readonly string[], logFile: string, detached: boolean): ChildProcess {
  return spawnTracked(plan, 'nsenter', [`--net=/var/run/netns/${plan.netns}`, '--', cmd, ...args], logFile, detached);
}

function spawnTracked(plan: NodePlan, cmd: string, args: readonly string[], logFile: string, detached: boolean): ChildProcess {
  const out = openSync(logFile, 'a');
  const child = spawn(cmd, args, { stdio: ['ignore', out, out], detached });
  closeSync(out);
  if (detached) child.unref();
  if (child.pid !== undefined) {
    plan.state.pids.push(child.pid);
    saveState(plan.state);
  }
  return child;
}

function containerdConfig(plan: NodePlan, pauseImage: string): string {
  const d = path.join(plan.dir, 'containerd');
  return `version = 2
root = "${d}/root"
state = "${d}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "${d}/containerd.sock"
[ttrpc]
  address = "${d}/containerd.sock.ttrpc"
[debug]
  level = "warn"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "${d}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${pauseImage}"
  # This sandbox forbids lowering oom_score_adj; without this every sandbox fails with
  # "runc create failed: unable to start container process: can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "runc"
        # Our own runc state, so that cleanup finds (only) this node's containers.
        Root = "${d}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${plan.dir}/cni/net.d"
`;
}

function cniConfig(plan: NodePlan): string {
  return JSON.stringify(
    {
      cniVersion: '1.0.0',
      name: 'kubetrail-harness',
      plugins: [
        {
          type: 'bridge',
          bridge: 'kt0',
          isGateway: true,
          ipMasq: true,
          hairpinMode: true,
          ipam: { type: 'host-local', ranges: [[{ subnet: plan.podCidr, gateway: plan.bridgeIp }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: path.join(plan.dir, 'cni', 'ipam') },
        },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    },
    null,
    2,
  );
}

function kubeletConfig(plan: NodePlan, cp: NodeControlPlane, serving: { cert: string; key: string }): string {
  return `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://${plan.dir}/containerd/containerd.sock
cgroupDriver: cgroupfs
# Machine limits, from docs/testing.md: no swap check, no QoS cgroup tree, no
# node-allocatable enforcement, no local-storage isolation (no fs stats here).
failSwapOn: false
cgroupsPerQOS: false
enforceNodeAllocatable: []
localStorageCapacityIsolation: false
# The eviction manager cannot read filesystem stats on this machine; evict only
# when memory is really gone, never collect the locally built images.
evictionHard: {memory.available: "1Mi"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: "${cp.caFile}"}
# Only the API server holds a client certificate from the harness CA for this port.
authorization: {mode: AlwaysAllow}
tlsCertFile: "${serving.cert}"
tlsPrivateKeyFile: "${serving.key}"
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
podLogsDir: "${plan.dir}/pod-logs"
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
registerNode: true
serializeImagePulls: false
nodeStatusReportFrequency: 10s
syncFrequency: 10s
`;
}

function kubeProxyConfig(plan: NodePlan, kubeconfig: string): string {
  return `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: "${kubeconfig}"}
hostnameOverride: ${NODE_NAME}
bindAddress: ${plan.nodeIp}
clusterCIDR: ${plan.podCidr}
# Masquerade every service connection: pods share one bridge without
# br_netfilter guarantees, and the API server's endpoint is the host itself.
iptables: {masqueradeAll: true, minSyncPeriod: 0s, syncPeriod: 30s}
# The conntrack table size and timeouts are machine-wide settings: leave them.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
`;
}

function adminKubectl(cp: NodeControlPlane, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('kubectl', ['--kubeconfig', cp.adminKubeconfig, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/**
 * Starts the node on `plan`: relay, containerd (images imported), kubelet,
 * kube-proxy; resolves when the Node is Ready and kube-proxy has programmed
 * the `kubernetes` Service.
 */
export async function startNode(plan: NodePlan, cp: NodeControlPlane, opts: { detached?: boolean } = {}): Promise<RunningNode> {
  const detached = opts.detached ?? false;
  const started = Date.now();
  const dir = plan.dir;
  for (const d of ['containerd', 'cni/net.d', 'cni/ipam', 'kubelet', 'pod-logs', 'pki']) mkdirSync(path.join(dir, d), { recursive: true });
  const images = ensureImages();

  // The relay: the API server's port on the veth's host address.
  const relayLog = path.join(dir, 'apiserver-relay.log');
  spawnTracked(plan, 'socat', [`TCP-LISTEN:${cp.port},bind=${plan.hostIp},reuseaddr,fork`, `TCP:127.0.0.1:${cp.port}`], relayLog, detached);
  const server = `https://${plan.hostIp}:${cp.port}`;

  // containerd
  const cfg = path.join(dir, 'containerd', 'config.toml');
  writeFileSync(cfg, containerdConfig(plan, images.pause));
  writeFileSync(path.join(dir, 'cni', 'net.d', '10-kubetrail.conflist'), cniConfig(plan));
  const ctrdLog = path.join(dir, 'containerd.log');
  const ctrd = spawnInNode(plan, 'containerd', ['--config', cfg], ctrdLog, detached);
  const sock = path.join(dir, 'containerd', 'containerd.sock');
  const ctr = (...a: string[]): string => sh('ctr', ['--address', sock, '-n', 'k8s.io', ...a]);
  await waitUntil('containerd', () => existsSync(sock) && spawnSync('ctr', ['--address', sock, 'version']).status === 0, 30_000, ctrd, ctrdLog);
  for (const archive of [images.pauseArchive, images.busyboxArchive]) ctr('images', 'import', archive);
  progress(`containerd ready, images ${images.busybox} and ${images.pause} imported (${Date.now() - started} ms)`);

  // kubelet
  const pki = path.join(dir, 'pki');
  const serving = issueCert(cp.ca, { commonName: NODE_NAME, ips: [plan.nodeIp, '127.0.0.1'], dnsNames: [NODE_NAME, 'localhost'] });
  writeFileSync(path.join(pki, 'kubelet-serving.crt'), serving.certPem);
  writeFileSync(path.join(pki, 'kubelet-serving.key'), serving.keyPem, { mode: 0o600 });
  const kubeletKc = certKubeconfig(cp, pki, 'kubelet', `system:node:${NODE_NAME}`, ['system:nodes'], server);
  const kubeletCfg = path.join(dir, 'kubelet-config.yaml');
  writeFileSync(kubeletCfg, kubeletConfig(plan, cp, { cert: path.join(pki, 'kubelet-serving.crt'), key: path.join(pki, 'kubelet-serving.key') }));
  const kubeletLog = path.join(dir, 'kubelet.log');
  const kubelet = spawnInNode(
    plan,
    path.join(cp.binDir, 'kubelet'),
    [`--config=${kubeletCfg}`, `--kubeconfig=${kubeletKc}`, `--root-dir=${path.join(dir, 'kubelet')}`, `--hostname-override=${NODE_NAME}`, `--node-ip=${plan.nodeIp}`, '--v=1'],
    kubeletLog,
    detached,
  );
  await waitUntil(
    `node ${NODE_NAME} Ready`,
    () => {
      const r = adminKubectl(cp, ['get', 'node', NODE_NAME, '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}']);
      return r.status === 0 && r.stdout.trim() === 'True';
    },
    120_000,
    kubelet,
    kubeletLog,
  );
  progress(`kubelet: node ${NODE_NAME} Ready (${Date.now() - started} ms)`);

  // kube-proxy
  const proxyKc = certKubeconfig(cp, pki, 'kube-proxy', 'system:kube-proxy', [], server);
  const proxyCfg = path.join(dir, 'kube-proxy-config.yaml');
  writeFileSync(proxyCfg, kubeProxyConfig(plan, proxyKc));
  const proxyLog = path.join(dir, 'kube-proxy.log');
  const proxy = spawnInNode(plan, path.join(cp.binDir, 'kube-proxy'), [`--config=${proxyCfg}`, '--v=1'], proxyLog, detached);
  await waitUntil(
    'kube-proxy rules for the kubernetes Service',
    () => sh('ip', ['netns', 'exec', plan.netns, 'iptables', '-t', 'nat', '-S', 'KUBE-SERVICES']).includes(`${plan.kubernetesServiceIp}/32`),
    60_000,
    proxy,
    proxyLog,
  );
  progress(`node up: kubelet, containerd, kube-proxy (iptables) in netns ${plan.netns} in ${Date.now() - started} ms`);
  return {
    plan,
    busyboxImage: images.busybox,
    pauseImage: images.pause,
    stop: async () => {
      cleanNode(plan.state);
    },
  };
}
