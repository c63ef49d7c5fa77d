/**
 * What tests know about the real components: the env file the test runner
 * (or `npm run harness -- up`) wrote. A test that needs them fails loudly if
 * they are not there rather than skipping.
 */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { readEnvFile, type HarnessEnv } from '../harness/harness.ts';

/** The harness env; throws if the harness is not running. */
export function harness(): HarnessEnv {
  const env = readEnvFile();
  if (!env) throw new Error('harness not running: run tests with `npm test`, or start it with `npm run harness -- up`');
  return env;
}

/** Runs the real kubectl with a kubeconfig; never throws, returns the result. */
export function kubectl(kubeconfig: string, args: readonly string[], input?: string): SpawnSyncReturns<string> {
  return spawnSync('kubectl', ['--kubeconfig', kubeconfig, ...args], { encoding: 'utf8', input, timeout: 60_000 });
}
