/**
 * bench:webhook, part 2: Pods created per second through the real API server
 * (agent token, direct HTTPS, fixed concurrency) without webhooks, with no-op
 * validating + mutating webhooks, and with kubetrail's, in `BENCH_POD_ROUNDS`
 * rounds (default 3) of the cases in rotating order (every webhook pair
 * registered throughout, each selecting pods by label), with per-round ratios
 * and medians, the API server's own latency of each webhook call,
 * kubetrail's own time per review, CPU per pod of each process and TLS
 * connections opened. `BENCH_POD_STAMP=1` adds no-op webhooks answering with
 * kubetrail's stamp patch (what the API server pays for a patch). The
 * in-process peer, a ValidatingAdmissionPolicy with the starter pack's pod
 * rules (webhook/vap.ts), is a case of its own (`BENCH_POD_VAP=0` leaves it out).
 */
import type { HarnessEnv } from '../../harness/harness.ts';
import { kubectl } from '../../support/env.ts';
import { grantAgent, registerWebhooks, uniqueId } from '../../webhook/support.ts';
import { harnessPids, machineBusyMs, procCpuMs } from '../lib/cpu.ts';
import { childStats, stopChild, type Child } from '../lib/children.ts';
import { createPods, deletePods, webhookCallStats } from './apiserver.ts';
import type { ChildStats, TlsCounts } from './servers.ts';
import { registerVap } from './vap.ts';

const fmt = (n: number, d = 0): string => n.toFixed(d);

