/**
 * Helpers of the in-cluster tests (test/deploy/in-cluster*.test.ts): the
 * image built by build-image.sh and imported into the node's containerd, a
 * scratch copy of manifests/ with the image set in its one documented place
 * and Kafka pointed at the harness broker's pod listener, local PersistentVolumes
 * for the spool claims, waiting on conditions, and reading events back.
 */
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { harness, kubectl, productEnv, run, type CommandResult } from '../support/env.ts';
import { cacheDir } from '../harness/harness.ts';
import { REPO } from './support.ts';

/** The kubetrail image as the node knows it. */
export interface NodeImage {
  readonly image: string;
  readonly name: string;
  readonly tag: string;
  readonly archiveBytes: number;
}

/** Builds (or finds cached) the image and imports it into the node's containerd. */
export async function importedImage(): Promise<NodeImage> {
  const h = harness();
  if (!h.NODE_NAME) throw new Error('the harness runs no node (KUBETRAIL_NODE=0?)');
  const b = await run('bash', [path.join(REPO, 'test', 'deploy', 'build-image.sh')], undefined, { timeoutMs: 20 * 60_000 });
  if (b.status !== 0) throw new Error(`build-image.sh failed: ${b.stderr.slice(-3000)}`);
  const out = Object.fromEntries(b.stdout.trim().split('\n').map((l) => l.split('=', 2) as [string, string]));
  const image = out['IMAGE'] ?? '';
  const archive = out['ARCHIVE'] ?? '';
  const sock = path.join(h.HARNESS_DIR, 'node', 'containerd', 'containerd.sock');
  const i = await run('ctr', ['--address', sock, '-n', 'k8s.io', 'images', 'import', archive], undefined, { timeoutMs: 300_000 });
  if (i.status !== 0) throw new Error(`ctr images import failed: ${i.stderr}`);
  const [name, tag] = image.split(/:(?=[^:]+$)/) as [string, string];
  return { image, name, tag, archiveBytes: Number(out['SIZE']) };
}

/** Polls `check` until it returns a value other than undefined/false, or throws with the last state. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 120_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not reached after ${timeoutMs} ms${last ? ` (last error: ${String(last)})` : ''}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** kubectl as admin, throwing on a non-zero exit. */
export async function admin(args: readonly string[], input?: string, timeoutMs = 120_000): Promise<string> {
  const r = await kubectl(harness().ADMIN_KUBECONFIG, args, input, { timeoutMs });
  if (r.status !== 0) throw new Error(`kubectl ${args.join(' ')} failed (exit ${r.status}): ${r.stderr}`);
  return r.stdout;
}

/** kubectl as admin, never throwing. */
export function adminTry(args: readonly string[], input?: string, timeoutMs = 120_000): Promise<CommandResult> {
  return kubectl(harness().ADMIN_KUBECONFIG, args, input, { timeoutMs });
}

/**
 * A scratch copy of manifests/ as a user edits it: the image in
 * manifests/kustomization.yaml (the one documented place), and the Kafka
 * brokers and topics in the self-managed config.
 */
export function userManifests(img: Pick<NodeImage, 'name' | 'tag'>, topics: { events: string; sessions: string }): { dir: string; cleanup: () => void } {
  const root = mkdtempSync(path.join(tmpdir(), 'kt-incluster-'));
  const dir = path.join(root, 'manifests');
  writeUserManifests(dir, img, topics);
  return { dir, cleanup: () => rmSync(root, { recursive: true, force: true }) };
}

