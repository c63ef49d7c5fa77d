/**
 * `npm run bench:capacity` (needs the harness: KUBETRAIL_HARNESS_ENV or
 * test/.harness/env): what one webhook replica sustains on this machine, by
 * object size — the highest offered rate (open loop, lib/load.ts) at which
 * p99 stays under `BENCH_P99_MS` (10 ms) with every review answered 200 —
 * for `kafka.durability: local` and `kafka`, beside the no-op HTTPS floor at
 * the same sizes in the same run (the baseline: what any Node HTTPS handler
 * reaches here). The object is a ConfigMap CREATE by an agent whose data
 * holds `size` bytes, so the starter pack, masking and sealing see one
 * string of that size.
 *
 * The search per case: the rate doubles from `BENCH_START_RATE` (100/s)
 * while the target holds (or halves, down to 10/s, while it does not), then
 * bisects `BENCH_BISECT` (3) times between the
 * last rate that held and the first that did not; each probe runs
 * `BENCH_SECONDS` (3). Knobs: `BENCH_SIZES_KIB` (1,15,100,1000).
 */
import { fileURLToPath } from 'node:url';
import { startChild, stopChild, type Child } from './lib/children.ts';
import { fixedRate, type FixedRateResult } from './lib/load.ts';
import { dropBenchTopics } from './topics.ts';
import { review } from '../webhook/support.ts';

const WEBHOOK_BENCH = fileURLToPath(new URL('./webhook.ts', import.meta.url));
const P99_MS = Number(process.env['BENCH_P99_MS'] ?? 10);
const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 3);
const START = Number(process.env['BENCH_START_RATE'] ?? 100);
const BISECT = Number(process.env['BENCH_BISECT'] ?? 3);
/** The lowest rate tried: below it a 3 s probe has too few requests for a p99. */
const MIN_RATE = 10;
const SIZES = (process.env['BENCH_SIZES_KIB'] ?? '1,15,100,1000').split(',').map(Number);

/** An AdmissionReview of a ConfigMap CREATE by agent-ci whose one data value is `bytes` long. */
function body(bytes: number): string {
  return JSON.stringify(
    review({
      uid: '705ab4f5-6393-11e8-b7cc-42010a800003',
      name: 'capacity',
      kind: { group: '', version: 'v1', kind: 'ConfigMap' },
      resource: { group: '', version: 'v1', resource: 'configmaps' },
      requestKind: { group: '', version: 'v1', kind: 'ConfigMap' },
      requestResource: { group: '', version: 'v1', resource: 'configmaps' },
      userInfo: { username: 'agent-ci', uid: 'agent-ci-uid', groups: ['agents', 'system:authenticated'] },
      object: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'capacity', namespace: 'agents' }, data: { blob: 'x'.repeat(bytes) } },
    }),
  );
}

const holds = (r: FixedRateResult, rate: number): boolean => r.errors === 0 && r.non2xx === 0 && r.p99 < P99_MS && r.rps >= rate * 0.95;

/** The highest rate that holds, and the figures of that probe. */
async function capacity(c: Child, payload: string): Promise<{ rate: number; at?: FixedRateResult; probes: number }> {
  let good = 0;
  let goodResult: FixedRateResult | undefined;
  let bad = 0;
  let probes = 0;
  for (let rate = START; ; rate *= 2) {
    const r = await fixedRate(c.port, c.ca, payload, rate, SECONDS);
    probes++;
    if (!holds(r, rate)) {
      bad = rate;
      break;
    }
    good = rate;
    goodResult = r;
    if (rate >= 64_000) return { rate, at: r, probes };
  }
  // The start already fails (large objects): halve until a rate holds, down to MIN_RATE.
  while (good === 0 && bad > MIN_RATE) {
    const rate = Math.max(MIN_RATE, Math.floor(bad / 2));
    const r = await fixedRate(c.port, c.ca, payload, rate, SECONDS);
    probes++;
    if (holds(r, rate)) {
      good = rate;
      goodResult = r;
    } else bad = rate;
  }
  for (let i = 0; i < BISECT && bad - good > 1; i++) {
    const mid = Math.round((good + bad) / 2);
    const r = await fixedRate(c.port, c.ca, payload, mid, SECONDS);
    probes++;
    if (holds(r, mid)) {
      good = mid;
      goodResult = r;
    } else bad = mid;
  }
  return { rate: good, ...(goodResult ? { at: goodResult } : {}), probes };
}

async function main(): Promise<void> {
  process.stdout.write(`bench:capacity — one webhook replica, /validate of a ConfigMap CREATE by an agent, highest offered rate with p99 < ${P99_MS} ms and every review 200 (open loop, ${SECONDS} s probes), node ${process.version}\n\n`);
  const rows: string[] = [];
  for (const kib of SIZES) {
    const payload = body(kib * 1024);
    const out: Record<string, { rate: number; at?: FixedRateResult }> = {};
    for (const mode of ['serve-noop', 'serve-webhook-local', 'serve-webhook']) {
      const c = await startChild(WEBHOOK_BENCH, mode);
      try {
        // Warm-up: JIT, TLS sessions, the producer and the topic.
        await fixedRate(c.port, c.ca, payload, START, 2);
        out[mode] = await capacity(c, payload);
      } finally {
        await stopChild(c);
      }
    }
    const f = out['serve-noop']?.rate ?? 0;
    const fmt = (m: string): string => {
      const o = out[m];
      return `${o?.rate ?? 0}/s (p99 ${o?.at ? o.at.p99.toFixed(1) : '-'} ms; ${f > 0 ? ((o?.rate ?? 0) / f).toFixed(2) : '-'} of floor)`;
    };
    rows.push(`| ${kib} KiB (review ${(Buffer.byteLength(payload) / 1024).toFixed(0)} KiB) | ${fmt('serve-webhook-local')} | ${fmt('serve-webhook')} | ${f}/s |`);
    process.stdout.write(`${kib} KiB: durability local ${fmt('serve-webhook-local')}, kafka ${fmt('serve-webhook')}, no-op floor ${f}/s\n`);
  }
  process.stdout.write(`\n| object | durability local | durability kafka | no-op HTTPS floor (same run) |\n|---|---|---|---|\n${rows.join('\n')}\n`);
}

try {
  await main();
} finally {
  const { harness } = await import('../support/env.ts');
  await dropBenchTopics(harness().KAFKA_BROKERS.split(','), /^kt-bench-webhook-/);
}
