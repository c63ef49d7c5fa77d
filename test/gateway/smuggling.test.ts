/**
 * What the gateway sends upstream is built from scratch. Against a small fake
 * API server that records raw header lines: client Authorization, X-Remote-*,
 * cookies and bearer subprotocols never reach it; impersonation headers in
 * any letter case are refused before any upstream request; groups go as one
 * header line each; upgrades pass through with `head` bytes and the bearer
 * subprotocol stripped.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import https from 'node:https';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, test } from 'node:test';
import { startFakeApiServer, writeGatewayKubeconfig, type FakeApiServer } from '../tools/fake-apiserver.ts';
import { startTestGateway, type TestGateway } from './support.ts';
import { waitFor } from '../support/wait.ts';

let fake: FakeApiServer;
let t: TestGateway;
let upstreamKubeconfig: string;
let fakeDir: string | undefined;
const GOOD = 'good-token';
const OTHER = 'other-token';

before(async () => {
  fake = await startFakeApiServer({ [GOOD]: { username: 'fake-user', groups: ['g1', 'g, with comma'] }, [OTHER]: { username: 'other', groups: [] } });
  const dir = path.join((await import('node:os')).tmpdir(), `kubetrail-fake-${randomBytes(4).toString('hex')}`);
  (await import('node:fs')).mkdirSync(dir, { recursive: true });
  fakeDir = dir;
  const kc = writeGatewayKubeconfig(fake, dir);
  upstreamKubeconfig = kc;
  t = await startTestGateway({ upstreamKubeconfig: kc });
});
after(async () => {
  await t?.close();
  await fake?.close();
  if (fakeDir !== undefined) (await import('node:fs')).rmSync(fakeDir, { recursive: true, force: true });
});

function rawRequest(headers: [string, string][], pathname = '/api/v1/namespaces/x/configmaps'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(`${t.gw.url}${pathname}`, { method: 'GET', ca: t.caPem, agent: false, setHost: true }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
    });
    // setHeader keeps the given letter case on the wire.
    for (const [n, v] of headers) req.setHeader(n, v);
    req.on('error', reject);
    req.end();
  });
}

test('the upstream request carries the gateway credential and impersonation, never the client Authorization, X-Remote-* or cookies', async () => {
  const before = fake.seen.length;
  const r = await rawRequest([
    ['Authorization', `Bearer ${GOOD}`],
    ['X-Remote-User', 'admin'],
    ['X-Remote-Group', 'system:masters'],
    ['X-Remote-Extra-Scopes', 'all'],
    ['Cookie', 'session=stolen'],
    ['Accept', 'application/vnd.kubernetes.protobuf'],
  ]);
  assert.equal(r.status, 200, r.body);
  const seen = fake.seen.slice(before);
  assert.equal(seen.length, 1);
  const h = seen[0]!.headers;
  assert.deepEqual(h['authorization'], [`Bearer ${fake.gatewayToken}`]);
  assert.deepEqual(h['impersonate-user'], ['fake-user']);
  // One header line per group, so a comma inside a group name survives.
  assert.deepEqual(h['impersonate-group'], ['g1', 'g, with comma']);
  assert.equal(h['impersonate-extra-kubetrail.io%2fsession']?.length, 1);
  assert.deepEqual(h['accept'], ['application/vnd.kubernetes.protobuf']);
  for (const name of Object.keys(h)) assert.ok(!name.startsWith('x-remote-') && name !== 'cookie', `${name} must not be forwarded`);
});

const smuggled: { header: string; value: string; status: number }[] = [
  { header: 'Impersonate-User', value: 'admin', status: 403 },
  { header: 'IMPERSONATE-USER', value: 'admin', status: 403 },
  { header: 'impersonate-user', value: 'admin', status: 403 },
  { header: 'iMpErSoNaTe-UsEr', value: 'system:admin', status: 403 },
  { header: 'Impersonate-Group', value: 'system:masters', status: 400 },
  { header: 'IMPERSONATE-GROUP', value: 'system:masters', status: 400 },
  { header: 'Impersonate-Uid', value: 'admin-uid', status: 400 },
  { header: 'Impersonate-Extra-Scopes', value: 'all', status: 400 },
  { header: 'impersonate-EXTRA-acme.com%2Frole', value: 'root', status: 400 },
  { header: 'Impersonate-Whatever', value: 'x', status: 400 },
];
for (const s of smuggled) {
  test(`a client "${s.header}" header is refused with ${s.status} and no upstream request`, async () => {
    const before = fake.seen.length;
    const r = await rawRequest([
      ['Authorization', `Bearer ${GOOD}`],
      [s.header, s.value],
    ]);
    assert.equal(r.status, s.status, r.body);
    assert.equal((JSON.parse(r.body) as { kind: string }).kind, 'Status');
    assert.equal(fake.seen.length, before, 'nothing was forwarded');
  });
}

test('a bearer token hidden in a WebSocket subprotocol of a plain request is refused', async () => {
  const before = fake.seen.length;
  const r = await rawRequest([
    ['Authorization', `Bearer ${OTHER}`],
    ['Sec-WebSocket-Protocol', `base64url.bearer.authorization.k8s.io.${Buffer.from(GOOD).toString('base64url')}`],
  ]);
  assert.equal(r.status, 401);
  assert.equal(fake.seen.length, before);
});

/** Sends a raw upgrade request (plus `extra` bytes in the same write) and returns the socket and what came back. */
function rawUpgrade(headerLines: string[], extra: Buffer, path = '/api/v1/namespaces/x/pods/p/exec?command=sh'): Promise<{ response: string; socket: tls.TLSSocket; rest: () => Buffer }> {
  return new Promise((resolve, reject) => {
    const u = new URL(t.gw.url);
    const socket = tls.connect({ host: u.hostname, port: Number(u.port), ca: t.caPem, servername: 'localhost' }, () => {
      socket.write(Buffer.concat([Buffer.from(`GET ${path} HTTP/1.1\r\nHost: ${u.host}\r\n${headerLines.join('\r\n')}\r\n\r\n`), extra]));
    });
    let buf = Buffer.alloc(0);
    socket.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      const end = buf.indexOf('\r\n\r\n');
      if (end !== -1 && !(socket as unknown as { resolved?: boolean }).resolved) {
        (socket as unknown as { resolved?: boolean }).resolved = true;
        const response = buf.subarray(0, end).toString('latin1');
        resolve({ response, socket, rest: () => buf.subarray(end + 4) });
      }
    });
    socket.on('error', reject);
  });
}