/** Writes that copy of manifests/ into `dir` (replacing what is there). */
export function writeUserManifests(dir: string, img: Pick<NodeImage, 'name' | 'tag'>, topics: { events: string; sessions: string }): void {
  const h = harness();
  if (!h.KAFKA_NODE_BROKERS) throw new Error('the harness Kafka has no pod listener (KAFKA_NODE_BROKERS): restart the harness');
  rmSync(dir, { recursive: true, force: true });
  cpSync(path.join(REPO, 'manifests'), dir, { recursive: true, filter: (src) => !/\/overlays\/[^/]+\/certs(\/|$)|\/components\/production\/secrets(\/|$)/.test(src) });
  const kust = path.join(dir, 'kustomization.yaml');
  const k = readFileSync(kust, 'utf8');
  const k2 = k.replace(/newName: .*/, `newName: ${img.name}`).replace(/newTag: .*/, `newTag: "${img.tag}"`);
  if (k2 === k) throw new Error('manifests/kustomization.yaml has no images entry to set');
  writeFileSync(kust, k2);
  const cfg = path.join(dir, 'components', 'self-managed', 'config.yaml');
  const c = readFileSync(cfg, 'utf8');
  const kafka = `kafka: {brokers: ["${h.KAFKA_NODE_BROKERS}"], topics: {events: "${topics.events}", sessions: "${topics.sessions}"}}`;
  const c2 = c.replace(/^cluster: .*$/m, `cluster: harness\n${kafka}`);
  if (c2 === c) throw new Error('no cluster: line in the self-managed config');
  writeFileSync(cfg, c2);
}

/**
 * Local PersistentVolumes on the node (no provisioner here), one directory
 * each under the harness run, each pre-bound (claimRef) to the claim of one
 * StatefulSet replica, `data-kubetrail-<replica>` in `namespace`, as an admin
 * does with static volumes: a stray claim elsewhere can never take one.
 */
export async function createLocalPvs(namespace: string, replicas: readonly string[], sizeGi = 5): Promise<void> {
  const h = harness();
  const docs = replicas.map((r) => {
    const n = `kt-${r}`;
    // Empty, as a new volume is: a spool or chain state left by an earlier run would continue its sequence.
    const d = path.join(h.HARNESS_DIR, 'pv', n);
    rmSync(d, { recursive: true, force: true });
    mkdirSync(d, { recursive: true });
    return `apiVersion: v1
kind: PersistentVolume
metadata: {name: ${n}, labels: {kubetrail.test/local-pv: "true"}}
spec:
  capacity: {storage: ${sizeGi}Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  claimRef: {namespace: ${namespace}, name: data-kubetrail-${r}}
  local: {path: "${d}"}
  nodeAffinity:
    required:
      nodeSelectorTerms:
        - matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [${h.NODE_NAME}]}]
`;
  });
  await admin(['apply', '-f', '-'], docs.join('---\n'));
}

/** Removes the test's PersistentVolumes and their directories. */
export async function deleteLocalPvs(): Promise<void> {
  await adminTry(['delete', 'pv', '-l', 'kubetrail.test/local-pv=true', '--ignore-not-found', '--wait=false']);
  for (const pv of (await adminTry(['get', 'pv', '-l', 'kubetrail.test/local-pv=true', '-o', 'name'])).stdout.split('\n').filter(Boolean)) {
    await adminTry(['patch', pv, '--type=merge', '-p', '{"metadata":{"finalizers":null}}']);
  }
  rmSync(path.join(harness().HARNESS_DIR, 'pv'), { recursive: true, force: true });
}

/** The webhook configurations of kubetrail that exist (by name and by label). */
export async function webhookConfigurations(): Promise<string[]> {
  const r = await admin(['get', 'validatingwebhookconfigurations,mutatingwebhookconfigurations', '-o', 'name']);
  return r.split('\n').filter((l) => /kubetrail/.test(l));
}

/** Deletes kubetrail's webhook configurations first (a leftover fail-closed entry breaks every later test), then the namespace. */
export async function forceUninstall(namespace: string): Promise<void> {
  for (const w of await webhookConfigurations().catch(() => [] as string[])) await adminTry(['delete', w, '--ignore-not-found']);
  // Every cluster-scoped RBAC object of the install, by the label the manifests and the chart set (the CRD stays, as helm keeps CRDs).
  await adminTry(['delete', 'clusterrole,clusterrolebinding', '-l', 'app.kubernetes.io/part-of=kubetrail', '--ignore-not-found']);
  await adminTry(['delete', 'namespace', namespace, '--ignore-not-found', '--timeout=120s'], undefined, 150_000);
}

/** One event as `kubetrail events -o json` prints it (the fields the tests read). */
export interface EventLine {
  type: string;
  id: string;
  source: { component: string; instance: string };
  actor?: { username?: string };
  target?: { namespace?: string; name?: string; resource?: string };
  body: Record<string, unknown>;
}

