/**
 * kube-controller-manager and kube-scheduler for the harness, each with a
 * client certificate naming the user its bootstrap RBAC binding expects
 * (`system:kube-controller-manager`, `system:kube-scheduler`), on loopback.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import { certKubeconfig, type NodeControlPlane } from './node.ts';

/** The running controllers. */
export interface Controllers {
  readonly pids: number[];
  stop(): Promise<void>;
}

function progress(msg: string): void {
  process.stderr.write(`[harness ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

async function healthy(what: string, port: number, child: ChildProcess, logFile: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${what} exited with code ${child.exitCode}; see ${logFile}`);
    // Serving certificates are self-signed in memory; /healthz needs no credentials.
    const r = spawnSync('curl', ['-skf', `https://127.0.0.1:${port}/healthz`], { encoding: 'utf8' });
    if (r.status === 0 && r.stdout.trim() === 'ok') return;
    await new Promise((r2) => setTimeout(r2, 250));
  }
  throw new Error(`${what} not healthy after ${timeoutMs} ms; see ${logFile}`);
}

/**
 * Starts both; resolves when each answers /healthz and the controller-manager
 * has created the `default` ServiceAccount of `waitForNamespace`.
 */
export async function startControllers(
  cp: NodeControlPlane & { url: string; saKeyFile: string; caKeyFile: string },
  dir: string,
  freePort: () => Promise<number>,
  opts: { detached?: boolean; waitForNamespace?: string } = {},
): Promise<Controllers> {
  mkdirSync(dir, { recursive: true });
  const started = Date.now();
  const detached = opts.detached ?? false;
  const children: ChildProcess[] = [];
  const launch = (name: string, args: string[]): ChildProcess => {
    const logFile = path.join(dir, `${name}.log`);
    const out = openSync(logFile, 'a');
    const child = spawn(path.join(cp.binDir, name), args, { stdio: ['ignore', out, out], detached });
    closeSync(out);
    if (detached) child.unref();
    children.push(child);
    return child;
  };
  const cmKc = certKubeconfig(cp, dir, 'kube-controller-manager', 'system:kube-controller-manager', [], cp.url);
  const cmPort = await freePort();
  const cm = launch('kube-controller-manager', [
    `--kubeconfig=${cmKc}`,
    `--authentication-kubeconfig=${cmKc}`,
    `--authorization-kubeconfig=${cmKc}`,
    '--bind-address=127.0.0.1',
    `--secure-port=${cmPort}`,
    '--leader-elect=false',
    // Each controller acts as its own ServiceAccount, as kubeadm runs it.
    '--use-service-account-credentials=true',
    `--service-account-private-key-file=${cp.saKeyFile}`,
    `--root-ca-file=${cp.caFile}`,
    `--cluster-signing-cert-file=${cp.caFile}`,
    `--cluster-signing-key-file=${cp.caKeyFile}`,
    '--v=1',
  ]);
  const schedKc = certKubeconfig(cp, dir, 'kube-scheduler', 'system:kube-scheduler', [], cp.url);
  const schedPort = await freePort();
  const sched = launch('kube-scheduler', [
    `--kubeconfig=${schedKc}`,
    `--authentication-kubeconfig=${schedKc}`,
    `--authorization-kubeconfig=${schedKc}`,
    '--bind-address=127.0.0.1',
    `--secure-port=${schedPort}`,
    '--leader-elect=false',
    '--v=1',
  ]);
  await healthy('kube-controller-manager', cmPort, cm, path.join(dir, 'kube-controller-manager.log'), 60_000);
  await healthy('kube-scheduler', schedPort, sched, path.join(dir, 'kube-scheduler.log'), 60_000);
  const ns = opts.waitForNamespace;
  if (ns !== undefined) {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const r = spawnSync('kubectl', ['--kubeconfig', cp.adminKubeconfig, '-n', ns, 'get', 'serviceaccount', 'default', '-o', 'name'], { encoding: 'utf8' });
      if (r.status === 0) break;
      if (Date.now() > deadline) throw new Error(`no default ServiceAccount in ${ns} after 60 s; see ${dir}/kube-controller-manager.log`);
      await new Promise((r2) => setTimeout(r2, 250));
    }
  }
  progress(`kube-controller-manager and kube-scheduler ready in ${Date.now() - started} ms`);
  return {
    pids: children.map((c) => c.pid ?? 0),
    stop: async () => {
      for (const c of children) {
        if (c.exitCode !== null || c.signalCode !== null) continue;
        const gone = new Promise<void>((r) => c.once('exit', () => r()));
        c.kill('SIGTERM');
        await Promise.race([gone, new Promise((r) => setTimeout(r, 10_000))]);
        if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      }
    },
  };
}
