/**
 * The test harness: real components on loopback, for tests and for people.
 *
 * - Kafka 4.x, a single-node KRaft broker run from Maven Central jars;
 * - etcd and kube-apiserver built from the Go module proxy (see build-go.sh);
 * - unless KUBETRAIL_NODE=0: kube-controller-manager, kube-scheduler and a node
 *   (containerd, kubelet, kube-proxy; see node.ts, controllers.ts);
 * - the machine's kubectl, with one kubeconfig per test user.
 *
 * Everything is built once into the cache (`KUBETRAIL_CACHE`, default
 * `~/.cache/kubetrail`) and started on free ports. Tests use the TypeScript
 * API; people use `npm run harness -- up|down`, which writes `test/.harness/env`.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createPrivateKey, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, openSync, readFileSync, readdirSync, writeFileSync, closeSync } from 'node:fs';
import { createServer } from 'node:net';
import { homedir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kafka, logLevel } from 'kafkajs';
import { createCA, issueCert, rsaKeyPem, type CertKeyPair } from '../../certs/generate.ts';
import type { NodePlan, RunningNode } from './node.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** Root of the repository. */
export const REPO_ROOT = path.resolve(HERE, '..', '..');
/** Kafka release the harness runs (must match kafka/pom.xml). */
export const KAFKA_VERSION = '4.1.1';

/** Where built binaries and jars are kept between runs. */
export function cacheDir(): string {
  return process.env['KUBETRAIL_CACHE'] ?? path.join(homedir(), '.cache', 'kubetrail');
}

