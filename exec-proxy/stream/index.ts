/**
 * The stream relay's entry point: `handleStreamUpgrade`, called by the
 * gateway for exec, attach and port-forward upgrades once it has
 * authenticated the caller.
 *
 * Legacy SPDY exec/attach (kubectl ≤ 1.29, or KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false)
 * is relayed and recorded by spdy-exec.ts. Legacy SPDY port-forward (and any
 * other non-WebSocket upgrade) is refused, and the refusal recorded: a 400
 * whose body is a metav1.Status, which kubectl prints ("Error from server
 * (BadRequest): ..."), telling the user the setting to change. Every WebSocket refusal (policy, upstream, recording) is
 * sent *inside* an accepted WebSocket as a channel-3 Failure Status: kubectl
 * retries over SPDY after any non-101 reply, so a bare 403 on the upgrade
 * would end in the SPDY message instead of the real reason.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { chooseProtocol, failureStatus, isNonTokenProtocol, offeredProtocols, type StreamProtocol } from './protocol.ts';
import { ExecSession } from './session.ts';
import { sendFailureAndClose, wireLimit, writeHttpStatus } from './wire.ts';
import { SpdyExecSession } from './spdy-exec.ts';
import { SessionRecorder } from './recorder.ts';
import { execOptions } from './exec-options.ts';
import type { SessionBody } from '../../core/events/model.ts';
import { PortForwardSession } from './portforward.ts';
import { StreamError } from './errors.ts';
import type { StreamContext } from './context.ts';

export type { StreamContext, StreamSubresource } from './context.ts';
export { StreamError, type StreamErrorCode } from './errors.ts';

/** What kubectl users are told when they port-forward over legacy SPDY (or upgrade to anything but WebSocket or SPDY/3.1). */
const SPDY_REFUSAL =
  'kubetrail records port-forward over WebSocket only and does not accept the legacy SPDY port-forward protocol. ' +
  'Use kubectl 1.31 or newer (WebSocket is the default), or with kubectl 1.30 set KUBECTL_PORT_FORWARD_WEBSOCKETS=true; do not set it to false.';

/** Sessions in progress, so shutdown can wait for their recordings. */
const live = new Set<Promise<void>>();

/** Resolves when every session in progress has ended and been recorded. */
export async function drainSessions(): Promise<void> {
  while (live.size > 0) await Promise.all([...live]);
}

