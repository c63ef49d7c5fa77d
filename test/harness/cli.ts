/**
 * `npm run harness -- up|down|status`: runs the real components by hand.
 * `up` starts Kafka, etcd, kube-apiserver and (unless KUBETRAIL_NODE=0) the
 * controllers and the node detached, writes test/.harness/env (source it in a
 * shell), and records their pids; `down` stops them and removes the node's
 * containers, mounts, namespaces and rules, also after a SIGKILLed run.
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ENV_FILE, REPO_ROOT, readEnvFile, writeEnvFile } from './harness.ts';
import { cleanStaleNodes } from './node-cleanup.ts';
import { startStack } from './stack.ts';

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
    const n = cleanStaleNodes(ROOT, { includeDetached: true });
    console.log(n > 0 ? `harness: removed ${n} stale node(s)` : 'harness: nothing running');
    return;
  }
  const pids = readFileSync(PIDS, 'utf8').split(/\s+/).filter(Boolean).map(Number);
  for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + 15_000;
  while (pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
  const nodes = cleanStaleNodes(ROOT, { includeDetached: true });
  rmSync(PIDS, { force: true });
  rmSync(ENV_FILE, { force: true });
  console.log(`harness: stopped ${pids.length} processes${nodes > 0 ? `, removed ${nodes} node(s)` : ''}`);
}

async function up(): Promise<void> {
  if (existsSync(PIDS)) await down();
  const run = path.join(ROOT, `run-${Date.now()}`);
  const started = Date.now();
  const stack = await startStack({ run, root: ROOT, detached: true, owner: 0 });
  writeFileSync(PIDS, `${stack.pids.join('\n')}\n`);
  writeEnvFile(stack.env);
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
