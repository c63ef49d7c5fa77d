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
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { ControlPlane } from './control-plane.ts';
import type { KafkaBroker } from './kafka.ts';
import type { RunningNode } from './node.ts';
import { REPO_ROOT } from './processes.ts';

// What tests and scripts import from here, wherever it lives.
export { KAFKA_VERSION, REPO_ROOT, cacheDir, freePort } from './processes.ts';
export { ensureKafkaJars, startKafka, type KafkaBroker, type KafkaOptions } from './kafka.ts';
export { ensureGoComponents, startControlPlane, type ControlPlane, type ControlPlaneOptions } from './control-plane.ts';

/** Whether the harness runs the node and the controllers (default yes; KUBETRAIL_NODE=0 turns them off). */
export function nodeEnabled(): boolean {
  return process.env['KUBETRAIL_NODE'] !== '0';
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