const wsHeaders = (protocols: string): string[] => ['Connection: Upgrade', 'Upgrade: websocket', 'Sec-WebSocket-Version: 13', `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`, `Sec-WebSocket-Protocol: ${protocols}`];

test('an upgrade authenticated only by the bearer subprotocol passes through with the token stripped and head bytes relayed', async () => {
  const before = fake.seen.length;
  const bearer = `base64url.bearer.authorization.k8s.io.${Buffer.from(GOOD).toString('base64url')}`;
  const early = Buffer.from('early-bytes-after-handshake');
  // A WebSocket watch: upgrades other than exec/attach/port-forward (which the recording relay terminates) pass through as bytes.
  const { response, socket, rest } = await rawUpgrade(wsHeaders(`v5.channel.k8s.io, ${bearer}`), early, '/api/v1/namespaces/x/configmaps?watch=true');
  try {
    assert.match(response, /^HTTP\/1\.1 101 /);
    assert.match(response, /Sec-WebSocket-Protocol: v5\.channel\.k8s\.io/i);
    // The fake echoes: the early bytes went upstream as `head` and came back through the pipe.
    await waitFor(() => rest().includes(early), 'head bytes relayed both ways', { timeoutMs: 10_000 });
    socket.write('more');
    await waitFor(() => rest().includes(Buffer.from('more')), 'later bytes relayed both ways', { timeoutMs: 10_000 });
  } finally {
    socket.destroy();
  }
  const up = fake.seen.slice(before);
  assert.equal(up.length, 1);
  const h = up[0]!.headers;
  assert.equal(up[0]!.upgrade, true);
  assert.deepEqual(h['sec-websocket-protocol'], ['v5.channel.k8s.io']);
  assert.deepEqual(h['authorization'], [`Bearer ${fake.gatewayToken}`]);
  assert.deepEqual(h['impersonate-user'], ['fake-user']);
  assert.deepEqual(h['upgrade'], ['websocket']);
});

test('an upgrade whose Authorization and bearer subprotocol disagree is refused with 401 and not forwarded', async () => {
  const before = fake.seen.length;
  const bearer = `base64url.bearer.authorization.k8s.io.${Buffer.from(GOOD).toString('base64url')}`;
  const { response, socket } = await rawUpgrade([...wsHeaders(`v5.channel.k8s.io, ${bearer}`), `Authorization: Bearer ${OTHER}`], Buffer.alloc(0));
  socket.destroy();
  assert.match(response, /^HTTP\/1\.1 401 /);
  assert.equal(fake.seen.length, before);
});

test('an upgrade with a smuggled Impersonate-User is refused and not forwarded', async () => {
  const before = fake.seen.length;
  const { response, socket } = await rawUpgrade([...wsHeaders('v5.channel.k8s.io'), `Authorization: Bearer ${GOOD}`, 'IMPERSONATE-USER: admin'], Buffer.alloc(0));
  socket.destroy();
  assert.match(response, /^HTTP\/1\.1 403 /);
  assert.equal(fake.seen.length, before);
});

test('an upstream that does not answer in time gets the caller a 504 Status, not a hang', async () => {
  const g = await startTestGateway({ upstreamKubeconfig, proxy: { requestTimeoutMs: 300 } });
  try {
    const r = await g.request({ path: '/api/v1/namespaces/hang/configmaps/x', headers: { authorization: `Bearer ${GOOD}` } });
    assert.equal(r.status, 504);
    assert.deepEqual(JSON.parse(r.body), { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'the API server did not answer in time', reason: 'Timeout', code: 504 });
    assert.equal(g.sink.ofType('api.request').find((e) => e.body.path === '/api/v1/namespaces/hang/configmaps/x')?.body.status, 504);
  } finally {
    await g.close();
  }
});

test('TokenReview answers are cached: repeated requests with one token cost one review, a bad token is not re-reviewed at once', async () => {
  const token = `cache-${randomBytes(4).toString('hex')}`;
  const beforeReviews = fake.tokenReviews;
  for (let i = 0; i < 5; i++) assert.equal((await rawRequest([['Authorization', `Bearer ${GOOD}`]])).status, 200);
  // Without a cache this would be 5; the bound allows one expiry of the TTL if the machine stalls.
  assert.ok(fake.tokenReviews - beforeReviews <= 2, `a cached good token is rarely re-reviewed (${fake.tokenReviews - beforeReviews} reviews for 5 requests)`);
  const mid = fake.tokenReviews;
  for (let i = 0; i < 5; i++) assert.equal((await rawRequest([['Authorization', `Bearer ${token}`]])).status, 401);
  assert.ok(fake.tokenReviews - mid >= 1 && fake.tokenReviews - mid <= 2, `an unknown token is reviewed, then its rejection reused (${fake.tokenReviews - mid} reviews for 5 tries)`);
});
