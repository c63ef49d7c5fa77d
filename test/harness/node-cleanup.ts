/**
 * Removing a harness node: every process, container, sandbox, mount, network
 * namespace, iptables rule and interface it created. The same code serves a
 * normal stop and a run that was SIGKILLed (nothing of the node's own teardown
 * ran): it works only from the node's state file and what is on disk under the
 * node's directory, never from a live API server or containerd.
 *
 * Synchronous on purpose: it runs from `process.on('exit')` paths and the CLI.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';

/** What a node records before it creates anything (`node.json` in its directory). */
export interface NodeState {
  /** Directory holding everything of this node. */
  dir: string;
  /** Network namespace (`ip netns`) the node's containerd, kubelet and kube-proxy run in. */
  netns: string;
  /** Host end of the veth pair into `netns`. */
  hostIf: string;
  /** Pid of the process that owns the node (0: a detached `harness up`, owned by the pids file). */
  owner: number;
  /** Pids of the node's processes, as they are started. */
  pids: number[];
}

/** Name of the state file in a node directory. */
export const NODE_STATE = 'node.json';

function run(cmd: string, args: string[]): { status: number | null; stdout: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return { status: r.status, stdout: r.stdout ?? '' };
}

function alive(pid: number): boolean {
  if (!(pid > 0)) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Processes whose command line names `dir`: containerd's runc shims (started with
 * `-address <dir>/containerd/containerd.sock`; they outlive a killed containerd and
 * record no pid file), and any node process started after the state file was last written.
 */
function processesNaming(dir: string): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      if (readFileSync(`/proc/${name}/cmdline`, 'latin1').split('\0').some((a) => a.includes(dir + '/'))) out.push(pid);
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

function killAll(pids: number[]): void {
  for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
  // Reaped by their parent (or init); wait until the kernel has them gone so that
  // their mounts and open namespaces are released before we unmount.
  const deadline = Date.now() + 5000;
  while (pids.some(alive) && Date.now() < deadline) spawnSync('sleep', ['0.05']);
}

/** Reads `<dir>/node.json`; undefined when absent or unreadable. */
export function readNodeState(dir: string): NodeState | undefined {
  try {
    return JSON.parse(readFileSync(path.join(dir, NODE_STATE), 'utf8')) as NodeState;
  } catch {
    return undefined;
  }
}

/** Mount points under `dir` (from this process's mountinfo), deepest first. */
function mountsUnder(dir: string): string[] {
  const out: string[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const mp = line.split(' ')[4];
    if (mp === undefined) continue;
    // mountinfo escapes space, tab, newline and backslash as octal.
    const p = mp.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (p === dir || p.startsWith(dir + '/')) out.push(p);
  }
  return [...new Set(out)].sort((a, b) => b.length - a.length);
}

/**
 * Task bundles containerd's runc shim left under the node's state directory:
 * their pids (shim, container init) and the network namespace each sandbox used.
 */
function taskBundles(stateDir: string): { pids: number[]; netns: string[] } {
  const pids: number[] = [];
  const netns: string[] = [];
  const root = path.join(stateDir, 'io.containerd.runtime.v2.task');
  if (!existsSync(root)) return { pids, netns };
  for (const ns of readdirSync(root)) {
    for (const id of readdirSync(path.join(root, ns))) {
      const bundle = path.join(root, ns, id);
      for (const f of ['shim.pid', 'init.pid']) {
        const n = Number(existsSync(path.join(bundle, f)) ? readFileSync(path.join(bundle, f), 'utf8').trim() : NaN);
        if (Number.isInteger(n) && n > 0) pids.push(n);
      }
      try {
        const spec = JSON.parse(readFileSync(path.join(bundle, 'config.json'), 'utf8')) as { linux?: { namespaces?: { type: string; path?: string }[] } };
        for (const n of spec.linux?.namespaces ?? []) if (n.type === 'network' && n.path?.startsWith('/var/run/netns/')) netns.push(n.path);
      } catch {
        // a bundle without a readable spec has no namespace of ours to remove
      }
    }
  }
  return { pids, netns };
}

/**
 * Removes everything a node created. Idempotent; safe on a half-started node.
 * Logs are kept (`*.log` in the node directory); container images and root
 * filesystems are deleted.
 */
export function cleanNode(state: NodeState): void {
  const dir = state.dir;
  const stateDir = path.join(dir, 'containerd', 'state');
  const bundles = taskBundles(stateDir);
  // Node processes first, so nothing restarts a container while we remove it.
  killAll([...state.pids, ...processesNaming(dir)]);
  // Containers: runc's own view (kills every process of each container and
  // removes its cgroups), then any shim or init that survived.
  const runcRoot = path.join(dir, 'containerd', 'runc');
  for (const nsDir of existsSync(runcRoot) ? readdirSync(runcRoot) : []) {
    const root = path.join(runcRoot, nsDir);
    const list = run('runc', ['--root', root, 'list', '-q']);
    for (const id of list.stdout.split('\n').filter(Boolean)) run('runc', ['--root', root, 'delete', '--force', id]);
  }
  killAll([...bundles.pids, ...processesNaming(dir)]);
  // Sandboxes' network namespaces (bind mounts under /var/run/netns).
  for (const ns of new Set(bundles.netns)) {
    run('umount', [ns]);
    rmSync(ns, { force: true });
  }
  // Root filesystems, shm, projected volumes, the state dir's mounts.
  for (const mp of mountsUnder(dir)) if (run('umount', [mp]).status !== 0) run('umount', ['-l', mp]);
  // The namespace holds the bridge, the pods' veth ends and every iptables rule
  // (kube-proxy's, the CNI plugins'); deleting the host end removes the pair now
  // rather than when the kernel gets round to freeing the namespace.
  run('ip', ['link', 'del', state.hostIf]);
  run('ip', ['netns', 'del', state.netns]);
  for (const name of existsSync(dir) ? readdirSync(dir) : []) {
    const p = path.join(dir, name);
    if (name.endsWith('.log') || name === NODE_STATE) continue;
    try {
      if (statSync(p).isDirectory() || name.endsWith('.sock')) rmSync(p, { recursive: true, force: true });
    } catch {
      // already gone
    }
  }
}

/**
 * Cleans nodes under `root` (`test/.harness/<run>/node`) that nobody runs any
 * more: the owner is dead, or (`includeDetached`) it was a detached `harness up`.
 */
export function cleanStaleNodes(root: string, opts: { includeDetached: boolean }): number {
  let n = 0;
  for (const run of existsSync(root) ? readdirSync(root) : []) {
    const dir = path.join(root, run, 'node');
    const state = readNodeState(dir);
    if (!state) continue;
    const stale = state.owner === 0 ? opts.includeDetached : !alive(state.owner) || state.owner === process.pid;
    if (!stale) continue;
    // The rest of that run (Kafka, etcd, the API server, controllers) names its directory too.
    killAll(processesNaming(path.join(root, run)));
    cleanNode(state);
    rmSync(path.join(dir, NODE_STATE), { force: true });
    n++;
  }
  return n;
}
