/**
 * `npm run harness -- up|down|status`: runs the real components by hand.
 * `up` starts Kafka, etcd and kube-apiserver detached, writes test/.harness/env
 * (source it in a shell), and records their pids; `down` stops them.
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ENV_FILE, REPO_ROOT, readEnvFile, startControlPlane, startKafka, writeEnvFile, harnessEnvOf } from './harness.ts';

const ROOT = path.join(REPO_ROOT, 'test', '.harness');
const PIDS = path.join(ROOT, 'pids');

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function down(): Promise<void> {
  if (!existsSync(PIDS)) {
    console.log('harness: nothing running');
    return;
  }
  const pids = readFileSync(PIDS, 'utf8').split(/\s+/).filter(Boolean).map(Number);
  for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + 15_000;
  while (pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
  rmSync(PIDS, { force: true });
  rmSync(ENV_FILE, { force: true });
  console.log(`harness: stopped ${pids.length} processes`);
}

async function up(): Promise<void> {
  if (existsSync(PIDS)) await down();
  const run = path.join(ROOT, `run-${Date.now()}`);
  const started = Date.now();
  const kafka = await startKafka({ dir: path.join(run, 'kafka'), detached: true });
  writeFileSync(PIDS, `${kafka.pid}\n`);
  const cp = await startControlPlane({ dir: path.join(run, 'control-plane'), detached: true });
  writeFileSync(PIDS, `${kafka.pid}\n${cp.pids.join('\n')}\n`);
  writeEnvFile(harnessEnvOf(kafka, cp, run));
  console.log(`harness: up in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  console.log(`  source ${path.relative(process.cwd(), ENV_FILE)}`);
  console.log('  kubectl --kubeconfig "$ADMIN_KUBECONFIG" get namespaces');
  console.log('  npm run harness -- down');
}

const cmd = process.argv[2];
if (cmd === 'up') await up();
else if (cmd === 'down') await down();
else if (cmd === 'status') {
  const env = readEnvFile();
  console.log(env ? `harness: up (${env.APISERVER_URL}, kafka ${env.KAFKA_BROKERS})` : 'harness: down');
} else {
  console.error('usage: npm run harness -- up|down|status');
  process.exitCode = 2;
}
