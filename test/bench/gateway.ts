/**
 * `npm run bench:gateway` (needs the harness: KUBETRAIL_HARNESS_ENV or
 * test/.harness/env). In one run, with the same ServiceAccount token:
 *
 * 1. GET of a small ConfigMap: requests/s and p50/p99 at full load
 *    (autocannon, same connections), straight to the API server (baseline)
 *    and through the gateway; then latency at a fixed, unsaturated rate, where
 *    the difference is the gateway's added latency.
 * 2. GET of a ~5 MB ConfigMap list, the same two ways.
 *
 * The gateway runs in a child process (this file with `serve`) with the real
 * event pipeline (local log under a temp dataDir), so the load generator does
 * not share its event loop. Prints figures and ratios (gateway / direct).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import autocannon from 'autocannon';
import { createCA, issueCert } from '../../certs/generate.ts';
import { loadConfig } from '../../core/config.ts';
import { createLogger } from '../../core/logger.ts';
import { createMetricsRegistry } from '../../core/health-server.ts';
import { createEventPipeline } from '../../core/pipeline.ts';
import { startGateway } from '../../exec-proxy/main.ts';
import { readEnvFile } from '../harness/harness.ts';
import { kubectl } from '../support/env.ts';

const SELF = fileURLToPath(import.meta.url);

async function serve(): Promise<void> {
  const env = readEnvFile();
  if (!env) throw new Error('harness not running');
  const dataDir = mkdtempSync(path.join(tmpdir(), 'kubetrail-bench-gw-'));
  const ca = createCA({ commonName: 'bench-gw-ca' });
  const serving = issueCert(ca, { commonName: 'gateway', ips: ['127.0.0.1'] });
  const config = loadConfig({ document: { cluster: 'bench', dataDir, policies: { dir: path.join(dataDir, 'none') }, log: { level: 'warn' }, proxy: { upstream: { kubeconfig: env.ADMIN_KUBECONFIG } } } });
  // Logs go to stderr: stdout carries the one JSON line the parent reads.
  const log = createLogger({ level: 'warn', destination: process.stderr });
  const registry = createMetricsRegistry();
  const pipeline =
    process.env['BENCH_GATEWAY_SINK'] === 'discard'
      ? { emit: async (d: unknown) => d as never, flush: async () => undefined, close: async () => undefined }
      : await createEventPipeline({ config, log, registry, component: 'proxy', instance: `bench-${randomBytes(3).toString('hex')}` });
  const gw = await startGateway({ config, log, sink: pipeline, registry, tls: { cert: serving.certPem, key: serving.keyPem }, listen: '127.0.0.1:0' });
  process.stdout.write(`${JSON.stringify({ url: gw.url, ca: ca.certPem })}\n`);
  process.on('SIGTERM', () => {
    void (async () => {
      await gw.close();
      await pipeline.close();
      rmSync(dataDir, { recursive: true, force: true });
      process.exit(0);
    })();
  });
}

interface Figures {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  non2xx: number;
  mbps: number;
}

async function load(url: string, token: string, ca: string, o: { connections: number; duration: number; rate?: number; headers?: Record<string, string> }): Promise<Figures> {
  const r = await autocannon({
    url,
    headers: { authorization: `Bearer ${token}`, accept: 'application/json', ...(o.headers ?? {}) },
    connections: o.connections,
    duration: o.duration,
    ...(o.rate ? { overallRate: o.rate } : {}),
    tlsOptions: { ca },
  });
  return { rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, errors: r.errors + r.timeouts, non2xx: r.non2xx, mbps: r.throughput.average / 1e6 };
}

function row(name: string, f: Figures): string {
  return `${name.padEnd(34)} ${f.rps.toFixed(0).padStart(7)} req/s  p50 ${f.p50.toFixed(1).padStart(6)} ms  p99 ${f.p99.toFixed(1).padStart(6)} ms  ${f.mbps.toFixed(1).padStart(6)} MB/s  errors ${f.errors} non2xx ${f.non2xx}`;
}

async function main(): Promise<void> {
  const env = readEnvFile();
  if (!env) throw new Error('harness not running: start it with `npm run harness -- up` or set KUBETRAIL_HARNESS_ENV');
  const apiCa = readFileSync(env.APISERVER_CA, 'utf8');
  const ns = `bench-gw-${randomBytes(3).toString('hex')}`;
  const admin = env.ADMIN_KUBECONFIG;
  const must = async (args: string[], input?: string): Promise<string> => {
    const r = await kubectl(admin, args, input);
    if (r.status !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  await must(['create', 'namespace', ns]);
  const child = spawn(process.execPath, [SELF, 'serve'], { stdio: ['ignore', 'pipe', 'inherit'], env: process.env });
  try {
    await must(['apply', '-f', '-'], `apiVersion: v1
kind: ServiceAccount
metadata: {name: bench, namespace: ${ns}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: read, namespace: ${ns}}
rules: [{apiGroups: [""], resources: [configmaps], verbs: [get, list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: bench-read, namespace: ${ns}}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: read}
subjects: [{kind: ServiceAccount, name: bench, namespace: ${ns}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: small, namespace: ${ns}}
data: {greeting: hello}
`);
    const blob = 'x'.repeat(100 * 1024);
    for (let batch = 0; batch < 5; batch++) {
      const docs = Array.from({ length: 10 }, (_, i) => `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: big-${batch * 10 + i}, namespace: ${ns}}\ndata: {blob: "${blob}"}\n`);
      // create, not apply: apply would store each object again in its last-applied annotation (doubling the list).
      await must(['create', '-f', '-'], docs.join('---\n'));
    }
    const token = (await must(['-n', ns, 'create', 'token', 'bench', '--duration=1h'])).trim();
    const gw = await new Promise<{ url: string; ca: string }>((resolve, reject) => {
      let buf = '';
      child.stdout.on('data', (c: Buffer) => {
        buf += c.toString();
        const nl = buf.indexOf('\n');
        if (nl !== -1) resolve(JSON.parse(buf.slice(0, nl)) as { url: string; ca: string });
      });
      child.once('exit', (code) => reject(new Error(`gateway exited ${code}`)));
    });

    const small = `/api/v1/namespaces/${ns}/configmaps/small`;
    const list = `/api/v1/namespaces/${ns}/configmaps`;
    // Warm both paths (TLS sessions, token review cache, JIT).
    await load(`${env.APISERVER_URL}${small}`, token, apiCa, { connections: 4, duration: 2 });
    await load(`${gw.url}${small}`, token, gw.ca, { connections: 4, duration: 2 });

    const print = (line: string): void => void process.stdout.write(`${line}\n`);
    print(`kubetrail gateway benchmark — Node ${process.version}, ${new Date().toISOString()}`);
    // The machine is shared: measure in short alternating rounds so drift in background load hits both paths alike,
    // and report the median of the rounds.
    const C = Number(process.env['BENCH_GATEWAY_CONNECTIONS'] ?? 8);
    const ROUNDS = Number(process.env['BENCH_GATEWAY_ROUNDS'] ?? 4);
    const median = (xs: number[]): number => {
      const s2 = [...xs].sort((x, y) => x - y);
      const m = Math.floor(s2.length / 2);
      return s2.length % 2 ? (s2[m] as number) : ((s2[m - 1] as number) + (s2[m] as number)) / 2;
    };
    const combine = (fs: Figures[]): Figures => ({
      rps: median(fs.map((f) => f.rps)),
      p50: median(fs.map((f) => f.p50)),
      p99: median(fs.map((f) => f.p99)),
      errors: fs.reduce((n, f) => n + f.errors, 0),
      non2xx: fs.reduce((n, f) => n + f.non2xx, 0),
      mbps: median(fs.map((f) => f.mbps)),
    });
    const rounds = async (paths: { name: string; run: () => Promise<Figures> }[], n: number): Promise<Figures[]> => {
      const acc: Figures[][] = paths.map(() => []);
      for (let r = 0; r < n; r++) for (const [i, p] of paths.entries()) acc[i]!.push(await p.run());
      return acc.map(combine);
    };
    const impersonation = {
      'impersonate-user': `system:serviceaccount:${ns}:bench`,
      'impersonate-group': 'system:serviceaccounts',
      'impersonate-extra-kubetrail.io%2fsession': 'bench-session',
    };

    const [sd, sp, si] = (await rounds(
      [
        { name: 'direct', run: () => load(`${env.APISERVER_URL}${small}`, token, apiCa, { connections: C, duration: 3 }) },
        { name: 'gateway', run: () => load(`${gw.url}${small}`, token, gw.ca, { connections: C, duration: 3 }) },
        // What impersonation alone costs the API server: the admin token with the headers the gateway sends, straight to it.
        { name: 'direct+imp', run: () => load(`${env.APISERVER_URL}${small}`, env.ADMIN_TOKEN, apiCa, { connections: C, duration: 3, headers: impersonation }) },
      ],
      ROUNDS,
    )) as [Figures, Figures, Figures];
    print(`small GET (one ConfigMap), ${C} connections, full load, median of ${ROUNDS} alternating 3 s rounds:`);
    print(row('  direct', sd));
    print(row('  gateway', sp));
    print(row('  direct + impersonation headers', si));
    print(`  throughput ratio gateway/direct: ${(sp.rps / sd.rps).toFixed(2)} (target >= 0.70); direct+impersonation/direct: ${(si.rps / sd.rps).toFixed(2)}`);

    const rate = 100;
    const [fd, fp] = (await rounds(
      [
        { name: 'direct', run: () => load(`${env.APISERVER_URL}${small}`, token, apiCa, { connections: 2, duration: 3, rate }) },
        { name: 'gateway', run: () => load(`${gw.url}${small}`, token, gw.ca, { connections: 2, duration: 3, rate }) },
      ],
      ROUNDS,
    )) as [Figures, Figures];
    print(`small GET at a fixed ${rate}/s (unsaturated), median of ${ROUNDS} rounds:`);
    print(row('  direct', fd));
    print(row('  gateway', fp));
    print(`  added latency: p50 +${(fp.p50 - fd.p50).toFixed(1)} ms, p99 +${(fp.p99 - fd.p99).toFixed(1)} ms (target p99 < 3 ms)`);

    const [ld, lp] = (await rounds(
      [
        { name: 'direct', run: () => load(`${env.APISERVER_URL}${list}`, token, apiCa, { connections: 2, duration: 3 }) },
        { name: 'gateway', run: () => load(`${gw.url}${list}`, token, gw.ca, { connections: 2, duration: 3 }) },
      ],
      3,
    )) as [Figures, Figures];
    print('5 MB list (50 ConfigMaps of 100 KiB), 2 connections, full load, median of 3 rounds:');
    print(row('  direct', ld));
    print(row('  gateway', lp));
    print(`  throughput ratio gateway/direct: ${(lp.rps / ld.rps).toFixed(2)}; p99 ${ld.p99.toFixed(0)} -> ${lp.p99.toFixed(0)} ms; response ${(ld.mbps / Math.max(ld.rps, 1)).toFixed(2)} MB`);
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    await kubectl(admin, ['delete', 'namespace', ns, '--wait=false']);
  }
}

if (process.argv[2] === 'serve') await serve();
else await main();
