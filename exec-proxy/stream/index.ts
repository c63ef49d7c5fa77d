/**
 * The stream relay's entry point: `handleStreamUpgrade`, called by the
 * gateway for exec, attach and port-forward upgrades once it has
 * authenticated the caller.
 *
 * Legacy SPDY (kubectl ≤ 1.29, or KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false) is
 * refused: a SPDY upgrade gets a 400 whose body is a metav1.Status, which
 * kubectl prints ("Error from server (BadRequest): ..."), telling the user the
 * setting to change. Every WebSocket refusal (policy, upstream, recording) is
 * sent *inside* an accepted WebSocket as a channel-3 Failure Status: kubectl
 * retries over SPDY after any non-101 reply, so a bare 403 on the upgrade
 * would end in the SPDY message instead of the real reason.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { chooseProtocol, failureStatus, isNonTokenProtocol, offeredProtocols, type StreamProtocol } from './protocol.ts';
import { ExecSession } from './session.ts';
import { sendFailureAndClose, wireLimit } from './wire.ts';
import { PortForwardSession } from './portforward.ts';
import { StreamError } from './errors.ts';
import type { StreamContext } from './context.ts';

export type { StreamContext, StreamSubresource } from './context.ts';
export { StreamError, type StreamErrorCode } from './errors.ts';

/** What kubectl users are told when they arrive over SPDY. */
export const SPDY_REFUSAL =
  'kubetrail records exec/attach/port-forward over WebSocket only and does not accept the legacy SPDY protocol. ' +
  'Use kubectl 1.31 or newer (WebSocket is the default), or with kubectl 1.29-1.30 set KUBECTL_REMOTE_COMMAND_WEBSOCKETS=true ' +
  '(and KUBECTL_PORT_FORWARD_WEBSOCKETS=true for port-forward); do not set either to false.';

/** Sessions in progress, so shutdown can wait for their recordings. */
const live = new Set<Promise<void>>();

/** Resolves when every session in progress has ended and been recorded. */
export async function drainSessions(): Promise<void> {
  while (live.size > 0) await Promise.all([...live]);
}

/** Number of sessions in progress. */
export function liveSessionCount(): number {
  return live.size;
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
  if (!isWebSocketUpgrade(req)) {
    ctx.log.info({ upgrade: req.headers.upgrade ?? '' }, 'legacy SPDY stream refused');
    writeHttpError(socket, 400, failureStatus(SPDY_REFUSAL, 'BadRequest', 400));
    return;
  }
  const sub = ctx.target.subresource;
  const offered = offeredProtocols(req.headers['sec-websocket-protocol']);
  const proto = chooseProtocol(sub, offered);
  if (!proto) {
    // Nothing we can speak: this is the one refusal that cannot travel inside the WebSocket.
    const e = new StreamError('STREAM_ERR_NO_SUBPROTOCOL', `no supported stream protocol offered; kubetrail accepts: v5.channel.k8s.io, v4.channel.k8s.io, channel.k8s.io, base64.channel.k8s.io, SPDY/3.1+portforward.k8s.io`);
    writeHttpError(socket, e.status, failureStatus(e.message, 'BadRequest', e.status));
    return;
  }
  // ws rejects '/' in a subprotocol ("Invalid Sec-WebSocket-Protocol header"), so
  // we hide the header from it and its server echoes the chosen name in the 101.
  if (isNonTokenProtocol(proto.name)) delete req.headers['sec-websocket-protocol'];
  upgradeServer(wireLimit(ctx.limits.maxFrameBytes, proto), proto.name).handleUpgrade(req, socket, head, (ws) => {
    const done = start(ctx, ws, proto);
    live.add(done);
    void done.finally(() => live.delete(done));
  });
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