function progress(msg: string): void {
  process.stderr.write(`[harness ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

/** Asks the kernel for a free TCP port on loopback. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number, child?: ChildProcess, logFile?: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child && child.exitCode !== null) {
      const tail = logFile && existsSync(logFile) ? readFileSync(logFile, 'utf8').slice(-3000) : '';
      throw new Error(`${what} exited with code ${child.exitCode} before it was ready\n${tail}`);
    }
    try {
      if (await check()) return;
    } catch {
      // not ready yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  const tail = logFile && existsSync(logFile) ? readFileSync(logFile, 'utf8').slice(-3000) : '';
  throw new Error(`${what} not ready after ${timeoutMs} ms\n${tail}`);
}

/** Components this process started and must not leave behind. */
const owned = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of owned) c.kill('SIGKILL');
});

/** Spawns a component with stdout and stderr appended to its log file. */
function spawnLogged(cmd: string, args: readonly string[], logFile: string, detached: boolean): ChildProcess {
  const out = openSync(logFile, 'a');
  const child = spawn(cmd, args, { stdio: ['ignore', out, out], detached });
  closeSync(out);
  if (detached) child.unref();
  // A component we started for this process must not outlive it, however this process ends
  // (a shutdown deadline, an uncaught error): kill it on exit, unless it was started to outlive us.
  else {
    owned.add(child);
    child.once('exit', () => owned.delete(child));
  }
  return child;
}

/** Signals a child and waits for it to exit; after `graceMs`, SIGKILL. */
async function stopChild(child: ChildProcess, signal: NodeJS.Signals, graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill(signal);
  await Promise.race([gone, new Promise((r) => setTimeout(r, graceMs))]);
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGKILL');
    await gone;
  }
}

// ---------------------------------------------------------------- builds

/** Whether the harness runs the node and the controllers (default yes; KUBETRAIL_NODE=0 turns them off). */
export function nodeEnabled(): boolean {
  return process.env['KUBETRAIL_NODE'] !== '0';
}

/** Builds etcd and kube-apiserver (and the node's binaries unless KUBETRAIL_NODE=0) if the cache lacks them (prints progress). */
export function ensureGoComponents(): { etcd: string; apiserver: string } {
  const bin = path.join(cacheDir(), 'bin');
  const r = spawnSync('bash', [path.join(HERE, 'build-go.sh')], { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, KUBETRAIL_CACHE: cacheDir() } });
  if (r.status !== 0) throw new Error(`building etcd/kube-apiserver failed (exit ${r.status}); see the output above`);
  return { etcd: path.join(bin, 'etcd'), apiserver: path.join(bin, 'kube-apiserver') };
}

/** Fetches the Kafka jars from Maven Central into the cache if missing. */
export function ensureKafkaJars(): string {
  const libs = path.join(cacheDir(), `kafka-${KAFKA_VERSION}`, 'libs');
  const stamp = path.join(libs, '.complete');
  if (existsSync(stamp)) return libs;
  progress(`fetching Kafka ${KAFKA_VERSION} jars from Maven Central into ${libs} (first run only)`);
  const r = spawnSync(
    'mvn',
    ['-q', '-B', '-f', path.join(HERE, 'kafka', 'pom.xml'), 'dependency:copy-dependencies', `-DoutputDirectory=${libs}`, '-DincludeScope=runtime'],
    { stdio: ['ignore', 'inherit', 'inherit'] },
  );
  if (r.status !== 0) throw new Error(`mvn dependency:copy-dependencies failed (exit ${r.status})`);
  writeFileSync(stamp, `${KAFKA_VERSION}\n`);
  return libs;
}

// ---------------------------------------------------------------- kafka

/** A running Kafka broker. */
export interface KafkaBroker {
  readonly brokers: string[];
  /** SASL_PLAINTEXT listener, when started with `saslUsers`. */
  readonly saslBrokers?: string[];
  /** SSL listener (mutual TLS when `tls.clientCaPem` is set), when started with `tls`. */
  readonly sslBrokers?: string[];
  /** SASL_SSL listener (server-authenticated TLS, then SASL), when started with both `tls` and `saslUsers`. */
  readonly saslSslBrokers?: string[];
  /** PLAINTEXT listener on the node's host address, advertised as such, when started with `podListenerIp`. */
  readonly podBrokers?: string[];
  readonly port: number;
  readonly dir: string;
  /** Sends a signal (default SIGKILL) and waits for the process to go. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts the broker again on the same port and data. */
  restart(): Promise<void>;
  stop(): Promise<void>;
  readonly pid: number | undefined;
}

/** Options for {@link startKafka}. */
export interface KafkaOptions {
  dir: string;
  /** Keep the process alive after this Node process exits (for `harness up`). */
  detached?: boolean;
  /** Adds a SASL_PLAINTEXT listener with PLAIN and SCRAM users (name → password). */
  saslUsers?: Record<string, string>;
  /**
   * Adds an SSL listener serving this certificate (PEM; the key may be PKCS#1
   * or PKCS#8), requiring a client certificate signed by `clientCaPem` when
   * given; with `saslUsers` also a SASL_SSL listener.
   */
  tls?: { certPem: string; keyPem: string; clientCaPem?: string };
  /**
   * Adds a PLAINTEXT listener bound to and advertised on this address (the
   * node's host end, 172.30.N.1), so pods reach the broker: a relay to the
   * loopback listener would not do, as clients then connect to the address the
   * broker advertises.
   */
  podListenerIp?: string;
}

async function kafkaReady(brokers: string[]): Promise<boolean> {
  const kafka = new Kafka({ clientId: 'harness-probe', brokers, logLevel: logLevel.NOTHING, connectionTimeout: 1000, retry: { retries: 0 } });
  const admin = kafka.admin();
  try {
    await admin.connect();
    await admin.describeCluster();
    return true;
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

function javaProcess(libs: string, mainClass: string, args: string[], logFile: string, detached: boolean): ChildProcess {
  return spawnLogged(
    'java',
    [
      '-Xms256m',
      '-Xmx768m',
      '-XX:+UseG1GC',
      '-XX:TieredStopAtLevel=1',
      `-Dlog4j2.configurationFile=${path.join(HERE, 'kafka', 'log4j2.properties')}`,
      '-cp',
      `${libs}/*`,
      mainClass,
      ...args,
    ],
    logFile,
    detached,
  );
}

/** Starts a single-node KRaft Kafka broker on free loopback ports. */
export async function startKafka(opts: KafkaOptions): Promise<KafkaBroker> {
  const libs = ensureKafkaJars();
  mkdirSync(opts.dir, { recursive: true });
  const port = await freePort();
  const controllerPort = await freePort();
  const saslPort = opts.saslUsers ? await freePort() : 0;
  const sslPort = opts.tls ? await freePort() : 0;
  const saslSslPort = opts.tls && opts.saslUsers ? await freePort() : 0;
  const podPort = opts.podListenerIp ? await freePort() : 0;
  const dataDir = path.join(opts.dir, 'data');
  const extra: { name: string; port: number }[] = [];
  if (opts.saslUsers) extra.push({ name: 'SASL_PLAINTEXT', port: saslPort });
  if (opts.tls) extra.push({ name: 'SSL', port: sslPort });
  if (saslSslPort !== 0) extra.push({ name: 'SASL_SSL', port: saslSslPort });
  const extraListeners =
    extra.map((l) => `,${l.name}://127.0.0.1:${l.port}`).join('') + (opts.podListenerIp ? `,PODS://${opts.podListenerIp}:${podPort}` : '');
  const props = [
    'process.roles=broker,controller',
    'node.id=1',
    `controller.quorum.voters=1@127.0.0.1:${controllerPort}`,
    `listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controllerPort}${extraListeners}`,
    `advertised.listeners=PLAINTEXT://127.0.0.1:${port}${extraListeners}`,
    'controller.listener.names=CONTROLLER',
    'inter.broker.listener.name=PLAINTEXT',
    `listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT${extra.map((l) => `,${l.name}:${l.name}`).join('')}${opts.podListenerIp ? ',PODS:PLAINTEXT' : ''}`,
    `log.dirs=${dataDir}`,
    'num.partitions=1',
    'offsets.topic.replication.factor=1',
    'transaction.state.log.replication.factor=1',
    'transaction.state.log.min.isr=1',
    'share.coordinator.state.topic.replication.factor=1',
    'share.coordinator.state.topic.min.isr=1',
    'group.initial.rebalance.delay.ms=0',
    'auto.create.topics.enable=true',
    'log.flush.interval.messages=9223372036854775807',
  ];
  if (opts.saslUsers) {
    props.push('sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512');
    const plainUsers = Object.entries(opts.saslUsers)
      .map(([u, p]) => `user_${u}="${p}"`)
      .join(' ');
    for (const l of extra.filter((x) => x.name.startsWith('SASL_'))) {
      const n = l.name.toLowerCase();
      props.push(
        `listener.name.${n}.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required ${plainUsers};`,
        `listener.name.${n}.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;`,
        `listener.name.${n}.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;`,
      );
    }
  }
  if (opts.tls) {
    // Kafka reads PEM key stores from files; the key must be PKCS#8.
    const keystore = path.join(opts.dir, 'broker-keystore.pem');
    const pkcs8 = createPrivateKey(opts.tls.keyPem).export({ type: 'pkcs8', format: 'pem' }).toString();
    writeFileSync(keystore, pkcs8 + opts.tls.certPem, { mode: 0o600 });
    props.push('ssl.keystore.type=PEM', `ssl.keystore.location=${keystore}`);
    if (opts.tls.clientCaPem !== undefined) {
      const truststore = path.join(opts.dir, 'broker-truststore.pem');
      writeFileSync(truststore, opts.tls.clientCaPem);
      props.push('ssl.truststore.type=PEM', `ssl.truststore.location=${truststore}`, 'listener.name.ssl.ssl.client.auth=required');
    }
    if (saslSslPort !== 0) props.push('listener.name.sasl_ssl.ssl.client.auth=none');
  }
  const propsFile = path.join(opts.dir, 'server.properties');
  writeFileSync(propsFile, props.join('\n') + '\n');
  const logFile = path.join(opts.dir, 'kafka.log');
  if (!existsSync(path.join(dataDir, 'meta.properties'))) {
    // Kafka's own random cluster ids never start with '-' (the format tool's
    // argument parser would read one as an option: about 1 start in 64).
    let clusterId = randomBytes(16).toString('base64url');
    while (clusterId.startsWith('-')) clusterId = randomBytes(16).toString('base64url');
    const formatArgs = ['format', '-t', clusterId, '-c', propsFile];
    for (const [u, p] of Object.entries(opts.saslUsers ?? {})) {
      formatArgs.push('--add-scram', `SCRAM-SHA-256=[name=${u},password=${p}]`, '--add-scram', `SCRAM-SHA-512=[name=${u},password=${p}]`);
    }
    const r = spawnSync('java', ['-Xmx256m', `-Dlog4j2.configurationFile=${path.join(HERE, 'kafka', 'log4j2.properties')}`, '-cp', `${libs}/*`, 'kafka.tools.StorageTool', ...formatArgs], {
      encoding: 'utf8',
    });
    if (r.status !== 0) throw new Error(`kafka storage format failed (exit ${r.status}): ${r.stderr}${r.stdout}`);
  }
  const brokers = [`127.0.0.1:${port}`];
  let child: ChildProcess;
  const launch = async (): Promise<void> => {
    child = javaProcess(libs, 'kafka.Kafka', [propsFile], logFile, opts.detached ?? false);
    await waitFor('kafka', () => kafkaReady(brokers), 90_000, child, logFile);
  };
  const started = Date.now();
  await launch();
  progress(`kafka ${KAFKA_VERSION} ready on ${brokers[0]} in ${Date.now() - started} ms`);
  const kill = (signal: NodeJS.Signals = 'SIGKILL'): Promise<void> => stopChild(child, signal);
  return {
    brokers,
    port,
    dir: opts.dir,
    get pid() {
      return child.pid;
    },
    kill,
    restart: launch,
    stop: () => kill('SIGTERM'),
    ...(opts.saslUsers ? { saslBrokers: [`127.0.0.1:${saslPort}`] } : {}),
    ...(opts.tls ? { sslBrokers: [`127.0.0.1:${sslPort}`] } : {}),
    ...(saslSslPort !== 0 ? { saslSslBrokers: [`127.0.0.1:${saslSslPort}`] } : {}),
    ...(opts.podListenerIp ? { podBrokers: [`${opts.podListenerIp}:${podPort}`] } : {}),
  };
}

// ---------------------------------------------------------------- control plane

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

// ---------------------------------------------------------------- env file

/** What `harness up` writes and tests read (shell-sourceable). */
export interface HarnessEnv {
  KAFKA_BROKERS: string;
  ADMIN_KUBECONFIG: string;
  AGENT_KUBECONFIG: string;
  APISERVER_URL: string;
  APISERVER_CA: string;
  APISERVER_AUDIT_LOG: string;
  ADMIN_TOKEN: string;
  AGENT_TOKEN: string;
  HARNESS_DIR: string;
  /** Set when the node runs: its name, the test image (busybox, imported, never pulled), addresses. */
  NODE_NAME?: string;
  NODE_IMAGE?: string;
  NODE_NETNS?: string;
  NODE_POD_CIDR?: string;
  NODE_SERVICE_CIDR?: string;
  KUBERNETES_SERVICE_IP?: string;
  /** The broker's listener that pods reach (the node's host address), when the node runs. */
  KAFKA_NODE_BROKERS?: string;
}

/** The env-file values describing a running broker and control plane (and node). */
export function harnessEnvOf(kafka: KafkaBroker, cp: ControlPlane, dir: string, node?: RunningNode, nodeName = 'harness-node'): HarnessEnv {
  return {
    ...(node
      ? {
          NODE_NAME: nodeName,
          NODE_IMAGE: node.busyboxImage,
          NODE_NETNS: node.plan.netns,
          NODE_POD_CIDR: node.plan.podCidr,
          NODE_SERVICE_CIDR: node.plan.serviceCidr,
          KUBERNETES_SERVICE_IP: node.plan.kubernetesServiceIp,
        }
      : {}),
    ...(kafka.podBrokers ? { KAFKA_NODE_BROKERS: kafka.podBrokers.join(',') } : {}),
    KAFKA_BROKERS: kafka.brokers.join(','),
    ADMIN_KUBECONFIG: cp.adminKubeconfig,
    AGENT_KUBECONFIG: cp.agentKubeconfig,
    APISERVER_URL: cp.url,
    APISERVER_CA: cp.caFile,
    APISERVER_AUDIT_LOG: cp.auditLog,
    ADMIN_TOKEN: cp.adminToken,
    AGENT_TOKEN: cp.agentToken,
    HARNESS_DIR: dir,
  };
}

/** Default location of the env file. */
export const ENV_FILE = path.join(REPO_ROOT, 'test', '.harness', 'env');

/** Writes the env file (mode 0600: it holds tokens). */
export function writeEnvFile(env: HarnessEnv, file = ENV_FILE): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const text = Object.entries(env)
    .map(([k, v]) => `export ${k}='${String(v).replace(/'/g, `'\\''`)}'`)
    .join('\n');
  writeFileSync(file, text + '\n', { mode: 0o600 });
}

/** Reads the env file written by `harness up` or the test runner; undefined when absent. */
export function readEnvFile(file = process.env['KUBETRAIL_HARNESS_ENV'] ?? ENV_FILE): HarnessEnv | undefined {
  if (!existsSync(file)) return undefined;
  const env: Record<string, string> = {};
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = /^export ([A-Z_]+)='(.*)'$/.exec(line);
    if (m) env[m[1] as string] = (m[2] as string).replace(/'\\''/g, "'");
  }
  return env as unknown as HarnessEnv;
}

/** Lists the harness directories under `test/.harness` (for cleanup). */
export function harnessDirs(root = path.join(REPO_ROOT, 'test', '.harness')): string[] {
  return existsSync(root) ? readdirSync(root).map((d) => path.join(root, d)) : [];
}
