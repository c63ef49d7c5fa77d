/**
 * What tests know about the real components: the env file the test runner
 * (or `npm run harness -- up`) wrote. A test that needs them fails loudly if
 * they are not there rather than skipping.
 */
import { runCommand, type CommandResult } from '../../cli/process.ts';

export type { CommandResult } from '../../cli/process.ts';
import { readEnvFile, type HarnessEnv } from '../harness/harness.ts';

/** The harness env; throws if the harness is not running. */
export function harness(): HarnessEnv {
  const env = readEnvFile();
  if (!env) throw new Error('harness not running: run tests with `npm test`, or start it with `npm run harness -- up`');
  return env;
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
  return runCommand(cmd, args, { ...opts, ...(input === undefined ? {} : { input }) });
}

/**
 * `KUBETRAIL_*` variables the test side reads (the harness, the test runner,
 * test knobs), never config fields. A product process validates every
 * `KUBETRAIL_*` variable as a setting and refuses unknown ones, so tests start
 * kubetrail with {@link productEnv}, not with their own environment.
 */
const TEST_ONLY_ENV = /^KUBETRAIL_(CACHE|KEEP_HARNESS|NODE|HARNESS_.*|TEST_.*|FUZZ_SEED)$/;

/** This process's environment without the test-only `KUBETRAIL_*` variables, plus `extra`: what a kubetrail process under test gets. */
export function productEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !TEST_ONLY_ENV.test(k))), ...extra };
}
