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
 *
 * OIDC rows: a test issuer (test/tools/oidc-issuer.ts) signs a JWT for
 * `bench-user`; the gateway validates it (jose, cached JWKS) and impersonates
 * `oidc:bench-user`. With BENCH_KUBE_OIDC_PROXY=/path/to/kube-oidc-proxy, the
 * peer runs with the same issuer and claim mappings (./kube-oidc-proxy.ts) and
 * its rows stand beside the gateway's: it authenticates and impersonates the
 * same way but records nothing, so the ratio prices the gateway's recording.
 *
 * A third path is a reference, not a baseline: the floor of any Node proxy on
 * this machine, a bare node:https reverse proxy (this file with `serve-floor`,
 * also a child process: keep-alive agent, no authentication, no impersonation,
 * no audit; it forwards the caller's own token). On a machine where the load
 * generator, the proxy and the API server share the same cores, every
 * CPU-microsecond a proxy spends comes out of the API server's, so the ratio
 * direct/gateway is bounded by what the floor reaches. The CPU time each proxy
 * process uses per request (from /proc) is printed too: unlike requests/s it
 * says what the gateway itself costs, independent of how loaded the machine is.
 */
import { spawn } from 'node:child_process';
import https from 'node:https';
import tls from 'node:tls';
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
import { buildUpstreamHeaders } from '../../exec-proxy/impersonation.ts';
import { readEnvFile } from '../harness/harness.ts';
import { kubectl } from '../support/env.ts';
import { startOidcIssuer, type OidcIssuer } from '../tools/oidc-issuer.ts';
import { startKubeOidcProxy, type PeerProxy } from './kube-oidc-proxy.ts';
import { procCpuMs } from './lib/cpu.ts';

const SELF = fileURLToPath(import.meta.url);
const OIDC_AUDIENCE = 'kubetrail';

async function serve(): Promise<void> {
  const env = readEnvFile();
  if (!env) throw new Error('harness not running');
  const dataDir = mkdtempSync(path.join(tmpdir(), 'kubetrail-bench-gw-'));
  const ca = createCA({ commonName: 'bench-gw-ca' });
  const serving = issueCert(ca, { commonName: 'gateway', ips: ['127.0.0.1'] });
  // Experiments only (the figures in docs use the default): BENCH_GATEWAY_GROUP_COMMIT_MS sets spool.groupCommitMs.
  const spool = process.env['BENCH_GATEWAY_GROUP_COMMIT_MS'] ? { spool: { groupCommitMs: Number(process.env['BENCH_GATEWAY_GROUP_COMMIT_MS']) } } : {};
  // The parent passes its test issuer (BENCH_GATEWAY_OIDC = {url, ca}) for the OIDC rows.
  const oidc = process.env['BENCH_GATEWAY_OIDC'] ? (JSON.parse(process.env['BENCH_GATEWAY_OIDC']) as { url: string; ca: string }) : undefined;
  const authn = oidc
    ? { authn: { jwt: [{ issuer: { url: oidc.url, audiences: [OIDC_AUDIENCE], certificateAuthority: oidc.ca }, claimMappings: { username: { claim: 'sub', prefix: 'oidc:' }, groups: { claim: 'groups', prefix: 'oidc:' } } }], tokenReview: true } }
    : {};
  const config = loadConfig({ document: { cluster: 'bench', dataDir, policies: { dir: path.join(dataDir, 'none') }, log: { level: 'warn' }, proxy: { upstream: { kubeconfig: env.ADMIN_KUBECONFIG }, ...authn }, ...spool } as never });
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

/**
 * The floor: a bare node:https reverse proxy to the API server, the way any
 * Node proxy would start (keep-alive agent with a prebuilt SecureContext,
 * hop-by-hop headers dropped, bodies piped). No authentication, no
 * impersonation, no events: the caller's own Authorization goes upstream.
 */
async function serveFloor(): Promise<void> {
  const env = readEnvFile();
  if (!env) throw new Error('harness not running');
  const up = new URL(env.APISERVER_URL);
  const ca = createCA({ commonName: 'bench-floor-ca' });
  const serving = issueCert(ca, { commonName: 'floor', ips: ['127.0.0.1'] });
  const agent = new https.Agent({ keepAlive: true, maxSockets: 256, scheduling: 'lifo', secureContext: tls.createSecureContext({ ca: readFileSync(env.APISERVER_CA) }) });
  const hop = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'host']);
  const server = https.createServer({ cert: serving.certPem, key: serving.keyPem, keepAliveTimeout: 65_000, noDelay: true }, (req, res) => {
    const headers: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(req.headers)) if (v !== undefined && !hop.has(k)) headers[k] = v;
    const upReq = https.request({ hostname: up.hostname, port: up.port, method: req.method, path: req.url, headers, agent }, (upRes) => {
      const lines: string[] = [];
      for (let i = 0; i + 1 < upRes.rawHeaders.length; i += 2) if (!hop.has((upRes.rawHeaders[i] as string).toLowerCase())) lines.push(upRes.rawHeaders[i] as string, upRes.rawHeaders[i + 1] as string);
      res.writeHead(upRes.statusCode ?? 502, lines);
      upRes.pipe(res);
    });
    upReq.on('error', () => res.destroy());
    req.pipe(upReq);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  process.stdout.write(`${JSON.stringify({ url: `https://127.0.0.1:${port}`, ca: ca.certPem })}\n`);
  process.on('SIGTERM', () => process.exit(0));
}

/** Spawns this file in `mode` and reads the `{url, ca}` line it prints. */
async function startChild(mode: 'serve' | 'serve-floor', extraEnv: Record<string, string> = {}): Promise<{ child: ReturnType<typeof spawn>; url: string; ca: string }> {
  // BENCH_GATEWAY_CHILD_ARGS: node flags for the gateway process only (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`).
  const nodeArgs = mode === 'serve' ? (process.env['BENCH_GATEWAY_CHILD_ARGS'] ?? '').split(' ').filter((a) => a !== '') : [];
  const child = spawn(process.execPath, [...nodeArgs, SELF, mode], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...extraEnv } });
  const first = await new Promise<{ url: string; ca: string }>((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (c: Buffer) => {
      buf += c.toString();
      const nl = buf.indexOf('\n');
      if (nl !== -1) resolve(JSON.parse(buf.slice(0, nl)) as { url: string; ca: string });
    });
    child.once('exit', (code) => reject(new Error(`${mode} exited ${code}`)));
  });
  return { child, ...first };
}

