/**
 * Shared set-up of the real-node tests: pods on the harness node (the locally
 * built busybox image, never pulled), and the real gateway in this process in
 * front of the harness API server, with exec policies and stream masking set
 * by the test and a sink the test reads (memory, or the real pipeline to a
 * local log for `kubetrail replay`).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { Registry } from 'prom-client';
import { createCA, issueCert } from '../../certs/generate.ts';
import { buildKubeconfig } from '../../cli/kubeconfig.ts';
import { loadConfig } from '../../core/config.ts';
import { createLogger } from '../../core/logger.ts';
import { createEventPipeline } from '../../core/pipeline.ts';
import { compileExecPolicy, type CompiledExecPolicy } from '../../core/policy/exec.ts';
import { compileMaskingPolicy, type CompiledMaskingPolicy } from '../../core/masking/stream.ts';
import { MemorySink } from '../../core/sinks/memory-sink.ts';
import type { EventSink } from '../../core/sinks/sink.ts';
import { startGateway, type Gateway } from '../../exec-proxy/main.ts';
import { drainSessions } from '../../exec-proxy/stream/index.ts';
import { harness, kubectl } from '../support/env.ts';
import { uniq } from '../gateway/support.ts';

export { uniq };

/** The harness env, failing clearly when the node is off (KUBETRAIL_NODE=0). */
export function nodeEnv(): ReturnType<typeof harness> & { NODE_NAME: string; NODE_IMAGE: string } {
  const env = harness();
  if (!env.NODE_NAME || !env.NODE_IMAGE) throw new Error('the harness runs no node (KUBETRAIL_NODE=0?): the real-node tests need it');
  return env as ReturnType<typeof harness> & { NODE_NAME: string; NODE_IMAGE: string };
}

/** Container fields of a test pod's single container `app`. */
export interface AppContainer {
  command: string[];
  stdin?: boolean;
  tty?: boolean;
}

/**
 * Creates pod `name` in `agents` (as admin) running `app` from the test image,
 * waits until it is Ready, and deletes it after the test.
 */
export async function runPod(t: TestContext, name: string, app: AppContainer, ns = 'agents'): Promise<string> {
  const env = nodeEnv();
  const pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: ns, labels: { 'kubetrail.test/pod': name } },
    spec: {
      restartPolicy: 'Never',
      terminationGracePeriodSeconds: 0,
      automountServiceAccountToken: false,
      containers: [{ name: 'app', image: env.NODE_IMAGE, imagePullPolicy: 'Never', ...app }],
    },
  };
  const mk = await kubectl(env.ADMIN_KUBECONFIG, ['create', '-f', '-'], JSON.stringify(pod));
  if (mk.status !== 0) throw new Error(`creating pod ${name}: ${mk.stderr}`);
  t.after(() => kubectl(env.ADMIN_KUBECONFIG, ['-n', ns, 'delete', 'pod', name, '--wait=false', '--grace-period=0', '--force']));
  const w = await kubectl(env.ADMIN_KUBECONFIG, ['-n', ns, 'wait', '--for=condition=Ready', `pod/${name}`, '--timeout=90s']);
  if (w.status !== 0) {
    const d = await kubectl(env.ADMIN_KUBECONFIG, ['-n', ns, 'describe', 'pod', name]);
    throw new Error(`pod ${name} not Ready: ${w.stderr}\n${d.stdout.slice(-2000)}`);
  }
  return name;
}

/** A real gateway for the agent, with the policies the test gives. */
export interface NodeGateway {
  gw: Gateway;
  sink: EventSink;
  /** The sink when it is a MemorySink (the default). */
  memory: MemorySink | undefined;
  /** Kubeconfig for the agent (agent-ci's own token) through the gateway, namespace `agents`. */
  kubeconfig: string;
  /**
   * The same with the token inline: @kubernetes/client-node 2.0 ignores a kubeconfig's
   * `tokenFile` (its requests then carry no credentials and get 401).
   */
  inlineTokenKubeconfig: string;
  /** Where the gateway's pipeline writes its local log (with `pipeline: true`). */
  dataDir: string;
  /** Stops the gateway and closes the sink (releasing the local log's lock); keeps the data directory. */
  stop(): Promise<void>;
  /** `stop()`, then removes the data directory. */
  close(): Promise<void>;
}

