/**
 * What tests know about the real components: the env file the test runner
 * (or `npm run harness -- up`) wrote. A test that needs them fails loudly if
 * they are not there rather than skipping.
 */
import { spawn } from 'node:child_process';
import { readEnvFile, type HarnessEnv } from '../harness/harness.ts';

/** The harness env; throws if the harness is not running. */
export function harness(): HarnessEnv {
  const env = readEnvFile();
  if (!env) throw new Error('harness not running: run tests with `npm test`, or start it with `npm run harness -- up`');
  return env;
}

/** What a finished command printed and how it exited. */
export interface CommandResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the real kubectl with a kubeconfig; never throws. Asynchronous on
 * purpose: a test often serves the other end (a webhook, the gateway) in the
 * same process, and a synchronous spawn would block its event loop.
 */
export function kubectl(kubeconfig: string, args: readonly string[], input?: string, opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<CommandResult> {
  return run('kubectl', ['--kubeconfig', kubeconfig, ...args], input, opts);
}

/** Runs any command asynchronously; never throws. */
export function run(cmd: string, args: readonly string[], input?: string, opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<CommandResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve({ status: null, stdout: '', stderr: String(e) });
    });
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
    child.stdin.end(input ?? '');
  });
}
