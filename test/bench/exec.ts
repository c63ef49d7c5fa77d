/**
 * `npm run bench:exec`: the stream relay against the same upstream reached
 * directly, in one run.
 *
 * 1. stdout throughput of a 256 MiB stream (v5.channel.k8s.io), relay with
 *    recording (real local-log pipeline, fsync'd) and masking (every
 *    built-in pattern) on, vs the fake upstream directly. Target ratio >= 0.8.
 * 2. Added round-trip latency of a typed keystroke echo in a tty session
 *    (pty echo under `script`), relay with the line editor (an ExecPolicy
 *    line rule) and masking on, vs direct. Target: p99 added < 2 ms.
 * 3. RSS of 1,000 concurrent idle exec sessions in the relay process.
 *    Target < 100 KiB each.
 * 4. (`real`, when the harness runs its node) 1 and 2 against a real busybox
 *    container: the real API server → kubelet → containerd, relayed (recording
 *    + masking; line editor + masking) vs the same exec straight to the API
 *    server as the harness admin. BENCH_REAL_MIB (default 64), BENCH_REAL_KEYSTROKES (300).
 *
 * The relay runs in its own process (test/tools/stream-gateway-main.ts);
 * this process runs the fake upstream and the clients.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createCA, issueCert } from '../../certs/generate.ts';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { WebSocket } from 'ws';
import { startFakeUpstream } from '../tools/fake-exec-upstream.ts';
import { REPO_ROOT, readEnvFile } from '../harness/harness.ts';
import { procCpuMs } from './lib/cpu.ts';

const STREAM_BYTES = Number(process.env["BENCH_STREAM_MIB"] ?? 256) * 1024 * 1024;
const KEYSTROKES = Number(process.env['BENCH_KEYSTROKES'] ?? 1000);
const IDLE_SESSIONS = Number(process.env['BENCH_IDLE_SESSIONS'] ?? 1000);
/** Extra node flags for the relay process, e.g. BENCH_GATEWAY_NODE_ARGS='--cpu-prof --cpu-prof-dir=/tmp/prof' to profile it. */
const GATEWAY_NODE_ARGS = (process.env['BENCH_GATEWAY_NODE_ARGS'] ?? '').split(' ').filter(Boolean);
/** Extra environment of the relay and pass-through processes only, e.g. BENCH_GATEWAY_ENV='GLIBC_TUNABLES=glibc.malloc.mmap_threshold=32768'. */
const GATEWAY_ENV = Object.fromEntries((process.env['BENCH_GATEWAY_ENV'] ?? '').split(' ').filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
/** BENCH_ONLY=throughput,keystrokes,idle runs a subset (all by default). */
const HARNESS = readEnvFile();
const ONLY = new Set((process.env['BENCH_ONLY'] ?? `throughput,keystrokes,idle${HARNESS?.NODE_NAME ? ',real' : ''}`).split(','));
const REAL_BYTES = Number(process.env['BENCH_REAL_MIB'] ?? 64) * 1024 * 1024;
const REAL_KEYSTROKES = Number(process.env['BENCH_REAL_KEYSTROKES'] ?? 300);
/**
 * What every exec of this process targets: the fake upstream's pod by default; the real rows
 * point it at a pod on the harness node with the admin token (the test gateway does not
 * authenticate clients, so one token serves both the direct and the relayed leg).
 */
const execTarget = { path: '/api/v1/namespaces/bench/pods/p/exec', token: 'upstream-token' };

interface Gateway {
  url: string;
  child: ChildProcess;
  ask(cmd: string): Promise<Record<string, number>>;
  stop(): Promise<void>;
}

/**
 * Reference: the cheapest possible TLS-terminating relay, a bare Node TLS
 * pass-through (client TLS terminated, upstream TLS opened with the same CA,
 * bytes piped both ways, no WebSocket parsing). It bounds what any relay in
 * Node that terminates both TLS legs can do on this machine. Same protocol
 * on stdin as the gateway ("rss", "exit").
 */
const TLS_PASSTHROUGH = `
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
const [upstream, caFile, certFile, keyFile] = process.argv.slice(1);
const u = new URL(upstream);
const secureContext = tls.createSecureContext({ ca: readFileSync(caFile) });
const srv = tls.createServer({ cert: readFileSync(certFile), key: readFileSync(keyFile) }, (c) => {
  const up = tls.connect({ host: u.hostname, port: Number(u.port), secureContext, servername: 'localhost' });
  c.pipe(up).pipe(c);
  c.on('error', () => up.destroy());
  up.on('error', () => c.destroy());
});
srv.listen(0, '127.0.0.1', () => process.stdout.write(JSON.stringify({ url: 'https://127.0.0.1:' + srv.address().port }) + '\\n'));
createInterface({ input: process.stdin }).on('line', (l) => {
  if (l === 'rss') { globalThis.gc(); const m = process.memoryUsage(); process.stdout.write(JSON.stringify({ rss: m.rss, heapUsed: m.heapUsed }) + '\\n'); }
  else if (l === 'exit') process.exit(0);
}).on('close', () => process.exit(0));
`;

async function startGateway(upstream: URL, flags: string[], upstreamCaPem = UPSTREAM_CA.certPem): Promise<Gateway> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'kubetrail-bench-exec-'));
  const caFile = path.join(dataDir, 'upstream-ca.pem');
  writeFileSync(caFile, upstreamCaPem);
  let args = ['--expose-gc', ...GATEWAY_NODE_ARGS, path.join(REPO_ROOT, 'test/tools/stream-gateway-main.ts'), '--upstream', upstream.href, '--upstream-ca', caFile, '--data-dir', dataDir, ...flags];
  if (flags[0] === '--tls-passthrough') {
    const certFile = path.join(dataDir, 'cert.pem');
    const keyFile = path.join(dataDir, 'key.pem');
    writeFileSync(certFile, upstreamCert.certPem);
    writeFileSync(keyFile, upstreamCert.keyPem);
    args = ['--expose-gc', '--input-type=module', '-e', TLS_PASSTHROUGH, upstream.href, caFile, certFile, keyFile];
  }
  const child = spawn(process.execPath, args, {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, ...GATEWAY_ENV },
  });
  const rl = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const lines: ((l: string) => void)[] = [];
  rl.on('line', (l) => lines.shift()?.(l));
  const next = (): Promise<string> => new Promise((r) => lines.push(r));
  const first = JSON.parse(await next()) as { url: string };
  return {
    url: first.url,
    child,
    async ask(cmd) {
      const p = next();
      child.stdin?.write(cmd + '\n');
      return JSON.parse(await p) as Record<string, number>;
    },
    async stop() {
      const exited = new Promise((r) => child.once('exit', r));
      child.stdin?.end('exit\n');
      await exited;
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

function connect(base: string, query: string): Promise<WebSocket> {
  const url = `${base.replace(/^http/, 'ws')}${execTarget.path}?${query}`;
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, ['v5.channel.k8s.io'], { rejectUnauthorized: false, perMessageDeflate: false, headers: { authorization: `Bearer ${execTarget.token}` } });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

async function throughput(base: string, relayPid?: number, total = STREAM_BYTES): Promise<{ mibps: number; bytes: number; benchCpuMsPerMiB: number; relayCpuMsPerMiB: number }> {
  const STREAM_BYTES = total;
  const line = '2026-11-26T10:00:00.000Z INFO served GET /api/v1/namespaces/default/pods status=200 bytes=1234 user=agent-ci';
  const cmd = `command=sh&command=-c&command=${encodeURIComponent(`yes '${line}' | head -c ${STREAM_BYTES}`)}&stdout=true&stderr=true`;
  const ws = await connect(base, cmd);
  const c0 = process.cpuUsage();
  const r0 = procCpuMs(relayPid);
  const t0 = process.hrtime.bigint();
  let bytes = 0;
  // Timed to the last stdout byte, not to the close handshake after it: through the bare TLS pass-through the
  // close once never completed (18:38), which hung the whole run.
  await new Promise<void>((resolve) => {
    ws.on('message', (d: Buffer) => {
      if (d[0] === 1) bytes += d.length - 1;
      if (bytes >= STREAM_BYTES) resolve();
    });
    ws.on('close', () => resolve());
  });
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  ws.terminate();
  const c = process.cpuUsage(c0);
  const mib = bytes / 1048576;
  if (bytes !== STREAM_BYTES) throw new Error(`received ${bytes} bytes, expected ${STREAM_BYTES}`);
  // The bench process runs the fake upstream and the client; the relay is the other process.
  return { mibps: mib / s, bytes, benchCpuMsPerMiB: (c.user + c.system) / 1000 / mib, relayCpuMsPerMiB: (procCpuMs(relayPid) - r0) / mib };
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] as number;
}

/** An interactive tty session typing without Enter: every key is echoed by the pty. */
async function typist(base: string): Promise<{ type: (ch: string) => Promise<number>; close: () => void }> {
  const ws = await connect(base, 'command=sh&stdin=true&stdout=true&tty=true');
  let pending: (() => void) | undefined;
  let buf = '';
  ws.on('message', (d: Buffer) => {
    if (d[0] !== 1) return;
    buf += d.subarray(1).toString('latin1');
    pending?.();
  });
  // busybox ash (the real rows) asks for the cursor position after its prompt.
  while (!/[$#] (\x1b\[6n)?$/.test(buf)) await new Promise((r) => setTimeout(r, 20));
  let typed = 0;
  const close = (): void => {
    ws.send(Buffer.from([0, 0x03]));
    ws.send(Buffer.from([0, 0x04]));
    ws.close();
  };
  const type = async (ch: string): Promise<number> => {
    if (++typed % 400 === 0) {
      // ctrl-u keeps the line short; its echo is not timed
      ws.send(Buffer.from([0, 0x15]));
      await new Promise((r) => setTimeout(r, 30));
    }
    buf = '';
    const t0 = process.hrtime.bigint();
    const got = new Promise<void>((resolve) => {
      pending = () => {
        if (buf.includes(ch)) {
          pending = undefined;
          resolve();
        }
      };
    });
    ws.send(Buffer.concat([Buffer.from([0]), Buffer.from(ch)]));
    await got;
    return Number(process.hrtime.bigint() - t0) / 1e6;
  };
  return { type, close };
}

/** Keystroke echo RTTs, direct and through the relay, alternating key by key so both see the same machine load. */
async function keystrokes(direct: string, relay: string, count = KEYSTROKES): Promise<{ direct: number[]; relay: number[] }> {
  const KEYSTROKES = count;
  const d = await typist(direct);
  const r = await typist(relay);
  const text = 'kubectl get pods --namespace agents -o wide ';
  const out = { direct: [] as number[], relay: [] as number[] };
  for (let i = 0; i < KEYSTROKES; i++) {
    const ch = text[i % text.length] as string;
    out.direct.push(await d.type(ch));
    out.relay.push(await r.type(ch));
  }
  d.close();
  r.close();
  return out;
}

async function idleSessions(gw: Gateway): Promise<{ before: number; after: number; perSessionKiB: number; heapPerSessionKiB: number }> {
  const before = await gw.ask('rss');
  const sockets: WebSocket[] = [];
  for (let i = 0; i < IDLE_SESSIONS; i += 50) {
    const batch = await Promise.all(Array.from({ length: Math.min(50, IDLE_SESSIONS - i) }, () => connect(gw.url, 'command=kubetrail-idle&stdin=true&stdout=true')));
    sockets.push(...batch);
  }
  // Let every session finish opening (session.start durable, upstream open).
  await new Promise((r) => setTimeout(r, 1500));
  const after = await gw.ask('rss');
  if (process.env['BENCH_DEBUG']) console.error('idle before', before, 'after', after);
  for (const s of sockets) s.terminate();
  const per = ((after['rss'] as number) - (before['rss'] as number)) / IDLE_SESSIONS / 1024;
  const heapPer = ((after['heapUsed'] as number) - (before['heapUsed'] as number)) / IDLE_SESSIONS / 1024;
  return { before: before['rss'] as number, after: after['rss'] as number, perSessionKiB: per, heapPerSessionKiB: heapPer };
}

// The upstream speaks HTTPS like the API server, so direct and relayed clients both pay for TLS.
const UPSTREAM_CA = createCA({ commonName: 'bench-upstream-ca' });
const upstreamCert = issueCert(UPSTREAM_CA, { commonName: 'bench-upstream', ips: ['127.0.0.1'], dnsNames: ['localhost'] });
const up = await startFakeUpstream({ token: 'upstream-token', tls: { cert: upstreamCert.certPem, key: upstreamCert.keyPem } });
const fmt = (n: number, d = 1): string => n.toFixed(d);
try {
  if (ONLY.has('throughput')) {
    // 1. throughput: alternating rounds (the machine is shared: each ratio compares runs made back to back)
    const direct = (): ReturnType<typeof throughput> => throughput(up.url.href.replace(/\/$/, ''));
    const cpu = (x: Awaited<ReturnType<typeof throughput>>, relay: boolean): string => `${fmt(x.benchCpuMsPerMiB, 2)} ms/MiB client+upstream${relay ? `, ${fmt(x.relayCpuMsPerMiB, 2)} ms/MiB relay` : ''}`;
    const gw = await startGateway(up.url, ['--mask']);
    const ratios: number[] = [];
    const rounds: string[] = [];
    for (let round = 0; round < 3; round++) {
      const d = await direct();
      const r = await throughput(gw.url, gw.child.pid);
      ratios.push(r.mibps / d.mibps);
      rounds.push(`direct ${fmt(d.mibps)} / relay ${fmt(r.mibps)} MiB/s (CPU: direct ${cpu(d, false)}; relayed ${cpu(r, true)})`);
    }
    await gw.stop();
    // Decomposition, one round each: the relay with recording chunks built and compressed but not
    // stored, the relay with nothing compressed or stored (its own relaying cost), and a bare Node
    // TLS pass-through (both TLS legs, no WebSocket work at all). No masking in any of them.
    const decomposition: string[] = [];
    const variants = [
      ['relay, chunks compressed but not stored, no masking', ['--discard-sink']],
      ['relay, chunks neither compressed nor stored, no masking', ['--discard-sink', '--limit', 'recordCompression=none']],
      ['bare Node TLS pass-through (reference, not kubetrail)', ['--tls-passthrough']],
    ] as const;
    for (const [name, flags] of variants) {
      const g = await startGateway(up.url, [...flags]);
      const d = await direct();
      const r = await throughput(g.url, g.child.pid);
      await g.stop();
      decomposition.push(`${name}: direct ${fmt(d.mibps)} / ${fmt(r.mibps)} MiB/s, ratio ${fmt(r.mibps / d.mibps, 2)} (relay CPU ${fmt(r.relayCpuMsPerMiB, 2)} ms/MiB)`);
    }
    console.log(`throughput decomposition: ${decomposition.join('; ')}`);
    console.log(`throughput ${STREAM_BYTES / 1048576} MiB stdout, relay with recording (local log, fsync) + masking vs direct: ${rounds.join('; ')}; median ratio ${fmt(percentile(ratios, 50), 2)} (target >= 0.8)`);
  }
  if (ONLY.has('keystrokes')) {
    // 2. keystroke echo latency
    const gw2 = await startGateway(up.url, ['--mask', '--line-rule']);
    const ks = await keystrokes(up.url.href.replace(/\/$/, ''), gw2.url);
    const kd = ks.direct;
    const kr = ks.relay;
    await gw2.stop();
    const p = (xs: number[], q: number): number => percentile(xs, q);
    console.log(
      `keystroke echo RTT (${KEYSTROKES} keys, tty, line editor + masking): direct p50 ${fmt(p(kd, 50), 3)} ms p99 ${fmt(p(kd, 99), 3)} ms; relay p50 ${fmt(p(kr, 50), 3)} ms p99 ${fmt(p(kr, 99), 3)} ms; added p50 ${fmt(p(kr, 50) - p(kd, 50), 3)} ms, added p99 ${fmt(p(kr, 99) - p(kd, 99), 3)} ms (target < 2 ms)`,
    );
  }
  if (ONLY.has('idle')) {
    // 3. idle sessions, and the same through the bare TLS pass-through (what two TLS legs alone cost in Node)
    const gw3 = await startGateway(up.url, ['--mask']);
    const idle = await idleSessions(gw3);
    await gw3.stop();
    const tp = await startGateway(up.url, ['--tls-passthrough']);
    const ref = await idleSessions(tp);
    await tp.stop();
    console.log(
      `idle sessions: ${IDLE_SESSIONS} concurrent, relay RSS ${fmt(idle.before / 1048576)} -> ${fmt(idle.after / 1048576)} MiB, ${fmt(idle.perSessionKiB)} KiB/session RSS (${fmt(idle.heapPerSessionKiB)} KiB JS heap) (target < 100 KiB); ` +
        `reference, bare Node TLS pass-through (two TLS legs, nothing else): ${fmt(ref.perSessionKiB)} KiB/connection RSS (${fmt(ref.heapPerSessionKiB)} KiB JS heap)`,
    );
  }
  if (ONLY.has('real')) await realRows();
} finally {
  await up.close();
}

/** Rows 1 and 2 against a real container on the harness node (see the header). */
async function realRows(): Promise<void> {
  const env = HARNESS;
  if (!env?.NODE_NAME || !env.NODE_IMAGE) throw new Error('BENCH_ONLY=real needs `npm run harness -- up` with the node (KUBETRAIL_NODE not 0)');
  const pod = `kt-bench-${process.pid}`;
  const kc = (args: string[], input?: string): string => {
    const r = spawnSync('kubectl', ['--kubeconfig', env.ADMIN_KUBECONFIG, '-n', 'agents', ...args], { encoding: 'utf8', ...(input ? { input } : {}) });
    if (r.status !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  kc(['create', '-f', '-'], JSON.stringify({
    apiVersion: 'v1', kind: 'Pod', metadata: { name: pod },
    spec: { terminationGracePeriodSeconds: 0, automountServiceAccountToken: false, containers: [{ name: 'app', image: env.NODE_IMAGE, imagePullPolicy: 'Never', command: ['sleep', '3600'] }] },
  }));
  try {
    kc(['wait', '--for=condition=Ready', `pod/${pod}`, '--timeout=90s']);
    Object.assign(execTarget, { path: `/api/v1/namespaces/agents/pods/${pod}/exec`, token: env.ADMIN_TOKEN });
    const api = new URL(env.APISERVER_URL);
    const caPem = readFileSync(env.APISERVER_CA, 'utf8');
    const tokenDir = mkdtempSync(path.join(tmpdir(), 'kubetrail-bench-real-'));
    const tokenFile = path.join(tokenDir, 'token');
    writeFileSync(tokenFile, env.ADMIN_TOKEN, { mode: 0o600 });
    try {
      const gw = await startGateway(api, ['--mask', '--upstream-token-file', tokenFile], caPem);
      const rounds: string[] = [];
      const ratios: number[] = [];
      for (let round = 0; round < 2; round++) {
        const d = await throughput(env.APISERVER_URL, undefined, REAL_BYTES);
        const r = await throughput(gw.url, gw.child.pid, REAL_BYTES);
        ratios.push(r.mibps / d.mibps);
        rounds.push(`direct ${fmt(d.mibps)} / relay ${fmt(r.mibps)} MiB/s (relay CPU ${fmt(r.relayCpuMsPerMiB, 2)} ms/MiB)`);
      }
      await gw.stop();
      console.log(`real container: throughput ${REAL_BYTES / 1048576} MiB stdout (busybox yes|head on the harness node), relay with recording (local log) + masking vs straight to the API server: ${rounds.join('; ')}; ratios ${ratios.map((x) => fmt(x, 2)).join(', ')}`);
      const gw2 = await startGateway(api, ['--mask', '--line-rule', '--upstream-token-file', tokenFile], caPem);
      const ks = await keystrokes(env.APISERVER_URL, gw2.url, REAL_KEYSTROKES);
      await gw2.stop();
      const p = (xs: number[], q: number): number => percentile(xs, q);
      console.log(
        `real container: keystroke echo RTT (${REAL_KEYSTROKES} keys, tty, busybox ash, line editor + masking): direct p50 ${fmt(p(ks.direct, 50), 3)} ms p99 ${fmt(p(ks.direct, 99), 3)} ms; relay p50 ${fmt(p(ks.relay, 50), 3)} ms p99 ${fmt(p(ks.relay, 99), 3)} ms; added p50 ${fmt(p(ks.relay, 50) - p(ks.direct, 50), 3)} ms, added p99 ${fmt(p(ks.relay, 99) - p(ks.direct, 99), 3)} ms`,
      );
    } finally {
      rmSync(tokenDir, { recursive: true, force: true });
    }
  } finally {
    spawnSync('kubectl', ['--kubeconfig', env.ADMIN_KUBECONFIG, '-n', 'agents', 'delete', 'pod', pod, '--wait=false', '--grace-period=0', '--force'], { stdio: 'ignore' });
  }
}