function writeHttpError(socket: Duplex, status: number, body: Record<string, unknown>): void {
  const text = JSON.stringify(body);
  const reason = status === 400 ? 'Bad Request' : status === 403 ? 'Forbidden' : 'Error';
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`,
  );
}

function isWebSocketUpgrade(req: IncomingMessage): boolean {
  return (req.headers.upgrade ?? '').toLowerCase() === 'websocket';
}

function isSpdyUpgrade(req: IncomingMessage): boolean {
  return (req.headers.upgrade ?? '').toLowerCase() === 'spdy/3.1';
}

function track(done: Promise<void>): void {
  live.add(done);
  void done.finally(() => live.delete(done));
}

/** Refuses a legacy upgrade we do not relay, and puts the refusal on the record (session.start and a denied session.end). */
async function refuseLegacy(ctx: StreamContext, req: IncomingMessage, socket: Duplex): Promise<void> {
  ctx.log.info({ upgrade: req.headers.upgrade ?? '' }, 'legacy SPDY stream refused');
  writeHttpStatus(socket, 400, failureStatus(SPDY_REFUSAL, 'BadRequest', 400));
  const t = ctx.target;
  const l = ctx.limits;
  const rec = new SessionRecorder(
    ctx.sink,
    { actor: ctx.identity, target: { group: '', version: 'v1', resource: 'pods', subresource: t.subresource, namespace: t.namespace, name: t.pod }, session: ctx.sessionId },
    { chunkBytes: l.chunkBytes, flushMs: l.recordFlushMs, maxRecordedBytes: l.maxRecordedBytes, maxInflightBytes: l.maxInflightRecordBytes, compression: l.recordCompression },
  );
  const opts = execOptions(t.query);
  const body: SessionBody = {
    kind: t.subresource,
    pod: t.pod,
    namespace: t.namespace,
    ...(t.subresource === 'portforward' ? { ports: t.query.getAll('ports').flatMap((p) => p.split(',')).map(Number).filter((n) => Number.isInteger(n)) } : {}),
    ...(t.subresource === 'exec' ? { command: opts.command } : {}),
    ...(opts.container ? { container: opts.container } : {}),
    protocol: req.headers.upgrade ?? '',
  };
  try {
    await rec.start(body);
    await rec.end({ ...body, outcome: 'denied', error: 'STREAM_ERR_SPDY_UNSUPPORTED', bytesIn: 0, bytesOut: 0, durationMs: rec.elapsed() });
  } catch (err) {
    ctx.log.error({ err: { code: (err as StreamError).code } }, 'refused legacy stream not recorded');
  }
}

/**
 * Takes over an upgrade request for exec/attach/portforward: accepts the
 * client's WebSocket, opens the upstream one, relays, records and enforces
 * policy until the session ends. Never throws; every failure ends the session
 * with a message the client can show, and a session.end event.
 */
export function handleStreamUpgrade(ctx: StreamContext, req: IncomingMessage, socket: Duplex, head: Buffer): void {
  socket.on('error', () => {
    /* a client reset before or during the handshake: nothing to answer */
  });
  const sub = ctx.target.subresource;
  if (!isWebSocketUpgrade(req)) {
    if (isSpdyUpgrade(req) && sub !== 'portforward') track(new SpdyExecSession(ctx, req, socket, head).run());
    else track(refuseLegacy(ctx, req, socket));
    return;
  }
  const offered = offeredProtocols(req.headers['sec-websocket-protocol']);
  const proto = chooseProtocol(sub, offered);
  if (!proto) {
    // Nothing we can speak: this is the one refusal that cannot travel inside the WebSocket.
    const e = new StreamError('STREAM_ERR_NO_SUBPROTOCOL', `no supported stream protocol offered; kubetrail accepts: v5.channel.k8s.io, v4.channel.k8s.io, channel.k8s.io, base64.channel.k8s.io, SPDY/3.1+portforward.k8s.io`);
    writeHttpStatus(socket, e.status, failureStatus(e.message, 'BadRequest', e.status));
    return;
  }
  // ws rejects '/' in a subprotocol ("Invalid Sec-WebSocket-Protocol header"), so
  // we hide the header from it and its server echoes the chosen name in the 101.
  if (isNonTokenProtocol(proto.name)) delete req.headers['sec-websocket-protocol'];
  upgradeServer(wireLimit(ctx.limits.maxFrameBytes, proto), proto.name).handleUpgrade(req, socket, head, (ws) => track(start(ctx, ws, proto)));
}

/** Handshake servers by (maxPayload, subprotocol); a handful exist (one per protocol name and frame limit). */
const upgradeServers = new Map<string, WebSocketServer>();
const MAX_UPGRADE_SERVERS = 64;

/**
 * The ws server that completes handshakes for one frame limit and chosen
 * subprotocol. Shared by every session with those (it keeps no per-client
 * state: clientTracking is off), instead of one server object, options and
 * closures per session.
 */
function upgradeServer(maxPayload: number, protocol: string): WebSocketServer {
  const key = `${maxPayload}|${protocol}`;
  let wss = upgradeServers.get(key);
  if (wss === undefined) {
    wss = new WebSocketServer({ noServer: true, clientTracking: false, perMessageDeflate: false, maxPayload, handleProtocols: () => (protocol === '' ? false : protocol) });
    if (isNonTokenProtocol(protocol)) wss.on('headers', (headers) => headers.push(`Sec-WebSocket-Protocol: ${protocol}`));
    if (upgradeServers.size >= MAX_UPGRADE_SERVERS) upgradeServers.clear();
    upgradeServers.set(key, wss);
  }
  return wss;
}

async function start(ctx: StreamContext, ws: WebSocket, proto: StreamProtocol): Promise<void> {
  try {
    if (proto.family === 'remotecommand') {
      const s = new ExecSession(ctx, ws, proto);
      await s.run();
      await s.done;
    } else {
      const s = new PortForwardSession(ctx, ws, proto);
      await s.run();
      await s.done;
    }
  } catch (err) {
    // Construction failed (e.g. a bad ?ports=): tell the client inside the WebSocket.
    const e = err instanceof StreamError ? err : new StreamError('STREAM_ERR_BAD_REQUEST', 'bad stream request', { cause: err });
    ctx.log.warn({ code: e.code }, 'stream session could not start');
    sendFailureAndClose(ws, proto.family === 'remotecommand' ? proto : { ...proto, version: 4 }, `kubetrail: ${e.message}`, 'BadRequest', 400);
  }
}