/** Runs the pods cases with `hook` (a running `serve-webhook` child) as kubetrail; `start` starts the no-op children. */
export async function podsScenario(o: { env: HarnessEnv; hook: Child; start: (mode: string) => Promise<Child> }): Promise<void> {
  const { env, hook } = o;
  const startChild = o.start;
  const id = uniqueId();
  const n = Number(process.env['BENCH_PODS'] ?? 200);
  const conc = Number(process.env['BENCH_POD_CONCURRENCY'] ?? 8);
  const rounds = Number(process.env['BENCH_POD_ROUNDS'] ?? 3);
  const revoke = await grantAgent(env.ADMIN_KUBECONFIG, env.AGENT_KUBECONFIG, 'agents', `kt-bench-${id}`, [{ apiGroups: [''], resources: ['pods'], verbs: ['create', 'get', 'list', 'delete'] }]);
  // Every webhook pair stays registered for the whole part; each selects pods by label (objectSelector kubetrail-test=<label>),
  // so one run alternates the cases (a single "without" sample swung 143-351 pods/s between runs minutes apart).
  const noop = await startChild('serve-noop');
  // BENCH_POD_STAMP=1: also no-op webhooks that return kubetrail's stamp patch and an audit annotation (what the API server pays for a patch).
  const stamp = process.env['BENCH_POD_STAMP'] === '1' ? await startChild('serve-noop-stamp') : undefined;
  interface Case {
    name: string;
    label: string;
    server?: Child;
    vap?: boolean;
  }
  const cases: Case[] = [
    { name: 'without', label: `${id}-none` },
    { name: 'no-op', label: `${id}-noop`, server: noop },
    ...(stamp ? [{ name: 'no-op + stamp', label: `${id}-stamp`, server: stamp }] : []),
    ...(process.env['BENCH_POD_VAP'] === '0' ? [] : [{ name: 'VAP', label: `${id}-vap`, vap: true }]),
    { name: 'kubetrail', label: id, server: hook },
  ];
  const unregs: (() => Promise<void>)[] = [];
  try {
    for (const c of cases) {
      if (c.vap) unregs.push(await registerVap(env, c.label));
      if (!c.server) continue;
      const server = c.server;
      const seen =
        server === hook
          ? async () => {
              const r = await kubectl(env.ADMIN_KUBECONFIG, ['-n', 'agents', 'get', 'configmap', `kt-probe-${c.label}`, '-o', 'json', '--ignore-not-found']);
              return r.stdout.includes('kubetrail.io/event');
            }
          : async () => ((await childStats<ChildStats>(server)).reviews ?? 0) > 0;
      unregs.push(await registerWebhooks(env.ADMIN_KUBECONFIG, { id: c.label, url: `https://127.0.0.1:${server.port}`, caBundle: server.caBundle }, seen));
    }
    for (const c of cases) {
      await createPods(env, `warm-${c.label}`, c.label, 40, conc);
      await deletePods(env, c.label);
    }
    const rates = new Map<string, number[]>(cases.map((c) => [c.name, []]));
    const apiserver = new Map<string, Map<string, { sum: number; count: number }>>(cases.map((c) => [c.name, new Map()]));
    const own: Record<string, { sum: number; count: number }> = {};
    const conns = new Map<string, TlsCounts>(cases.map((c) => [c.name, { connections: 0, resumed: 0 }]));
    // CPU per pod of each process involved (and of the whole machine, where other work shows up), per case over all rounds.
    const pids: Record<string, number> = { ...harnessPids(env.HARNESS_DIR), client: process.pid };
    for (const c of cases) if (c.server) pids[c.name === 'kubetrail' ? 'kubetrail' : `${c.name} webhooks`] = c.server.proc.pid ?? -1;
    const cpu = new Map<string, Record<string, number>>(cases.map((c) => [c.name, {}]));
    const sampleCpu = (): Record<string, number> => {
      const o: Record<string, number> = { machine: machineBusyMs() };
      for (const [name, pid] of Object.entries(pids)) o[name] = procCpuMs(pid);
      return o;
    };
    const orders: string[] = [];
    for (let r = 0; r < rounds; r++) {
      // The order rotates each round, so no case always runs first (after the deletes of the previous one) or last.
      const order = cases.map((_, i) => cases[(i + r) % cases.length] as Case);
      orders.push(order.map((c) => c.name).join(', '));
      for (const c of order) {
        const before = await webhookCallStats(env);
        const statsBefore = c.server ? await childStats<ChildStats>(c.server) : undefined;
        const cpuBefore = sampleCpu();
        rates.get(c.name)?.push(await createPods(env, `r${r}-${c.label}`, c.label, n, conc));
        const cpuAfter = sampleCpu();
        const per = cpu.get(c.name) as Record<string, number>;
        for (const [name, v] of Object.entries(cpuAfter)) per[name] = (per[name] ?? 0) + v - (cpuBefore[name] as number);
        const after = await webhookCallStats(env);
        if (c.server && statsBefore) {
          const statsAfter = await childStats<ChildStats>(c.server);
          const t = conns.get(c.name) as TlsCounts;
          t.connections += statsAfter.tls.connections - statsBefore.tls.connections;
          t.resumed += statsAfter.tls.resumed - statsBefore.tls.resumed;
          for (const [which, a] of Object.entries(statsAfter.durations ?? {})) {
            const b = statsBefore.durations?.[which] ?? { sum: 0, count: 0 };
            const e = (own[which] ??= { sum: 0, count: 0 });
            e.sum += a.sum - b.sum;
            e.count += a.count - b.count;
          }
          const acc = apiserver.get(c.name) as Map<string, { sum: number; count: number }>;
          for (const [name, a] of after) {
            const b = before.get(name) ?? { sum: 0, count: 0 };
            const e = acc.get(name) ?? { sum: 0, count: 0 };
            acc.set(name, { sum: e.sum + a.sum - b.sum, count: e.count + a.count - b.count });
          }
        }
        await deletePods(env, c.label);
      }
    }
    const median = (xs: number[]): number => {
      const s = [...xs].sort((a, b) => a - b);
      return s.length % 2 === 1 ? (s[(s.length - 1) / 2] as number) : ((s[s.length / 2 - 1] as number) + (s[s.length / 2] as number)) / 2;
    };
    const ratios = (a: number[], b: number[]): number[] => a.map((x, i) => x / (b[i] as number));
    const list = (xs: number[], d: number): string => xs.map((x) => fmt(x, d)).join(' / ');
    const w = rates.get('without') as number[];
    const o = rates.get('no-op') as number[];
    const k = rates.get('kubetrail') as number[];
    process.stdout.write(`pods created through the API server (${n} pods per case and round, ${conc} in flight, agent token, ${rounds} rounds; every webhook pair registered throughout, selected by the pod's label)\n`);
    for (let r = 0; r < rounds; r++) process.stdout.write(`  round ${r + 1} (${orders[r]}): ${cases.map((c) => `${c.name} ${fmt(rates.get(c.name)?.[r] as number, 1)}`).join(', ')} pods/s\n`);
    process.stdout.write(`  without webhooks:                     median ${fmt(median(w), 1)} pods/s (${list(w, 1)})\n`);
    process.stdout.write(`  with no-op validate+mutate webhooks (the floor of any webhook): median ${fmt(median(o), 1)} pods/s; ratio to without per round ${list(ratios(o, w), 2)}, median ${fmt(median(ratios(o, w)), 2)}\n`);
    const st = rates.get('no-op + stamp');
    if (st) process.stdout.write(`  with no-op webhooks returning kubetrail's stamp patch: median ${fmt(median(st), 1)} pods/s; ratio to without per round ${list(ratios(st, w), 2)}, median ${fmt(median(ratios(st, w)), 2)}\n`);
    const vap = rates.get('VAP');
    if (vap) process.stdout.write(`  with a ValidatingAdmissionPolicy (the starter pack's pod rules, in-process CEL): median ${fmt(median(vap), 1)} pods/s; ratio to without per round ${list(ratios(vap, w), 2)}, median ${fmt(median(ratios(vap, w)), 2)}\n`);
    process.stdout.write(`  with kubetrail validate+mutate+Kafka: median ${fmt(median(k), 1)} pods/s\n`);
    if (vap) process.stdout.write(`  kubetrail / VAP per round ${list(ratios(k, vap), 2)}, median ${fmt(median(ratios(k, vap)), 2)} (no target: VAP makes no network call, records nothing and stamps nothing)\n`);
    if (st) process.stdout.write(`  kubetrail / no-op + stamp per round ${list(ratios(k, st), 2)}, median ${fmt(median(ratios(k, st)), 2)} (target >= 0.9)\n`);
    process.stdout.write(`  ratio with / without: per round ${list(ratios(k, w), 2)}, median ${fmt(median(ratios(k, w)), 2)}; kubetrail / no-op webhooks per round ${list(ratios(k, o), 2)}, median ${fmt(median(ratios(k, o)), 2)}\n`);
    for (const [which, acc] of apiserver) {
      for (const [name, e] of acc) {
        if (!name.includes('kubetrail') || e.count === 0) continue;
        process.stdout.write(`  API server's own latency of the ${which === 'kubetrail' ? '' : `${which} `}${name} calls: mean ${fmt((e.sum / e.count) * 1000, 2)} ms over ${e.count} calls\n`);
      }
    }
    process.stdout.write(`  CPU per pod created (ms, /proc, 10 ms ticks summed over ${rounds} rounds of ${n} pods):\n`);
    for (const [which, per] of cpu) {
      const parts = Object.entries(per)
        .filter(([name, v]) => name !== 'machine' && v > 0)
        .map(([name, v]) => `${name} ${fmt(v / (rounds * n), 2)}`);
      process.stdout.write(`    ${which.padEnd(14)} ${parts.join(', ')}; whole machine ${fmt((per['machine'] ?? NaN) / (rounds * n), 2)}\n`);
    }
    for (const [which, t] of conns) {
      if (which === 'without') continue;
      process.stdout.write(`  TLS connections the API server opened to the ${which} webhooks: ${t.connections} for ${rounds * n * 2} calls (${t.resumed} resumed sessions)\n`);
    }
    for (const which of ['mutate', 'validate']) {
      const e = own[which];
      if (!e || e.count === 0) continue;
      process.stdout.write(`  kubetrail's own time for /${which} (parsed review to answer, event durable included): mean ${fmt((e.sum / e.count) * 1000, 2)} ms over ${e.count} reviews\n`);
    }
  } finally {
    for (const u of unregs.reverse()) await u();
    for (const c of cases) await deletePods(env, c.label);
    await revoke();
    await stopChild(noop);
    if (stamp) await stopChild(stamp);
  }
}
