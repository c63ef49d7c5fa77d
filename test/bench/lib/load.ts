/**
 * Load generation for the HTTPS benchmarks: closed-loop full load with
 * autocannon, and an open-loop fixed-rate generator that runs in a process
 * of its own (this file with `load-fixed`).
 */
import { spawn } from 'node:child_process';
import https from 'node:https';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';

export interface LoadResult {
  rps: number;
  p50: number;
  p90: number;
  p99: number;
  non2xx: number;
  errors: number;
  total: number;
}

/** Closed-loop full load with autocannon; several ports share the connections (replicas behind one client). */
export async function load(port: number | number[], ca: string | string[], body: string, opts: { seconds: number; connections: number; rate?: number }): Promise<LoadResult> {
  const urls = (Array.isArray(port) ? port : [port]).map((p) => `https://127.0.0.1:${p}/validate?timeout=10s`);
  const r = await autocannon({
    url: urls.length === 1 ? (urls[0] as string) : urls,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
    connections: opts.connections,
    duration: opts.seconds,
    ...(opts.rate ? { overallRate: opts.rate } : {}),
    tlsOptions: { ca },
  } as autocannon.Options);
  return { rps: r.requests.average, p50: r.latency.p50, p90: r.latency.p90, p99: r.latency.p99, non2xx: r.non2xx, errors: r.errors, total: r.requests.total };
}

/**
 * Open-loop fixed-rate load (what autocannon's `overallRate` is not: it lets
 * every connection fire its share of a second in a burst at the start of the
 * second, so 1,000/s arrives as a 1,000-request burst and its queueing shows
 * up as latency — the no-op floor "measured" p99 > 300 ms that way).
 *
 * Requests are scheduled every 1/rate s. A timer tick sends every request
 * whose scheduled time has come, over a keep-alive pool (pre-opened, at most
 * `maxConnections`; a request finding every connection busy waits in the
 * pool, and that wait is counted). Latency is measured from the tick that
 * sent the request, so a slow server cannot hide its queueing by slowing the
 * generator (no coordinated omission: the schedule never waits for
 * responses); how late the generator's own ticks were against the schedule
 * (its event loop, on the shared CPU) is reported separately as `lag`, and
 * the latency from the scheduled time as `fromSchedule`. Runs in its own
 * process (`load-fixed`), apart from the server and from the driver.
 */
export async function fixedRateLoad(opts: { ports: number[]; ca: string[]; body: string; rate: number; seconds: number; maxConnections: number; warmConnections: number }): Promise<FixedRateResult> {
  const body = Buffer.from(opts.body);
  const perPort = Math.ceil(opts.maxConnections / opts.ports.length);
  const agent = new https.Agent({ keepAlive: true, maxSockets: perPort, maxFreeSockets: perPort, scheduling: 'lifo' });
  let next = 0;
  const send = (): Promise<number> =>
    new Promise((resolve) => {
      // Several ports (replicas): requests go round robin, each port with its own pool.
      const port = opts.ports[next++ % opts.ports.length] as number;
      const req = https.request(
        { host: '127.0.0.1', port, path: '/validate?timeout=10s', method: 'POST', ca: opts.ca, agent, headers: { 'content-type': 'application/json', 'content-length': body.length } },
        (res) => {
          res.on('data', () => undefined);
          res.on('end', () => resolve(res.statusCode ?? 0));
          res.on('error', () => resolve(0));
        },
      );
      req.on('error', () => resolve(0));
      req.end(body);
    });
  // Open the pool and warm both sides (JIT, TLS sessions) before the clock starts.
  for (let i = 0; i < 3; i++) await Promise.all(Array.from({ length: opts.warmConnections }, send));
  const interval = 1000 / opts.rate;
  const total = Math.round(opts.rate * opts.seconds);
  const fromTick: number[] = [];
  const fromSchedule: number[] = [];
  const lag: number[] = [];
  let errors = 0;
  let sent = 0;
  const done: Promise<void>[] = [];
  const t0 = performance.now() + 5;
  await new Promise<void>((finish) => {
    const tick = (): void => {
      const now = performance.now();
      while (sent < total && t0 + sent * interval <= now) {
        const scheduled = t0 + sent * interval;
        sent++;
        lag.push(now - scheduled);
        done.push(
          send().then((status) => {
            const end = performance.now();
            if (status !== 200) errors++;
            fromTick.push(end - now);
            fromSchedule.push(end - scheduled);
          }),
        );
      }
      if (sent < total) setTimeout(tick, Math.max(0, t0 + sent * interval - performance.now() - 0.5));
      else finish();
    };
    setTimeout(tick, 5);
  });
  await Promise.all(done);
  const elapsed = (performance.now() - t0) / 1000;
  agent.destroy();
  const pct = (xs: number[], q: number): number => {
    const s = Float64Array.from(xs).sort();
    return s.length === 0 ? NaN : (s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)] as number);
  };
  return {
    rps: total / elapsed,
    p50: pct(fromTick, 0.5),
    p90: pct(fromTick, 0.9),
    p99: pct(fromTick, 0.99),
    non2xx: errors,
    errors: 0,
    total,
    scheduleP99: pct(fromSchedule, 0.99),
    lagP99: pct(lag, 0.99),
  };
}

export interface FixedRateResult extends LoadResult {
  /** p99 measured from the scheduled send time (includes the generator's own lag). */
  scheduleP99: number;
  /** p99 of how late the generator's ticks were against the schedule. */
  lagP99: number;
}

/** Runs {@link fixedRateLoad} in a child process of its own. */
export function fixedRate(port: number | number[], ca: string | string[], body: string, rate: number, seconds: number): Promise<FixedRateResult> {
  const SELF = fileURLToPath(import.meta.url);
  const ports = Array.isArray(port) ? port : [port];
  const cas = Array.isArray(ca) ? ca : [ca];
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [SELF, 'load-fixed'], { stdio: ['pipe', 'pipe', 'inherit'], env: process.env });
    let out = '';
    proc.stdout?.on('data', (c: Buffer) => (out += c.toString()));
    proc.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as FixedRateResult) : reject(new Error(`load-fixed exited with ${code}`))));
    proc.stdin?.end(JSON.stringify({ ports, ca: cas, body, rate, seconds, maxConnections: FIXED_RATE_MAX_CONNECTIONS, warmConnections: FIXED_RATE_WARM_CONNECTIONS }));
  });
}

/** Connections of the fixed-rate pool: at most (an API server keeps a similar pool per webhook), and opened before the clock starts. */
export const FIXED_RATE_MAX_CONNECTIONS = 64;
export const FIXED_RATE_WARM_CONNECTIONS = 16;

export async function loadFixedChild(): Promise<void> {
  let input = '';
  for await (const c of process.stdin) input += (c as Buffer).toString();
  const opts = JSON.parse(input) as Parameters<typeof fixedRateLoad>[0];
  process.stdout.write(JSON.stringify(await fixedRateLoad(opts)));
}

if (import.meta.main && process.argv[2] === 'load-fixed') await loadFixedChild();