/** Every event on the given topics of the harness Kafka, read with the real CLI. */
export async function kafkaEvents(topics: readonly string[]): Promise<EventLine[]> {
  const args = [path.join(REPO, 'cli', 'main.ts'), 'events', '--brokers', harness().KAFKA_BROKERS, ...topics.flatMap((t) => ['--topic', t]), '-o', 'json'];
  const r = await run(process.execPath, args, undefined, { timeoutMs: 120_000, env: productEnv() });
  if (r.status !== 0) throw new Error(`kubetrail events failed (exit ${r.status}): ${r.stderr.slice(-2000)}`);
  return r.stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as EventLine);
}

/**
 * What an agent sees of the installed webhook: as agent-ci, a privileged pod
 * is denied with the starter pack's message and a Deployment is admitted and
 * stamped (both labelled `kubetrail.test/run=<id>`); then both reviews are
 * read back from Kafka (`topic`), by the real CLI.
 */
export async function agentDeniedAndStamped(id: string, prefix: string, topic: string): Promise<{ deployment: string; denied: EventLine; created: EventLine }> {
  const h = harness();
  // Ready pods are not yet a routed Service: until kube-proxy has programmed the new endpoints, the API server's
  // call is refused (`connect: connection refused`) and the fail-closed entry refuses the write. Wait for routing.
  await waitFor('the API server reaching the webhook through its Service', async () => (await kubectl(h.AGENT_KUBECONFIG, ['-n', 'agents', 'create', 'configmap', `${prefix}probe-${id}`, '--dry-run=server'])).status === 0, 60_000);
  const pod = `${prefix}priv-${id}`;
  const priv = await kubectl(h.AGENT_KUBECONFIG, ['-n', 'agents', 'run', pod, `--image=${h.NODE_IMAGE}`, '--privileged', '--restart=Never', '-l', `kubetrail.test/run=${id}`, '--', 'sleep', '1']);
  if (priv.status === 0) throw new Error(`the privileged pod ${pod} was admitted`);
  if (!/admission webhook "validate\.kubetrail\.io" denied the request: privileged containers are not allowed for agents/.test(priv.stderr)) throw new Error(`not the starter pack's denial: ${priv.stderr}`);
  const deployment = `${prefix}d-${id}`;
  const c = await kubectl(h.AGENT_KUBECONFIG, ['-n', 'agents', 'create', 'deployment', deployment, `--image=${h.NODE_IMAGE}`, '--', 'sleep', '3600']);
  if (c.status !== 0) throw new Error(`kubectl create deployment failed: ${c.stderr}`);
  await admin(['-n', 'agents', 'label', 'deployment', deployment, `kubetrail.test/run=${id}`]);
  const d = JSON.parse(await admin(['-n', 'agents', 'get', 'deployment', deployment, '-o', 'json'])) as { metadata: { annotations?: Record<string, string> } };
  if (!/^[0-9a-f-]{36}$/.test(d.metadata.annotations?.['kubetrail.io/event'] ?? '')) throw new Error(`the Deployment was not stamped: ${JSON.stringify(d.metadata.annotations)}`);
  const events = await waitFor('the denial and the Deployment in Kafka', async () => {
    const all = await kafkaEvents([topic]);
    const denied = all.find((e) => e.type === 'admission.review' && e.target?.name === pod && (e.body['decision'] as { allowed?: boolean } | undefined)?.allowed === false);
    const created = all.find((e) => e.type === 'admission.review' && e.target?.name === deployment && e.target.resource === 'deployments' && e.body['webhook'] === 'validate');
    return denied && created ? { denied, created } : undefined;
  });
  return { deployment, ...events };
}

/** `kubetrail verify` of the topics (a chain spans both: session events go to the sessions topic) with the key published in the cluster. */
export function verifyTopic(topics: readonly string[], namespace: string): Promise<CommandResult> {
  const h = harness();
  return run(
    process.execPath,
    [path.join(REPO, 'cli', 'main.ts'), 'verify', '--brokers', h.KAFKA_BROKERS, ...topics.flatMap((t) => ['--topic', t]), '--public-key-from-cluster', `${namespace}/kubetrail-signing-public-key`, '--kubeconfig', h.ADMIN_KUBECONFIG],
    undefined,
    { timeoutMs: 180_000, env: productEnv() },
  );
}

