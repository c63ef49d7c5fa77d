/**
 * The test command (`npm test`, after the type check): starts the real
 * components once — Kafka and etcd + kube-apiserver — writes their env file,
 * runs every `*.test.ts` with node:test, and stops the components.
 *
 * `KUBETRAIL_TEST_FILTER=regex` runs only matching test files.
 */
import { spawn } from 'node:child_process';
import { readdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { REPO_ROOT, startControlPlane, startKafka, writeEnvFile, harnessEnvOf } from './harness/harness.ts';

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
const kafka = await startKafka({ dir: path.join(runDir, 'kafka') });
const cp = await startControlPlane({ dir: path.join(runDir, 'control-plane') });
writeEnvFile(harnessEnvOf(kafka, cp, runDir), envFile);
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
  await kafka.stop();
  await cp.stop();
  if (code === 0 && !process.env['KUBETRAIL_KEEP_HARNESS']) rmSync(runDir, { recursive: true, force: true });
}
process.exitCode = code;
