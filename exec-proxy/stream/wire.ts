/**
 * Small wire-level helpers shared by the exec/attach session and the
 * port-forward session: the upstream URL, ws payload limits, close codes,
 * message buffers, and the Failure a client is closed with.
 */
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { RawData, WebSocket } from 'ws';
import { CHANNEL, encodeFrame, failureStatus, type StreamProtocol } from './protocol.ts';
import { CLOSE } from './errors.ts';
import type { StreamContext } from './context.ts';

/** Builds the upstream URL for the subresource. */
export function upstreamUrl(ctx: StreamContext): URL {
  const t = ctx.target;
  const base = new URL(ctx.upstream.url);
  base.protocol = base.protocol === 'http:' ? 'ws:' : 'wss:';
  const prefix = base.pathname.replace(/\/$/, '');
  base.pathname = `${prefix}/api/v1/namespaces/${encodeURIComponent(t.namespace)}/pods/${encodeURIComponent(t.pod)}/${t.subresource}`;
  base.search = t.query.toString();
  return base;
}

/**
 * Answers an upgrade request that is not taken with an HTTP status and a
 * metav1.Status body, which kubectl prints ("Error from server (Reason): message").
 */
export function writeHttpStatus(socket: Duplex, status: number, body: Record<string, unknown>): void {
  const text = JSON.stringify(body);
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`,
  );
}

/** Sends a Failure to the client the way kubectl reads it, then closes normally. */
export function sendFailureAndClose(ws: WebSocket, proto: StreamProtocol, message: string, reason = 'Forbidden', code = 403): void {
  // v4/v5 carry a metav1.Status on channel 3; v1 protocols carry plain text there.
  const payload = proto.version >= 4 ? Buffer.from(JSON.stringify(failureStatus(message, reason, code))) : Buffer.from(message);
  const f = encodeFrame(proto, CHANNEL.STATUS, payload);
  // A paused socket could not read the client's answer to our close frame.
  ws.resume();
  ws.send(f.data, { binary: f.binary }, () => ws.close(CLOSE.NORMAL));
}

/** ws `maxPayload` for a decoded limit: channel byte, and base64 growth for text protocols. */
export function wireLimit(maxFrameBytes: number, proto: Pick<StreamProtocol, 'encoding'>): number {
  return proto.encoding === 'base64' ? Math.ceil(maxFrameBytes / 3) * 4 + 1 : maxFrameBytes + 1;
}

/** A close code that may be sent on the wire (1005/1006/1015 are reserved for local use). */
export function relayableCloseCode(code: number, fallback: number): number {
  if (code === 1005 || code === 1006 || code === 1015) return fallback;
  if ((code >= 1000 && code <= 1014) || (code >= 3000 && code <= 4999)) return code;
  return fallback;
}

/** ws delivers Buffer, ArrayBuffer or Buffer[] depending on binaryType. */
export function toBuffer(raw: RawData): Buffer {
  if (Buffer.isBuffer(raw)) return raw;
  if (Array.isArray(raw)) return Buffer.concat(raw);
  return Buffer.from(raw);
}

/** Header values as ws/http accept them. */
export function flattenHeaders(h: Record<string, string | string[]>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(h)) out[k] = v;
  return out;
}

/** Most of a refusal's or an exit Status's text kept: a Status is small, a larger body is not one worth relaying. */
export const MAX_STATUS_BYTES = 64 * 1024;

/**
 * Calls `done` with the first MAX_STATUS_BYTES of a response that refused an
 * upgrade (the rest is read and dropped, so the socket drains), or `failed`
 * when the response breaks off.
 */
export function onRefusalBody(res: import('node:http').IncomingMessage, done: (body: Buffer) => void, failed: () => void): void {
  const chunks: Buffer[] = [];
  let len = 0;
  res.on('data', (c: Buffer) => {
    if (len < MAX_STATUS_BYTES) chunks.push(c);
    len += c.length;
  });
  res.on('end', () => done(Buffer.concat(chunks)));
  res.on('error', failed);
}
