/**
 * Everything the test suite runs against, started in order: the node's
 * network (its addresses go into the API server's certificate and Kafka's pod
 * listener); Kafka; etcd and
 * kube-apiserver; kube-controller-manager and kube-scheduler; the node.
 * Used by `npm test` (test/run-tests.ts) and `npm run harness -- up`.
 */
import path from 'node:path';
import { freePort, harnessEnvOf, nodeEnabled, startControlPlane, startKafka, type HarnessEnv } from './harness.ts';
import { startControllers, type Controllers } from './controllers.ts';
import { cleanNode, cleanStaleNodes } from './node-cleanup.ts';
import { NODE_NAME, planNode, startNode, type NodePlan, type RunningNode } from './node.ts';

/** The started stack. */
export interface Stack {
  readonly env: HarnessEnv;
  /** Pids of every long-running process (for `harness down` of a detached stack). */
  readonly pids: number[];
  readonly node?: NodePlan;
  stop(): Promise<void>;
}

/**
 * Starts the stack in `run` (a fresh directory). `owner` is the pid that owns
 * the node (0 for a detached `harness up`); stale nodes under `root` are
 * cleaned first. On a failed start, whatever started is stopped.
 */
export async function startStack(opts: { run: string; root: string; detached: boolean; owner: number }): Promise<Stack> {
  const withNode = nodeEnabled();
  if (withNode) {
    const n = cleanStaleNodes(opts.root, { includeDetached: opts.owner === 0 });
    if (n > 0) process.stderr.write(`[harness] removed ${n} stale node(s) left by killed runs\n`);
  }
  const stops: (() => Promise<void>)[] = [];
  const stopAll = async (): Promise<void> => {
    for (const s of stops.reverse()) await s().catch(() => undefined);
  };
  try {
    let plan: NodePlan | undefined;
    if (withNode) {
      plan = planNode(path.join(opts.run, 'node'), opts.owner);
      const p = plan;
      stops.push(async () => cleanNode(p.state));
    }
    // With a node, Kafka also listens on the node's host address, for kubetrail's pods.
    const kafka = await startKafka({ dir: path.join(opts.run, 'kafka'), detached: opts.detached, ...(plan ? { podListenerIp: plan.hostIp } : {}) });
    stops.push(() => kafka.stop());
    const cp = await startControlPlane({ dir: path.join(opts.run, 'control-plane'), detached: opts.detached, ...(plan ? { node: plan } : {}) });
    stops.push(() => cp.stop());
    let controllers: Controllers | undefined;
    let node: RunningNode | undefined;
    if (plan) {
      controllers = await startControllers(cp, path.join(opts.run, 'controllers'), freePort, { detached: opts.detached, waitForNamespace: 'agents' });
      stops.push(() => (controllers as Controllers).stop());
      node = await startNode(plan, cp, { detached: opts.detached });
    }
    const pids = [kafka.pid ?? 0, ...cp.pids, ...(controllers?.pids ?? []), ...(plan?.state.pids ?? [])].filter((p) => p > 0);
    return {
      env: harnessEnvOf(kafka, cp, opts.run, node, NODE_NAME),
      pids,
      ...(plan ? { node: plan } : {}),
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