/** Options of {@link startNodeGateway}. */
export interface NodeGatewayOptions {
  execPolicies?: CompiledExecPolicy[];
  masking?: CompiledMaskingPolicy[];
  /** Record through the real event pipeline into a local log (for `kubetrail replay`) instead of memory. */
  pipeline?: boolean;
  /** Config `approvals` (human approval; ExecPolicy requireApproval). */
  approvals?: Record<string, unknown>;
}

/** Starts the gateway (TokenReview authn, impersonating as the harness admin) on 127.0.0.1. */
export async function startNodeGateway(opts: NodeGatewayOptions = {}): Promise<NodeGateway> {
  const env = nodeEnv();
  const dir = mkdtempSync(path.join(tmpdir(), 'kubetrail-node-gw-'));
  const ca = createCA({ commonName: 'node-gw-test-ca' });
  const serving = issueCert(ca, { commonName: 'kubetrail-gateway', ips: ['127.0.0.1'], dnsNames: ['localhost'] });
  const config = loadConfig({
    document: {
      cluster: 'node-test',
      dataDir: dir,
      policies: { dir: path.join(dir, 'no-policies') },
      proxy: { listen: '127.0.0.1:0', upstream: { kubeconfig: env.ADMIN_KUBECONFIG }, authn: { jwt: [], tokenReview: true } },
      ...(opts.approvals ? { approvals: opts.approvals as never } : {}),
    },
  });
  const log = createLogger({ level: (process.env['GATEWAY_TEST_LOG'] as 'info' | undefined) ?? 'silent' });
  const memory = opts.pipeline ? undefined : new MemorySink({ source: { component: 'proxy', instance: 'node-test', cluster: 'node-test' } });
  const sink: EventSink = memory ?? (await createEventPipeline({ config, log, registry: new Registry(), component: 'proxy', instance: 'node-test' }));
  const gw = await startGateway({
    config,
    log,
    sink,
    tls: { cert: serving.certPem, key: serving.keyPem },
    guardrails: () => [],
    execPolicies: () => opts.execPolicies ?? [],
    masking: () => opts.masking ?? [],
  });
  const tokenFile = path.join(dir, 'agent-token');
  writeFileSync(tokenFile, env.AGENT_TOKEN, { mode: 0o600 });
  const kubeconfig = path.join(dir, 'agent.kubeconfig');
  writeFileSync(kubeconfig, buildKubeconfig({ server: gw.url, caPem: ca.certPem, tokenFile, namespace: 'agents' }), { mode: 0o600 });
  const inlineTokenKubeconfig = path.join(dir, 'agent-inline.kubeconfig');
  writeFileSync(
    inlineTokenKubeconfig,
    `apiVersion: v1
kind: Config
clusters:
- name: gw
  cluster: {server: "${gw.url}", certificate-authority-data: "${Buffer.from(ca.certPem).toString('base64')}"}
users:
- name: agent
  user: {token: "${env.AGENT_TOKEN}"}
contexts:
- name: gw
  context: {cluster: gw, user: agent, namespace: agents}
current-context: gw
`,
    { mode: 0o600 },
  );
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      await gw.close();
      await drainSessions();
      await sink.close();
    })());
  return {
    gw,
    sink,
    memory,
    kubeconfig,
    inlineTokenKubeconfig,
    dataDir: dir,
    stop,
    async close() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The default stream masking policy (built-in detectors, e.g. AWS access keys). */
export function defaultMasking(): CompiledMaskingPolicy {
  return compileMaskingPolicy({ apiVersion: 'kubetrail.io/v1alpha1', kind: 'MaskingPolicy', metadata: { name: 'default' }, spec: {} }, 'test');
}

/** An ExecPolicy for namespace `agents` with `rules`. */
export function execPolicy(rules: unknown[]): CompiledExecPolicy {
  return compileExecPolicy({ apiVersion: 'kubetrail.io/v1alpha1', kind: 'ExecPolicy', metadata: { name: 'agents-exec' }, spec: { match: { namespaces: ['agents'] }, rules } }, 'test');
}
