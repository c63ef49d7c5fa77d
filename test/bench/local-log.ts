/**
 * `npm run bench:local-log`: CPU per event of the local-log pipeline (seal,
 * group commit, O_DSYNC write) at a steady offered rate, the way the gateway
 * emits `api.request` events for reads: paced in 1 ms ticks, not awaited
 * inline. Baseline, same run and same pacing: the same drafts built and not
 * emitted. Prints CPU per event by thread (from /proc/self/task) for both,
 * and the difference: what the pipeline costs per event at that rate.
 *
 * BENCH_EVENTS (default 5000), BENCH_RATES (default "1000,3000"),
 * BENCH_GROUP_COMMIT_MS (spool.groupCommitMs, default the config default).
 * Needs no harness. Linux (/proc) for the per-thread split.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../core/config.ts';
import { createLogger } from '../../core/logger.ts';
import { createMetricsRegistry } from '../../core/health-server.ts';
import { createEventPipeline } from '../../core/pipeline.ts';
import { apiRequest } from '../../core/events/builders.ts';

const N = Number(process.env['BENCH_EVENTS'] ?? 5000);
const rates = (process.env['BENCH_RATES'] ?? '1000,3000').split(',').map(Number);
const gc = process.env['BENCH_GROUP_COMMIT_MS'];

const dataDir = mkdtempSync(path.join(tmpdir(), 'kubetrail-bench-local-'));
const config = loadConfig({ document: { cluster: 'bench', dataDir, policies: { dir: path.join(dataDir, 'none') }, log: { level: 'error' }, ...(gc ? { spool: { groupCommitMs: Number(gc) } } : {}) } });
const pipeline = await createEventPipeline({ config, log: createLogger({ level: 'error', destination: process.stderr }), registry: createMetricsRegistry(), component: 'proxy', instance: 'bench' });

// An api.request event as the gateway records a small GET by a ServiceAccount.
const actor = { username: 'system:serviceaccount:bench:bench', uid: 'b0b0a2c8-1c1e-4c55-9f40-7b0f1f5b9d0a', groups: ['system:serviceaccounts', 'system:serviceaccounts:bench', 'system:authenticated'], extra: { 'authentication.kubernetes.io/credential-id': ['JTI=0b7e7c1e-62c4-4b8e-a7a1-5a4e3f1d2c3b'] }, authn: 'serviceaccount' as const };
const draft = (i: number): ReturnType<typeof apiRequest> =>
  apiRequest(
    { actor, target: { apiVersion: 'v1', resource: 'configmaps', namespace: 'bench', name: 'small' } as never, correlation: { session: '0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b' } },
    { verb: 'get', method: 'GET', path: '/api/v1/namespaces/bench/configmaps/small', status: 200, latencyMs: 1.234 + i / 1e6, bytesIn: 0, bytesOut: 512, userAgent: 'kubectl/v1.33.0', sourceIp: '127.0.0.1' },
  );

/** CPU ms used so far by each thread name of this process (summed over threads of the same name). */
function threads(): Map<string, number> {
  const m = new Map<string, number>();
  for (const t of readdirSync('/proc/self/task')) {
    try {
      const st = readFileSync(`/proc/self/task/${t}/stat`, 'utf8');
      const name = st.slice(st.indexOf('(') + 1, st.lastIndexOf(')'));
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      m.set(name, (m.get(name) ?? 0) + (Number(f[11]) + Number(f[12])) * 10);
    } catch {
      // thread gone
    }
  }
  return m;
}

async function phase(rate: number, emit: boolean): Promise<{ total: number; byThread: Map<string, number> }> {
  const before = threads();
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  let sent = 0;
  const pending: Promise<unknown>[] = [];
  await new Promise<void>((resolve) => {
    const iv = setInterval(() => {
      const due = Math.min(N, Math.floor(((performance.now() - start) / 1000) * rate));
      while (sent < due) {
        const d = draft(sent++);
        if (emit) pending.push(pipeline.emit(d));
      }
      if (sent >= N) {
        clearInterval(iv);
        resolve();
      }
    }, 1);
  });
  await Promise.all(pending);
  const c = process.cpuUsage(cpu0);
  const after = threads();
  const byThread = new Map<string, number>();
  for (const [k, v] of after) byThread.set(k, ((v - (before.get(k) ?? 0)) * 1000) / N);
  return { total: (c.user + c.system) / N, byThread };
}

const fmt = (n: number): string => n.toFixed(1).padStart(6);
process.stdout.write(`bench:local-log — ${N} api.request events per phase, node ${process.version}, spool.groupCommitMs ${config.spool.groupCommitMs}\n`);
await phase(2000, true); // warm-up: JIT, first segment
for (const rate of rates) {
  const base = await phase(rate, false);
  const run = await phase(rate, true);
  const names = [...new Set([...run.byThread.keys(), ...base.byThread.keys()])].filter((k) => (run.byThread.get(k) ?? 0) + (base.byThread.get(k) ?? 0) > 0);
  process.stdout.write(`at ${rate}/s: CPU per event ${fmt(run.total)} µs with the pipeline, ${fmt(base.total)} µs baseline (drafts built, not emitted): pipeline ${fmt(run.total - base.total)} µs/event\n`);
  for (const k of names) process.stdout.write(`    ${k.padEnd(16)} ${fmt(run.byThread.get(k) ?? 0)} vs ${fmt(base.byThread.get(k) ?? 0)} µs/event (10 ms ticks)\n`);
}
await pipeline.close();
rmSync(dataDir, { recursive: true, force: true });
