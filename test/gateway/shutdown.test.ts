/**
 * Requests the gateway refuses because it is shutting down still get their
 * api.request event: a request that arrives on an open keep-alive
 * connection after close() has begun is answered 503 and recorded (with the
 * caller, whose token is in the verification cache), and close() returns only
 * once that event is in the sink.
 */
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { after, before, test } from 'node:test';
import { waitFor } from '../support/wait.ts';
import { createNamespace, GatedSink, serviceAccountWithToken, startTestGateway, uniq } from './support.ts';

const ns = `gw-shutdown-${uniq()}`;
let dropNs: () => Promise<void>;
let token: string;

before(async () => {
  dropNs = await createNamespace(ns);
  token = await serviceAccountWithToken(ns, 'closer');
});
after(async () => {
  await dropNs?.();
});


test('a request refused with 503 because the gateway is shutting down is recorded as an api.request event before close() returns', async (t) => {
  const sink = new GatedSink();
  const g = await startTestGateway({ sink });
  let closing: Promise<void> | undefined;
  let release: () => void = () => undefined;
  let socket: tls.TLSSocket | undefined;
  // Whatever fails below, let a held write finish and the connection go, so close() and the run can end.
  t.after(async () => {
    release();
    socket?.destroy();
    await (closing ?? g.close());
  });
  const user = `system:serviceaccount:${ns}:closer`;
  const auth = `Bearer ${token}`;
  // Caches the token's verification, as a caller's earlier requests would.
  const warm = await g.request({ path: `/api/v1/namespaces/${ns}/configmaps`, headers: { authorization: auth } });
  assert.equal(warm.status, 200, warm.body);

  // One keep-alive connection: a write whose response is held until its event is durable (the gate),
  // so the connection is busy, not idle, when close() begins.
  const sock = (socket = tls.connect({ host: '127.0.0.1', port: g.gw.port, ca: g.caPem }));
  await new Promise<void>((resolve, reject) => sock.once('secureConnect', resolve).once('error', reject));
  let received = '';
  sock.on('data', (c: Buffer) => (received += c.toString('latin1')));
  const ended = new Promise<void>((r) => sock.once('close', () => r()));
  sink.gate = new Promise<void>((r) => (release = r));
  const name = `held-${uniq()}`;
  const body = JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: ns } });
  sock.write(
    `POST /api/v1/namespaces/${ns}/configmaps HTTP/1.1\r\nhost: gateway\r\nauthorization: ${auth}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
  await waitFor(() => sink.waiting.some((d) => d.type === 'api.request'), 'the write to reach its event');

  const closed = (closing = g.close());
  // The next request on the same connection arrives after shutdown began.
  const refusedPath = `/api/v1/namespaces/${ns}/configmaps/${name}`;
  sock.write(`GET ${refusedPath} HTTP/1.1\r\nhost: gateway\r\nauthorization: ${auth}\r\nuser-agent: refused-at-shutdown\r\n\r\n`);
  await waitFor(() => sink.waiting.filter((d) => d.type === 'api.request').length >= 2, 'the refused request to reach its event');
  release();
  const done = await Promise.race([closed.then(() => true), new Promise<false>((r) => setTimeout(() => r(false), 30_000).unref())]);
  assert.ok(done, 'close() did not return within 30 s');
  await ended;

  assert.match(received, /^HTTP\/1\.1 201 /, 'the held write did not complete');
  assert.match(received, /HTTP\/1\.1 503 [^]*gateway is shutting down/, 'the second request was not refused as shutting down');
  const events = sink.inner.ofType('api.request');
  const refused = events.filter((e) => e.body.path === refusedPath);
  assert.equal(refused.length, 1, `expected one event for the refused request, got ${refused.length}`);
  const e = refused[0]!;
  assert.equal(e.body.status, 503);
  assert.equal(e.body.verb, 'get');
  assert.equal(e.body.userAgent, 'refused-at-shutdown');
  assert.equal(e.body.decision?.allowed, false);
  assert.equal(e.body.decision?.message, 'PROXY_ERR_SHUTTING_DOWN');
  assert.equal(e.actor?.username, user);
  assert.equal(e.target?.namespace, ns);
  assert.equal(e.target?.name, name);
  // And the write itself, as always.
  assert.ok(events.some((x) => x.body.verb === 'create' && x.body.status === 201 && x.target?.namespace === ns));
});