async function stopChild(child: ReturnType<typeof spawn> | undefined): Promise<void> {
  if (!child || child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

interface Figures {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  non2xx: number;
  mbps: number;
  /** CPU time of the measured proxy process per request (µs), when one was given. */
  cpuUsPerReq?: number;
}

async function load(url: string, token: string, ca: string, o: { connections: number; duration: number; rate?: number; headers?: Record<string, string>; pid?: number | undefined }): Promise<Figures> {
  const cpu0 = procCpuMs(o.pid);
  const r = await autocannon({
    url,
    headers: { authorization: `Bearer ${token}`, accept: 'application/json', ...(o.headers ?? {}) },
    connections: o.connections,
    duration: o.duration,
    ...(o.rate ? { overallRate: o.rate } : {}),
    tlsOptions: { ca },
  });
  const f: Figures = { rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, errors: r.errors + r.timeouts, non2xx: r.non2xx, mbps: r.throughput.average / 1e6 };
  const cpu1 = procCpuMs(o.pid);
  if (Number.isFinite(cpu0) && Number.isFinite(cpu1) && r.requests.total > 0) f.cpuUsPerReq = ((cpu1 - cpu0) * 1000) / r.requests.total;
  return f;
}

function row(name: string, f: Figures): string {
  const cpu = f.cpuUsPerReq !== undefined ? `  proxy CPU ${f.cpuUsPerReq.toFixed(0).padStart(4)} µs/req` : '';
  return `${name.padEnd(34)} ${f.rps.toFixed(0).padStart(7)} req/s  p50 ${f.p50.toFixed(1).padStart(6)} ms  p99 ${f.p99.toFixed(1).padStart(6)} ms  ${f.mbps.toFixed(1).padStart(6)} MB/s  errors ${f.errors} non2xx ${f.non2xx}${cpu}`;
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
  let gwChild: ReturnType<typeof spawn> | undefined;
  let floorChild: ReturnType<typeof spawn> | undefined;
  let issuer: OidcIssuer | undefined;
  let peer: PeerProxy | undefined;
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
subjects: [{kind: ServiceAccount, name: bench, namespace: ${ns}}, {apiGroup: rbac.authorization.k8s.io, kind: User, name: "oidc:bench-user"}]
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
    issuer = await startOidcIssuer();
    const jwt = await issuer.sign({ sub: 'bench-user', aud: OIDC_AUDIENCE, groups: ['bench'], exp: Math.floor(Date.now() / 1000) + 3600 });
    const gw = await startChild('serve', { BENCH_GATEWAY_OIDC: JSON.stringify({ url: issuer.url, ca: issuer.caPem }) });
    gwChild = gw.child;
    const floor = await startChild('serve-floor');
    floorChild = floor.child;

    const small = `/api/v1/namespaces/${ns}/configmaps/small`;
    const list = `/api/v1/namespaces/${ns}/configmaps`;
    const peerBinary = process.env['BENCH_KUBE_OIDC_PROXY'];
    if (peerBinary) peer = await startKubeOidcProxy({ binary: peerBinary, issuerUrl: issuer.url, issuerCa: issuer.caPem, audience: OIDC_AUDIENCE, adminKubeconfig: admin, token: jwt, probePath: small });
    const peerUrl = peer?.url;
    const peerCa = peer?.ca ?? '';
    // Warm both paths (TLS sessions, token review cache, JIT).
    await load(`${env.APISERVER_URL}${small}`, token, apiCa, { connections: 4, duration: 2 });
    await load(`${gw.url}${small}`, token, gw.ca, { connections: 4, duration: 2 });
    await load(`${floor.url}${small}`, token, floor.ca, { connections: 4, duration: 2 });
    await load(`${gw.url}${small}`, jwt, gw.ca, { connections: 4, duration: 2 });
    if (peerUrl) await load(`${peerUrl}${small}`, jwt, peerCa, { connections: 4, duration: 2 });

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
      ...(fs.every((f) => f.cpuUsPerReq !== undefined) ? { cpuUsPerReq: median(fs.map((f) => f.cpuUsPerReq as number)) } : {}),
    });
    const rounds = async (paths: { name: string; run: () => Promise<Figures> }[], n: number): Promise<Figures[]> => {
      const acc: Figures[][] = paths.map(() => []);
      for (let r = 0; r < n; r++) for (const [i, p] of paths.entries()) acc[i]!.push(await p.run());
      return acc.map(combine);
    };
    // Exactly the impersonation headers the gateway sends for this token: the identity the API server gives it
    // (SelfSubjectReview), through the gateway's own header builder.
    const who = await new Promise<{ username: string; uid?: string; groups?: string[]; extra?: Record<string, string[]> }>((resolve, reject) => {
      const req = https.request(`${env.APISERVER_URL}/apis/authentication.k8s.io/v1/selfsubjectreviews`, { method: 'POST', ca: apiCa, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } }, (res) => {
        let b = '';
        res.on('data', (c: Buffer) => (b += c.toString()));
        res.on('end', () => (res.statusCode === 201 ? resolve((JSON.parse(b) as { status: { userInfo: never } }).status.userInfo) : reject(new Error(`SelfSubjectReview: ${res.statusCode} ${b}`))));
      });
      req.on('error', reject);
      req.end(JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' }));
    });
    const impersonation: Record<string, string> = {};
    for (const [name, value] of Object.entries(buildUpstreamHeaders({ username: who.username, groups: who.groups ?? [], ...(who.uid ? { uid: who.uid } : {}), ...(who.extra ? { extra: who.extra } : {}), authn: 'serviceaccount' }, 'bench-session'))) {
      if (Array.isArray(value) && value.length > 1) throw new Error(`bench: ${name} has several values, which this load generator cannot send`);
      impersonation[name] = String(Array.isArray(value) ? value[0] : value);
    }
    process.stdout.write(`impersonation headers the gateway sends for the bench token: ${Object.keys(impersonation).join(', ')}\n`);

    const peerPaths = (run: (url: string, ca: string) => Promise<Figures>): { name: string; run: () => Promise<Figures> }[] => (peerUrl ? [{ name: 'kube-oidc-proxy', run: () => run(peerUrl, peerCa) }] : []);
    const [sd, sp, si, sf, so, sk] = (await rounds(
      [
        { name: 'direct', run: () => load(`${env.APISERVER_URL}${small}`, token, apiCa, { connections: C, duration: 3 }) },
        { name: 'gateway', run: () => load(`${gw.url}${small}`, token, gw.ca, { connections: C, duration: 3, pid: gwChild?.pid }) },
        // What impersonation alone costs the API server: the admin token with the headers the gateway sends, straight to it.
        { name: 'direct+imp', run: () => load(`${env.APISERVER_URL}${small}`, env.ADMIN_TOKEN, apiCa, { connections: C, duration: 3, headers: impersonation }) },
        { name: 'floor', run: () => load(`${floor.url}${small}`, token, floor.ca, { connections: C, duration: 3, pid: floorChild?.pid }) },
        { name: 'gateway-oidc', run: () => load(`${gw.url}${small}`, jwt, gw.ca, { connections: C, duration: 3, pid: gwChild?.pid }) },
        ...peerPaths((url, ca) => load(`${url}${small}`, jwt, ca, { connections: C, duration: 3, pid: peer?.pid })),
      ],
      ROUNDS,
    )) as [Figures, Figures, Figures, Figures, Figures, Figures | undefined];
    print(`small GET (one ConfigMap), ${C} connections, full load, median of ${ROUNDS} alternating 3 s rounds:`);
    print(row('  direct', sd));
    print(row('  gateway', sp));
    print(row('  direct + impersonation headers', si));
    print(row('  bare node:https proxy (reference)', sf));
    print(row('  gateway, OIDC JWT', so));
    if (sk) print(row('  kube-oidc-proxy, OIDC JWT (peer)', sk));
    if (sk) print(`  kubetrail/kube-oidc-proxy (both OIDC): ${(so.rps / sk.rps).toFixed(2)} (target >= 1.0; kubetrail records every request, kube-oidc-proxy records nothing); kube-oidc-proxy/direct: ${(sk.rps / sd.rps).toFixed(2)}`);
    if (sk?.cpuUsPerReq !== undefined && so.cpuUsPerReq !== undefined) print(`  proxy CPU per request, OIDC: gateway ${so.cpuUsPerReq.toFixed(0)} µs, kube-oidc-proxy ${sk.cpuUsPerReq.toFixed(0)} µs`);
    print(`  throughput ratio gateway/direct: ${(sp.rps / sd.rps).toFixed(2)} (target >= 0.70); direct+impersonation/direct: ${(si.rps / sd.rps).toFixed(2)}; bare proxy/direct: ${(sf.rps / sd.rps).toFixed(2)}`);
    if (sp.cpuUsPerReq !== undefined && sf.cpuUsPerReq !== undefined) {
      print(`  proxy CPU per request: gateway ${sp.cpuUsPerReq.toFixed(0)} µs, bare proxy ${sf.cpuUsPerReq.toFixed(0)} µs (gateway's own work: +${(sp.cpuUsPerReq - sf.cpuUsPerReq).toFixed(0)} µs)`);
    }

    const rate = 100;
    // BENCH_GATEWAY_ONLY=small: stop after the full-load small GET rows (e.g. to profile that path alone).
    if (process.env['BENCH_GATEWAY_ONLY'] === 'small') return;
    const [fd, fp, fo, fk] = (await rounds(
      [
        { name: 'direct', run: () => load(`${env.APISERVER_URL}${small}`, token, apiCa, { connections: 2, duration: 3, rate }) },
        { name: 'gateway', run: () => load(`${gw.url}${small}`, token, gw.ca, { connections: 2, duration: 3, rate, pid: gwChild?.pid }) },
        { name: 'gateway-oidc', run: () => load(`${gw.url}${small}`, jwt, gw.ca, { connections: 2, duration: 3, rate, pid: gwChild?.pid }) },
        ...peerPaths((url, ca) => load(`${url}${small}`, jwt, ca, { connections: 2, duration: 3, rate, pid: peer?.pid })),
      ],
      ROUNDS,
    )) as [Figures, Figures, Figures, Figures | undefined];
    print(`small GET at a fixed ${rate}/s (unsaturated), median of ${ROUNDS} rounds:`);
    print(row('  direct', fd));
    print(row('  gateway', fp));
    print(row('  gateway, OIDC JWT', fo));
    if (fk) print(row('  kube-oidc-proxy, OIDC JWT (peer)', fk));
    print(`  added latency: p50 +${(fp.p50 - fd.p50).toFixed(1)} ms, p99 +${(fp.p99 - fd.p99).toFixed(1)} ms (target p99 < 3 ms); OIDC: p99 +${(fo.p99 - fd.p99).toFixed(1)} ms${fk ? `; kube-oidc-proxy p99 +${(fk.p99 - fd.p99).toFixed(1)} ms` : ''}`);

    const [ld, lp, lf, lk] = (await rounds(
      [
        { name: 'direct', run: () => load(`${env.APISERVER_URL}${list}`, token, apiCa, { connections: 2, duration: 3 }) },
        { name: 'gateway', run: () => load(`${gw.url}${list}`, token, gw.ca, { connections: 2, duration: 3, pid: gwChild?.pid }) },
        { name: 'floor', run: () => load(`${floor.url}${list}`, token, floor.ca, { connections: 2, duration: 3, pid: floorChild?.pid }) },
        ...peerPaths((url, ca) => load(`${url}${list}`, jwt, ca, { connections: 2, duration: 3, pid: peer?.pid })),
      ],
      3,
    )) as [Figures, Figures, Figures, Figures | undefined];
    print('5 MB list (50 ConfigMaps of 100 KiB), 2 connections, full load, median of 3 rounds:');
    print(row('  direct', ld));
    print(row('  gateway', lp));
    print(row('  bare node:https proxy (reference)', lf));
    if (lk) print(row('  kube-oidc-proxy, OIDC JWT (peer)', lk));
    if (lk) print(`  kubetrail/kube-oidc-proxy: ${(lp.rps / lk.rps).toFixed(2)}`);
    print(`  throughput ratio gateway/direct: ${(lp.rps / ld.rps).toFixed(2)} (target >= 0.70); bare proxy/direct: ${(lf.rps / ld.rps).toFixed(2)}; p99 ${ld.p99.toFixed(0)} -> ${lp.p99.toFixed(0)} ms; response ${(ld.mbps / Math.max(ld.rps, 1)).toFixed(2)} MB`);
  } finally {
    await stopChild(gwChild);
    await stopChild(floorChild);
    await peer?.close();
    await issuer?.close();
    await kubectl(admin, ['delete', 'namespace', ns, '--wait=false']);
  }
}

if (process.argv[2] === 'serve') await serve();
else if (process.argv[2] === 'serve-floor') await serveFloor();
else await main();
