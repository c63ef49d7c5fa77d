/**
 * bench:webhook, part 1: reviews/s and p50/p90/p99 of the ~15 KiB Pod CREATE
 * on /validate, against a no-op Node HTTPS handler (the floor), at full load
 * and at a fixed rate (`BENCH_RATE`, default 1,000/s); kubetrail with the
 * in-memory sink and with the real pipeline to Kafka; then two webhook
 * processes as the two replicas the manifests deploy (unless
 * `BENCH_SKIP_REPLICAS=1`); CPU per review of each process from /proc.
 */
import type { HarnessEnv } from '../../harness/harness.ts';
import { machineBusyMs, procCpuMs, harnessPids } from '../lib/cpu.ts';
import { stopChild, type Child } from '../lib/children.ts';
import { fixedRate, load, FIXED_RATE_MAX_CONNECTIONS, FIXED_RATE_WARM_CONNECTIONS, type FixedRateResult, type LoadResult } from '../lib/load.ts';

const fmt = (n: number, d = 0): string => n.toFixed(d);

/** Runs the review rows against `hook` (a running `serve-webhook` child); `start` starts another server child. */
export async function reviewScenario(o: { env: HarnessEnv; hook: Child; body: string; seconds: number; connections: number; start: (mode: string) => Promise<Child> }): Promise<void> {
  const { env, hook, body, seconds, connections } = o;
  const startChild = o.start;
  const noop = await startChild('serve-noop');
  const broker = harnessPids(env.HARNESS_DIR)['broker'];
  // CPU per review of each process over a full-load run (/proc, 10 ms ticks): where the machine's time goes.
  const cpu: string[] = [];
  // `main thread` is the servers' event-loop threads alone (the rest of `server` is the producer thread and Node's
  // helpers): one process's reviews/s cannot exceed 1 s / its main thread's CPU per review.
  const withCpu = async <R extends LoadResult>(name: string, servers: Child[], run: () => Promise<R>): Promise<R> => {
    const pids: Record<string, number> = { server: -1, 'generator (bench process)': process.pid, ...(broker ? { broker } : {}) };
    const before: Record<string, number> = { machine: machineBusyMs() };
    for (const [n, pid] of Object.entries(pids)) before[n] = procCpuMs(pid);
    const serverBefore = servers.map((c) => procCpuMs(c.proc.pid ?? -1));
    const mainBefore = servers.map((c) => procCpuMs(c.proc.pid ?? -1, c.proc.pid ?? -1));
    const r = await run();
    const per = (ms: number): string => `${fmt((ms * 1000) / Math.max(1, r.total))} µs`;
    const parts = [
      `server ${per(servers.reduce((a, c, i) => a + procCpuMs(c.proc.pid ?? -1) - (serverBefore[i] as number), 0))}` +
        ` (main thread ${per(servers.reduce((a, c, i) => a + procCpuMs(c.proc.pid ?? -1, c.proc.pid ?? -1) - (mainBefore[i] as number), 0))})`,
    ];
    for (const [n, pid] of Object.entries(pids)) if (n !== 'server') parts.push(`${n} ${per(procCpuMs(pid) - (before[n] as number))}`);
    parts.push(`whole machine ${per(machineBusyMs() - (before['machine'] as number))}`);
    cpu.push(`  ${name}: ${parts.join(', ')}`);
    return r;
  };
  const floor = await withCpu('floor', [noop], () => load(noop.port, noop.ca, body, { seconds, connections }));
  const rate = Number(process.env['BENCH_RATE'] ?? 1000);
  const floorAt1k = await fixedRate(noop.port, noop.ca, body, rate, seconds);
  await stopChild(noop);

  const mem = await startChild('serve-webhook-memory');
  await load(mem.port, mem.ca, body, { seconds: 2, connections });
  const memFull = await withCpu('in-memory sink', [mem], () => load(mem.port, mem.ca, body, { seconds, connections }));
  // The webhook's own latency at the offered rate, without waiting for Kafka.
  const memAt1k = await withCpu(`in-memory sink, fixed ${rate}/s`, [mem], () => fixedRate(mem.port, mem.ca, body, rate, seconds));
  await stopChild(mem);

  // Warm-up: JIT, Kafka producer, topic creation, and the broker's own JIT: with 2 s, the first full-load run after the
  // harness started measured 612/s with the broker at 375 µs of CPU per review, against 51 µs once it was warm.
  await load(hook.port, hook.ca, body, { seconds: Number(process.env['BENCH_KAFKA_WARMUP_SECONDS'] ?? 8), connections });
  const full = await withCpu('Kafka', [hook], () => load(hook.port, hook.ca, body, { seconds, connections }));
  const at1k = await withCpu(`Kafka, fixed ${rate}/s`, [hook], () => fixedRate(hook.port, hook.ca, body, rate, seconds));

  // kafka.durability = local: answered once the event is on the spool (O_DSYNC group commit), shipped to Kafka behind.
  const loc = await startChild('serve-webhook-local');
  await load(loc.port, loc.ca, body, { seconds: 2, connections });
  const localFull = await withCpu('durability local', [loc], () => load(loc.port, loc.ca, body, { seconds, connections }));
  const localAt1k = await withCpu(`durability local, fixed ${rate}/s`, [loc], () => fixedRate(loc.port, loc.ca, body, rate, seconds));
  await stopChild(loc);

  // Two webhook processes (as two replicas behind a Service would be: each its own pipeline and chain), same client.
  let replicas: { full: LoadResult; fixed: FixedRateResult } | undefined;
  if (process.env['BENCH_SKIP_REPLICAS'] !== '1') {
    const second = await startChild('serve-webhook');
    const pair = [hook, second];
    const ports = pair.map((c) => c.port);
    const cas = pair.map((c) => c.ca);
    await load(ports, cas, body, { seconds: 2, connections });
    replicas = { full: await withCpu('2 replicas + Kafka', pair, () => load(ports, cas, body, { seconds, connections })), fixed: await fixedRate(ports, cas, body, rate, seconds) };
    await stopChild(second);
  }

  const row = (name: string, r: LoadResult): string =>
    `${name.padEnd(52)} ${fmt(r.rps).padStart(8)} ${fmt(r.p50, 2).padStart(8)} ${fmt(r.p90, 2).padStart(8)} ${fmt(r.p99, 2).padStart(8)} ${String(r.non2xx + r.errors).padStart(7)}`;
  process.stdout.write(`${'review load'.padEnd(52)} ${'req/s'.padStart(8)} ${'p50 ms'.padStart(8)} ${'p90 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${'errors'.padStart(7)}\n`);
  process.stdout.write(`${row('no-op HTTPS handler (floor), full load', floor)}\n`);
  process.stdout.write(`${row('kubetrail /validate, in-memory sink, full load', memFull)}\n`);
  process.stdout.write(`${row('kubetrail /validate + Kafka, full load', full)}\n`);
  process.stdout.write(`${row('kubetrail /validate, durability local, full load', localFull)}\n`);
  process.stdout.write(`${row(`no-op HTTPS handler (floor), fixed ${rate}/s`, floorAt1k)}\n`);
  process.stdout.write(`${row(`kubetrail /validate, in-memory sink, fixed ${rate}/s`, memAt1k)}\n`);
  process.stdout.write(`${row(`kubetrail /validate + Kafka, fixed ${rate}/s`, at1k)}\n`);
  process.stdout.write(`${row(`kubetrail /validate, durability local, fixed ${rate}/s`, localAt1k)}\n`);
  process.stdout.write(`durability local at ${rate}/s: p99 ${fmt(localAt1k.p99, 2)} ms against in-memory ${fmt(memAt1k.p99, 2)} ms (+${fmt(localAt1k.p99 - memAt1k.p99, 2)} ms; target p99 < 5 ms and within 2 ms) and Kafka ${fmt(at1k.p99, 2)} ms\n`);
  const lagRow = (name: string, r: FixedRateResult): string => `  ${name}: p99 from the scheduled time ${fmt(r.scheduleP99, 2)} ms; generator tick lag p99 ${fmt(r.lagP99, 2)} ms`;
  process.stdout.write(`fixed-rate rows: open loop, keep-alive pool of at most ${FIXED_RATE_MAX_CONNECTIONS} connections (${FIXED_RATE_WARM_CONNECTIONS} pre-opened), generator in its own process, latency from the send tick\n`);
  process.stdout.write(`${lagRow('floor', floorAt1k)}\n${lagRow('kubetrail, in-memory sink', memAt1k)}\n${lagRow('kubetrail + Kafka', at1k)}\n`);
  if (replicas) {
    process.stdout.write(`${row('2 webhook processes (replicas) + Kafka, full load', replicas.full)}\n`);
    process.stdout.write(`${row(`2 webhook processes (replicas) + Kafka, fixed ${rate}/s`, replicas.fixed)}\n`);
    process.stdout.write(`${lagRow('2 replicas', replicas.fixed)}\n`);
    process.stdout.write(`ratio 2 replicas + Kafka / single-process floor (full load): ${fmt(replicas.full.rps / floor.rps, 2)}\n`);
  }
  process.stdout.write(`ratio kubetrail + Kafka / floor (full load): ${fmt(full.rps / floor.rps, 2)}; in-memory sink / floor: ${fmt(memFull.rps / floor.rps, 2)}\n`);
  process.stdout.write(`CPU per review (/proc, 10 ms ticks; server = the webhook process(es) with their worker threads), at full load unless the row says fixed:\n${cpu.join('\n')}\n\n`);
}
