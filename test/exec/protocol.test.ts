/**
 * The relay against WebSocket clients that are not kubectl: every exec
 * subprotocol, direct v4 port-forward, and bad input — unknown channels,
 * oversized and text frames, abrupt disconnects on either side, a sink that
 * cannot record. In each case: no crash, the session closed, and recorded as such.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { WebSocket } from 'ws';
import { SinkError } from '../../core/sinks/errors.ts';
import { recorded, sessionEnd, startRig, type Rig } from './helpers.ts';

function open(rig: Rig, pathAndQuery: string, protocols: string[]): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`wss://${rig.gw.url.slice('https://'.length)}${pathAndQuery}`, protocols, { rejectUnauthorized: false, headers: { authorization: 'Bearer client-token' } });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

interface Collected {
  frames: { ch: number; data: Buffer }[];
  close: { code: number; reason: string };
}

function collect(ws: WebSocket, base64: boolean): Promise<Collected> {
  const frames: Collected['frames'] = [];
  ws.on('message', (d: Buffer, isBinary) => {
    if (base64) {
      assert.equal(isBinary, false);
      frames.push({ ch: (d[0] as number) - 48, data: Buffer.from(d.subarray(1).toString(), 'base64') });
    } else frames.push({ ch: d[0] as number, data: d.subarray(1) });
  });
  return new Promise((resolve) => ws.once('close', (code, reason) => resolve({ frames, close: { code, reason: reason.toString() } })));
}

const text = (c: Collected, ch: number): string => Buffer.concat(c.frames.filter((f) => f.ch === ch).map((f) => f.data)).toString();

test('every exec subprotocol relays output and reports the exit the way its version does', async (t) => {
  const rig = await startRig();
  t.after(() => rig.close());
  const q = '/api/v1/namespaces/agents/pods/web-1/exec?command=sh&command=-c&command=echo%20hi%3B%20exit%205&stdout=true&stderr=true';
  const cases = [
    { proto: 'v5.channel.k8s.io', b64: false, status: /"reason":"NonZeroExitCode".*"message":"5"/ },
    { proto: 'v4.channel.k8s.io', b64: false, status: /"reason":"NonZeroExitCode".*"message":"5"/ },
    { proto: 'v4.base64.channel.k8s.io', b64: true, status: /"reason":"NonZeroExitCode"/ },
    { proto: 'channel.k8s.io', b64: false, status: /non-zero exit code/ },
    { proto: 'base64.channel.k8s.io', b64: true, status: /non-zero exit code/ },
  ];
  for (const c of cases) {
    const ws = await open(rig, q, [c.proto]);
    assert.equal(ws.protocol, c.proto);
    const got = await collect(ws, c.b64);
    assert.equal(text(got, 1), 'hi\n', c.proto);
    assert.match(text(got, 3), c.status, c.proto);
    assert.equal(got.close.code, 1000, c.proto);
    const end = await sessionEnd(rig.sink, rig.gw.sessions.at(-1) as string);
    assert.equal(end.subprotocol, c.proto);
    if (c.proto.startsWith('v')) assert.equal(end.exitCode, 5, c.proto);
    assert.equal(rig.up.requests.at(-1)?.protocol, c.proto, 'the upstream was offered the same protocol');
  }
});

test('the first offered protocol the relay supports is chosen; none supported is a 400', async (t) => {
  const rig = await startRig();
  t.after(() => rig.close());
  const q = '/api/v1/namespaces/agents/pods/web-1/exec?command=true&stdout=true';
  const ws = await open(rig, q, ['v3.channel.k8s.io', 'v4.channel.k8s.io', 'v5.channel.k8s.io']);
  assert.equal(ws.protocol, 'v4.channel.k8s.io');
  await collect(ws, false);
  await assert.rejects(open(rig, q, ['v2.channel.k8s.io']), /Unexpected server response: 400/);
});

test('direct v4 port-forward (?ports=) relays bytes on channel 2i and records ports and counts only', async (t) => {
  const rig = await startRig();
  t.after(() => rig.close());
  const echo = createServer((s) => s.pipe(s));
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
  t.after(() => echo.close());
  const port = (echo.address() as AddressInfo).port;
  const ws = await open(rig, `/api/v1/namespaces/agents/pods/web-1/portforward?ports=${port}`, ['v4.channel.k8s.io']);
  const got: Buffer[] = [];
  const first: number[] = [];
  const done = new Promise<void>((resolve) =>
    ws.on('message', (d: Buffer) => {
      if (d.length === 3 && first.length < 2) {
        first.push(d.readUInt16LE(1));
        return;
      }
      if (d[0] === 0) got.push(d.subarray(1));
      if (Buffer.concat(got).toString() === 'ping-pong') resolve();
    }),
  );
  ws.send(Buffer.concat([Buffer.from([0]), Buffer.from('ping-pong')]));
  await done;
  assert.deepEqual(first, [port, port], 'each channel starts with the port, little-endian');
  ws.close();
  const end = await sessionEnd(rig.sink, rig.gw.sessions.at(-1) as string);
  assert.deepEqual(end.ports, [port]);
  assert.ok((end.bytesIn ?? 0) >= 10);
  assert.ok(!rig.sink.events.some((e) => e.type === 'session.data'));
});

test('bad client input closes the session with a stable code, records it, and the relay keeps serving', async (t) => {
  const rig = await startRig({ gateway: { limits: { maxFrameBytes: 1024 } } });
  t.after(() => rig.close());
  const q = '/api/v1/namespaces/agents/pods/web-1/exec?command=cat&stdin=true&stdout=true';
  const cases = [
    { name: 'unknown channel id', send: (ws: WebSocket) => ws.send(Buffer.from([9, 1, 2])), close: 1002, error: 'STREAM_ERR_UNKNOWN_CHANNEL' },
    { name: 'oversized frame', send: (ws: WebSocket) => ws.send(Buffer.alloc(4096, 0)), close: 1009, error: 'STREAM_ERR_FRAME_TOO_LARGE' },
    { name: 'malformed close signal', send: (ws: WebSocket) => ws.send(Buffer.from([255, 0, 0])), close: 1002, error: 'STREAM_ERR_BAD_CLOSE_SIGNAL' },
  ];
  for (const c of cases) {
    const ws = await open(rig, q, ['v5.channel.k8s.io']);
    const got = collect(ws, false);
    // wait for the upstream's first frame so the session is fully open
    await new Promise((r) => ws.once('message', r));
    c.send(ws);
    const { close } = await got;
    assert.equal(close.code, c.close, c.name);
    const end = await sessionEnd(rig.sink, rig.gw.sessions.at(-1) as string);
    assert.notEqual(end.outcome, 'completed', c.name);
    if (c.error) assert.equal(end.error, c.error, c.name);
  }
  // still serving
  const ws = await open(rig, '/api/v1/namespaces/agents/pods/web-1/exec?command=echo&command=ok&stdout=true', ['v5.channel.k8s.io']);
  assert.equal(text(await collect(ws, false), 1), 'ok\n');
});

test('a text message on a binary protocol is stdin like a binary one, and is recorded (the Python client sends write_stdin as text)', async (t) => {
  const rig = await startRig();
  t.after(() => rig.close());
  const q = '/api/v1/namespaces/agents/pods/web-1/exec?command=sh&command=-c&command=read%20x%3B%20echo%20got-%24x&stdin=true&stdout=true';
  for (const proto of ['v4.channel.k8s.io', 'v5.channel.k8s.io']) {
    const ws = await open(rig, q, [proto]);
    const got = collect(ws, false);
    await new Promise((r) => ws.once('message', r));
    ws.send('\x00hello\n');
    const c = await got;
    assert.equal(text(c, 1), 'got-hello\n', proto);
    const id = rig.gw.sessions.at(-1) as string;
    const end = await sessionEnd(rig.sink, id);
    assert.equal(end.outcome, 'completed', proto);
    assert.equal(recorded(rig.sink, id, 'stdin').toString(), 'hello\n', `${proto}: stdin recorded`);
  }
});

test('an abrupt client disconnect ends the upstream command and is recorded as client-closed', async (t) => {
  const rig = await startRig();
  t.after(() => rig.close());
  const ws = await open(rig, '/api/v1/namespaces/agents/pods/web-1/exec?command=sleep&command=30&stdout=true', ['v5.channel.k8s.io']);
  await new Promise((r) => ws.once('message', r));
  const upstreamGone = new Promise<void>((resolve) => {
    const s = [...rig.up.sockets][0];
    assert.ok(s);
    s.once('close', () => resolve());
  });
  ws.terminate();
  await upstreamGone;
  const end = await sessionEnd(rig.sink, rig.gw.sessions.at(-1) as string);
  assert.equal(end.outcome, 'client-closed');
});

test('an abrupt upstream disconnect closes the client with 1011 and is recorded as upstream-closed', async (t) => {
  const rig = await startRig();
  t.after(() => rig.close());
  const ws = await open(rig, '/api/v1/namespaces/agents/pods/web-1/exec?command=sleep&command=30&stdout=true', ['v5.channel.k8s.io']);
  await new Promise((r) => ws.once('message', r));
  const got = collect(ws, false);
  for (const s of rig.up.sockets) s.terminate();
  const { close } = await got;
  assert.equal(close.code, 1011);
  const end = await sessionEnd(rig.sink, rig.gw.sessions.at(-1) as string);
  assert.equal(end.outcome, 'upstream-closed');
});

test('a session that cannot be recorded is not opened (fail closed), and the client is told why', async (t) => {
  const rig = await startRig();
  t.after(() => rig.close());
  rig.sink.failWith = new SinkError('SINK_ERR_SPOOL_FULL', 'spool full');
  const ws = await open(rig, '/api/v1/namespaces/agents/pods/web-1/exec?command=echo&command=x&stdout=true', ['v5.channel.k8s.io']);
  const got = await collect(ws, false);
  assert.match(text(got, 3), /cannot be recorded/);
  assert.equal(text(got, 1), '');
  assert.equal(rig.up.requests.length, 0, 'the upstream was never contacted');
});
