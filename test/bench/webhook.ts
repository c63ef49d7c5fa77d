/**
 * `npm run bench:webhook` (needs the harness: KUBETRAIL_HARNESS_ENV or
 * test/.harness/env). Two parts, in one run, each skippable:
 *
 * 1. reviews (webhook/reviews.ts; `BENCH_SKIP_REVIEWS=1` skips it):
 *    reviews/s, latency and CPU per review of /validate against a no-op
 *    floor, full load and fixed rate, in-memory sink, Kafka, two replicas
 *    (`BENCH_SKIP_REPLICAS=1` skips those);
 * 2. pods (webhook/pods.ts; `BENCH_SKIP_PODS=1` skips it): Pods created per
 *    second through the real API server without, with no-op and with
 *    kubetrail's webhooks.
 *
 * Knobs: `BENCH_SECONDS` (6) and `BENCH_CONNECTIONS` (64) per load run,
 * `BENCH_RATE` (1000/s), `BENCH_KAFKA_WARMUP_SECONDS` (8), `BENCH_PODS`
 * (200), `BENCH_POD_CONCURRENCY` (8), `BENCH_POD_ROUNDS` (3),
 * `BENCH_POD_STAMP=1`, `BENCH_KAFKA_LINGER_MS`, `BENCH_KAFKA_JOURNAL_SYNC=1`,
 * `BENCH_WEBHOOK_NODE_ARGS` (node flags of the webhook children, e.g.
 * `--cpu-prof --cpu-prof-dir=/tmp/wprof`).
 *
 * Servers run in child processes (this file with a `serve-*` mode), and so
 * does the fixed-rate generator (lib/load.ts), so that no load generator
 * shares their event loop.
 */
import { fileURLToPath } from 'node:url';
import { startChild, stopChild, type Child } from './lib/children.ts';
import { dropBenchTopics } from './topics.ts';
import { reviewBody } from './webhook/review.ts';

export { realisticPod, reviewBody } from './webhook/review.ts';

const SELF = fileURLToPath(import.meta.url);

/** Starts this file in a server `mode` (webhook/servers.ts) as a child. */
function start(mode: string): Promise<Child> {
  const nodeArgs = mode.startsWith('serve-webhook') ? (process.env['BENCH_WEBHOOK_NODE_ARGS'] ?? '').split(/\s+/).filter((a) => a !== '') : [];
  return startChild(SELF, mode, nodeArgs);
}

async function main(): Promise<void> {
  const { harness } = await import('../support/env.ts');
  const env = harness();
  const body = reviewBody();
  const seconds = Number(process.env['BENCH_SECONDS'] ?? 6);
  const connections = Number(process.env['BENCH_CONNECTIONS'] ?? 64);
  process.stdout.write(`bench:webhook — review body ${(Buffer.byteLength(body) / 1024).toFixed(1)} KiB (Pod CREATE by agent-ci), ${seconds} s per run, ${connections} connections, node ${process.version}\n\n`);
  const hook = await start('serve-webhook');
  try {
    if (process.env['BENCH_SKIP_REVIEWS'] !== '1') await (await import('./webhook/reviews.ts')).reviewScenario({ env, hook, body, seconds, connections, start });
    if (process.env['BENCH_SKIP_PODS'] !== '1') await (await import('./webhook/pods.ts')).podsScenario({ env, hook, start });
  } finally {
    await stopChild(hook);
  }
}

if (import.meta.main) {
  const mode = process.argv[2];
  const servers = (): Promise<typeof import('./webhook/servers.ts')> => import('./webhook/servers.ts');
  if (mode === 'serve-noop' || mode === 'serve-noop-stamp') await (await servers()).serveNoop();
  else if (mode === 'serve-webhook' || mode === 'serve-webhook-memory' || mode === 'serve-webhook-local') await (await servers()).serveWebhook();
  else {
    try {
      await main();
    } finally {
      const { harness } = await import('../support/env.ts');
      await dropBenchTopics(harness().KAFKA_BROKERS.split(','), /^kt-bench-webhook-/);
    }
  }
}
