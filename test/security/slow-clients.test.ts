/**
 * Attack class: slow and greedy clients (issue 13 item 7). A client that
 * dribbles its headers, never sends a request, or never finishes the TLS
 * handshake is closed after the header timeout; connections past the
 * listener cap or a source's cap are closed at accept; and a watch or an exec
 * session that outlives the header timeout is not cut. Against the gateway in
 * front of the real API server (and a fake kubelet running real processes).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, test } from 'node:test';
import { Registry } from 'prom-client';
import { harness, kubectl } from '../support/env.ts';
import { createNamespace, serviceAccountWithToken, startTestGateway, uniq, type TestGateway } from '../gateway/support.ts';
import { fakeNodeWithPod } from '../exec/helpers.ts';

const ns = `slow-${uniq()}`;
let token: string;
let dropNamespace: () => Promise<void>;

before(async () => {
  dropNamespace = await createNamespace(ns);
  token = await serviceAccountWithToken(ns, 'slow');
});
after(async () => {
  await dropNamespace?.();
});

/** Waits until `cond` holds; fails (naming `what`) if it does not within a generous bound. Never a timing assertion: the bound only stops a hang. */
async function waitFor(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`not seen: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function metric(registry: Registry, name: string, labels: Record<string, string>): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
  const v = m?.values.find((x) => Object.entries(labels).every(([k, l]) => (x.labels as Record<string, unknown>)[k] === l));
  return v?.value ?? 0;
}

/** A client socket and what became of it. */
interface Probe {
  socket: tls.TLSSocket | net.Socket;
  secured: boolean;
  closed: boolean;
  received: string;
}

function tlsProbe(g: TestGateway, opts: { localAddress?: string; onSecure?: (s: tls.TLSSocket) => void } = {}): Probe {
  const u = new URL(g.gw.url);
  const p: Probe = { socket: undefined as unknown as tls.TLSSocket, secured: false, closed: false, received: '' };
  const s = tls.connect({ host: u.hostname, port: Number(u.port), ca: g.caPem, servername: 'localhost', ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) }, () => {
    p.secured = true;
    opts.onSecure?.(s);
  });
  s.on('data', (c: Buffer) => void (p.received += c.toString('latin1')));
  s.on('error', () => undefined);
  s.on('close', () => void (p.closed = true));
  p.socket = s;
  return p;
}

/** A slowloris: the TLS handshake, then one header byte every 50 ms, never the end of the headers. */
function slowloris(g: TestGateway): Probe & { stop(): void } {
  let timer: NodeJS.Timeout | undefined;
  const p = tlsProbe(g, {
    onSecure: (s) => {
      s.write('GET /api/v1/namespaces HTTP/1.1\r\nHost: x\r\nX-Slow: ');
      timer = setInterval(() => s.writable && s.write('a'), 50);
    },
  });
  p.socket.on('close', () => clearInterval(timer));
  return Object.assign(p, { stop: () => (clearInterval(timer), p.socket.destroy()) });
}

test('a client that dribbles its headers, or sends none after the handshake, gets 408 and is closed after the header timeout', async () => {
  const registry = new Registry();
  const g = await startTestGateway({ registry, proxy: { connections: { headersTimeoutMs: 400 } } });
  const probes: Probe[] = [];
  try {
    const slow = slowloris(g);
    const idle = tlsProbe(g);
    probes.push(slow, idle);
    await waitFor(() => slow.closed && idle.closed, 'both connections closed by the gateway');
    assert.match(slow.received, /^HTTP\/1\.1 408 /);
    assert.match(idle.received, /^HTTP\/1\.1 408 /);
    assert.equal(await metric(registry, 'kubetrail_gateway_client_timeouts_total', { phase: 'headers' }), 2);
  } finally {
    for (const p of probes) p.socket.destroy();
    await g.close();
  }
});

test('a connection that never completes the TLS handshake is closed after the header timeout', async () => {
  const registry = new Registry();
  const g = await startTestGateway({ registry, proxy: { connections: { headersTimeoutMs: 400 } } });
  let s: net.Socket | undefined;
  try {
    const u = new URL(g.gw.url);
    let closed = false;
    s = net.connect(Number(u.port), u.hostname);
    s.on('error', () => undefined);
    s.on('close', () => void (closed = true));
    // Half a ClientHello: a handshake that never completes.
    s.write(Buffer.from('160301', 'hex'));
    await waitFor(() => closed, 'the half-open TLS connection closed');
    assert.equal(await metric(registry, 'kubetrail_gateway_client_timeouts_total', { phase: 'handshake' }), 1);
  } finally {
    s?.destroy();
    await g.close();
  }
});

test('the listener cap closes connections past the limit at accept, and a slot frees when one closes', async () => {
  const registry = new Registry();
  const g = await startTestGateway({ registry, proxy: { connections: { headersTimeoutMs: 120_000, maxConnections: 3, maxConnectionsPerSource: 100 } } });
  const probes: Probe[] = [];
  try {
    for (let i = 0; i < 3; i++) probes.push(tlsProbe(g));
    await waitFor(() => probes.every((p) => p.secured), 'three connections accepted');
    const extra = tlsProbe(g);
    probes.push(extra);
    await waitFor(() => extra.closed, 'the fourth connection closed');
    assert.equal(extra.secured, false, 'no TLS session for a connection past the cap');
    assert.equal(await metric(registry, 'kubetrail_gateway_connections_refused_total', { reason: 'listener' }), 1);
    assert.equal(await metric(registry, 'kubetrail_gateway_open_connections', {}), 3);
    probes[0]!.socket.destroy();
    // The server sees the close asynchronously: retry until a new connection is accepted.
    let next: Probe | undefined;
    await waitFor(() => {
      if (next?.secured) return true;
      if (next === undefined || next.closed) probes.push((next = tlsProbe(g)));
      return false;
    }, 'a new connection accepted once one closed');
  } finally {
    for (const p of probes) p.socket.destroy();
    await g.close();
  }
});

test('a source over its own cap is refused while other sources still connect', async () => {
  const registry = new Registry();
  const g = await startTestGateway({ registry, proxy: { connections: { headersTimeoutMs: 120_000, maxConnections: 100, maxConnectionsPerSource: 2 } } });
  const probes: Probe[] = [];
  try {
    for (let i = 0; i < 2; i++) probes.push(tlsProbe(g, { localAddress: '127.0.0.1' }));
    await waitFor(() => probes.every((p) => p.secured), 'two connections from 127.0.0.1 accepted');
    const third = tlsProbe(g, { localAddress: '127.0.0.1' });
    const other = tlsProbe(g, { localAddress: '127.0.0.2' });
    probes.push(third, other);
    await waitFor(() => third.closed && other.secured, 'the third from 127.0.0.1 refused, 127.0.0.2 accepted');
    assert.equal(third.secured, false);
    assert.equal(await metric(registry, 'kubetrail_gateway_connections_refused_total', { reason: 'source' }), 1);
  } finally {
    for (const p of probes) p.socket.destroy();
    await g.close();
  }
});

test('a watch and an exec session that outlive the header timeout are not cut', async (t) => {
  const g = await startTestGateway({ proxy: { connections: { headersTimeoutMs: 300 } } });
  const probes: Probe[] = [];
  t.after(async () => {
    for (const p of probes) p.socket.destroy();
    await g.close();
  });
  const { pod } = await fakeNodeWithPod(t, ns);
  const dir = mkdtempSync(path.join(tmpdir(), 'kt-slow-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const flag = path.join(dir, 'go');

  // A watch through the gateway, and an exec (the fake kubelet runs it here) that waits for the flag file.
  const watch = tlsProbe(g, {
    onSecure: (s) => s.write(`GET /api/v1/namespaces/${ns}/configmaps?watch=true HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n\r\n`),
  });
  const exec = kubectl(g.kubeconfigFor(token, ns), ['exec', pod, '--', 'sh', '-c', `while [ ! -e ${flag} ]; do sleep 0.05; done; echo done`]);
  probes.push(watch);
  await waitFor(() => /^HTTP\/1\.1 200 /.test(watch.received), 'the watch started');
  await waitFor(() => g.sink.ofType('session.start').some((e) => e.target?.name === pod), 'the exec session started');

  // A slowloris opened now is closed by the header timeout: from then on, both have outlived it.
  const slow = slowloris(g);
  probes.push(slow);
  await waitFor(() => slow.closed, 'the slowloris closed');

  const name = `after-${uniq()}`;
  const r = await kubectl(harness().ADMIN_KUBECONFIG, ['-n', ns, 'create', 'configmap', name]);
  assert.equal(r.status, 0, r.stderr);
  await waitFor(() => watch.received.includes(name) || watch.closed, 'the watch delivered the new object');
  assert.ok(watch.received.includes(name), 'the watch was cut');
  assert.equal(watch.closed, false);
  watch.socket.destroy();

  writeFileSync(flag, '');
  const done = await exec;
  assert.ok(existsSync(flag));
  assert.equal(done.status, 0, done.stderr);
  assert.equal(done.stdout, 'done\n');
});

test('a write whose body stalls is answered 400 and closed after the request idle timeout, and never forwarded', async () => {
  const g = await startTestGateway({ proxy: { requestTimeoutMs: 400, connections: { headersTimeoutMs: 120_000 } } });
  const probes: Probe[] = [];
  try {
    const name = `stalled-${uniq()}`;
    const body = JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name } });
    // Headers and half the body, then nothing.
    const p = tlsProbe(g, {
      onSecure: (s) =>
        s.write(
          `POST /api/v1/namespaces/${ns}/configmaps HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 10)}`,
        ),
    });
    probes.push(p);
    await waitFor(() => p.closed, 'the stalled write closed');
    assert.match(p.received, /^HTTP\/1\.1 400 /);
    const r = await kubectl(harness().ADMIN_KUBECONFIG, ['-n', ns, 'get', 'configmap', name, '--ignore-not-found', '-o', 'name']);
    assert.equal(r.stdout.trim(), '', 'not created');
  } finally {
    for (const p of probes) p.socket.destroy();
    await g.close();
  }
});
