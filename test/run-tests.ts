/**
 * The test command (`npm test`, after the type check): starts the real
 * components once — Kafka, etcd + kube-apiserver, and (unless KUBETRAIL_NODE=0)
 * kube-controller-manager, kube-scheduler and a node — writes their env file,
 * runs every `*.test.ts` with node:test, and stops the components.
 *
 * `KUBETRAIL_TEST_FILTER=regex` runs only matching test files.
 */
import { spawn } from 'node:child_process';
import { readdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { REPO_ROOT, writeEnvFile } from './harness/harness.ts';
import { cleanNode } from './harness/node-cleanup.ts';
import { startStack } from './harness/stack.ts';

function findTests(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name.startsWith('.')) continue;
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) findTests(p, out);
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

const filter = process.env['KUBETRAIL_TEST_FILTER'];
const files = ['core', 'webhook', 'exec-proxy', 'cli', 'certs', 'test']
  .flatMap((d) => {
    try {
      return findTests(path.join(REPO_ROOT, d));
    } catch {
      return [];
    }
  })
  .filter((f) => !filter || new RegExp(filter).test(f))
  .sort();

const runDir = path.join(REPO_ROOT, 'test', '.harness', `test-${process.pid}`);
const envFile = path.join(runDir, 'env');
const started = Date.now();
const stack = await startStack({ run: runDir, root: path.join(REPO_ROOT, 'test', '.harness'), detached: false, owner: process.pid });
// However this process ends, the node's containers, mounts and namespaces go with it
// (cleanNode is synchronous and idempotent); a SIGKILL is cleaned by the next run.
process.once('exit', () => {
  if (stack.node) cleanNode(stack.node.state);
});
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => process.exit(130));
writeEnvFile(stack.env, envFile);
process.stderr.write(`[run-tests] real components up in ${((Date.now() - started) / 1000).toFixed(1)} s; running ${files.length} test files\n`);

let code = 1;
try {
  code = await new Promise<number>((resolve) => {
    const child = spawn(process.execPath, ['--test', '--test-concurrency=1', '--test-timeout=300000', '--test-reporter=spec', ...files], {
      stdio: 'inherit',
      env: { ...process.env, KUBETRAIL_HARNESS_ENV: envFile },
    });
    child.on('exit', (c, sig) => resolve(c ?? (sig ? 1 : 0)));
  });
} finally {
  await stack.stop();
  if (code === 0 && !process.env['KUBETRAIL_KEEP_HARNESS']) rmSync(runDir, { recursive: true, force: true });
}
process.exitCode = code;