/** Pods of one kubetrail component that are Ready and not terminating. */
export async function readyPods(namespace: string, component: string): Promise<number> {
  const out = await admin(['-n', namespace, 'get', 'pods', '-l', `app.kubernetes.io/component=${component}`, '-o', 'json']);
  const pods = (JSON.parse(out) as { items: { metadata: { deletionTimestamp?: string }; status: { conditions?: { type: string; status: string }[] } }[] }).items;
  return pods.filter((p) => !p.metadata.deletionTimestamp && p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')).length;
}

/**
 * What a reader needs when pods do not become Ready: the namespace's pods, claims and
 * events, the volumes, the node's conditions, taints and allocations, and the
 * not-ready pods' description and last log lines (kubetrail's own logs, which never
 * carry a token or session bytes). Never throws.
 */
export async function clusterDiagnostics(namespace: string): Promise<string> {
  const out: string[] = [];
  const section = async (title: string, args: readonly string[]): Promise<void> => {
    const r = await adminTry(args, undefined, 30_000).catch((err: unknown) => ({ status: 1, stdout: '', stderr: String(err) }));
    out.push(`--- ${title}\n${(r.stdout + r.stderr).trim().slice(-6000)}`);
  };
  await section('pods, claims', ['-n', namespace, 'get', 'pods,pvc', '-o', 'wide']);
  await section('persistent volumes', ['get', 'pv', '-o', 'wide']);
  await section('events', ['-n', namespace, 'get', 'events', '--sort-by=.lastTimestamp']);
  await section('node', ['describe', 'node']);
  const pods = await adminTry(['-n', namespace, 'get', 'pods', '-o', 'json'], undefined, 30_000).catch(() => undefined);
  const items = pods?.status === 0 ? (JSON.parse(pods.stdout) as { items: { metadata: { name: string }; status: { conditions?: { type: string; status: string }[] } }[] }).items : [];
  for (const p of items.filter((i) => !i.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'))) {
    await section(`describe ${p.metadata.name}`, ['-n', namespace, 'describe', 'pod', p.metadata.name]);
    await section(`logs ${p.metadata.name}`, ['-n', namespace, 'logs', p.metadata.name, '--all-containers', '--tail=40']);
  }
  return out.join('\n');
}

/** Waits for `count` Ready pods of a component; on timeout the error carries clusterDiagnostics. */
export async function waitReady(namespace: string, component: string, count: number, timeoutMs: number, what = `${count} ready ${component} pods`): Promise<void> {
  try {
    await waitFor(what, async () => (await readyPods(namespace, component)) === count, timeoutMs);
  } catch (err) {
    throw new Error(`${(err as Error).message}\n${await clusterDiagnostics(namespace)}`);
  }
}

/** `kubectl rollout status` that, when it fails, throws with clusterDiagnostics. */
export async function rolloutStatus(namespace: string, workload: string, timeoutS: number): Promise<void> {
  const r = await adminTry(['-n', namespace, 'rollout', 'status', workload, `--timeout=${timeoutS}s`], undefined, (timeoutS + 30) * 1000);
  if (r.status !== 0) throw new Error(`kubectl rollout status ${workload} failed (exit ${r.status}): ${r.stderr}\n${await clusterDiagnostics(namespace)}`);
}

/** helm as built by test/deploy/build-helm.sh, its HELM_* paths under `scratch` (nothing of the user's helm setup is read or written). */
export function helmRunner(kubeconfig: string, scratch: string): (args: readonly string[], timeoutMs?: number) => Promise<CommandResult> {
  const helm = path.join(cacheDir(), 'bin', 'helm');
  return (args, timeoutMs = 180_000) =>
    run(helm, [...args], undefined, {
      timeoutMs,
      env: { ...process.env, KUBECONFIG: kubeconfig, HELM_CACHE_HOME: path.join(scratch, 'cache'), HELM_CONFIG_HOME: path.join(scratch, 'config'), HELM_DATA_HOME: path.join(scratch, 'data') },
    });
}

/** Builds helm from its Go module (cached). */
export async function builtHelm(): Promise<void> {
  const b = await run('bash', [path.join(REPO, 'test', 'deploy', 'build-helm.sh')], undefined, { timeoutMs: 40 * 60_000 });
  if (b.status !== 0) throw new Error(`build-helm.sh failed: ${b.stderr.slice(-3000)}`);
}
