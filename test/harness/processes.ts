/**
 * What every harness component shares: the repository root, the cache, free
 * ports, starting a component with its log file (and never leaving it
 * behind), waiting for it to be ready, and stopping it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { homedir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** Root of the repository. */
export const REPO_ROOT = path.resolve(HERE, '..', '..');
/** Kafka release the harness runs (must match kafka/pom.xml). */
export const KAFKA_VERSION = '4.1.1';

/** Where built binaries and jars are kept between runs. */
export function cacheDir(): string {
  return process.env['KUBETRAIL_CACHE'] ?? path.join(homedir(), '.cache', 'kubetrail');
}

export function progress(msg: string): void {
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

export async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number, child?: ChildProcess, logFile?: string): Promise<void> {
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
export function spawnLogged(cmd: string, args: readonly string[], logFile: string, detached: boolean): ChildProcess {
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
export async function stopChild(child: ChildProcess, signal: NodeJS.Signals, graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill(signal);
  await Promise.race([gone, new Promise((r) => setTimeout(r, graceMs))]);
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGKILL');
    await gone;
  }
}
