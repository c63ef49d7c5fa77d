/**
 * Transparent upgrade passthrough (WebSocket and SPDY/3.1) for
 * exec/attach/port-forward and any other upgrade, until the recording stream
 * relay takes those over: the handshake is rebuilt from scratch (allow-listed
 * headers, `Upgrade`/`Connection`, the remaining subprotocols on one line so
 * the API server still sees `v5.channel.k8s.io` first, the gateway's
 * credentials and impersonation), the API server's 101 is relayed verbatim,
 * and both sockets are piped, including the bytes that arrived with each
 * handshake (`head`). A non-101 answer is relayed as a normal HTTP response.
 */
import https from 'node:https';
import type { IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import type { Duplex } from 'node:stream';
import { forwardedHeaders } from './relay.ts';
import type { UpstreamTarget } from './upstream.ts';
import { forwardRequestOptions } from './upstream.ts';

/** What the passthrough observed, for the audit record. */
export interface UpgradeResult {
  status: number;
  bytesIn: number;
  bytesOut: number;
  auditId: string | undefined;
  error?: unknown;
}

/** Arguments of {@link passThroughUpgrade}. */
export interface PassThroughArgs {
  upstream: UpstreamTarget;
  req: IncomingMessage;
  /** Path and query to forward: the canonical target the gateway parsed, never `req.url`. */
  path: string;
  socket: Duplex;
  head: Buffer;
  /** Gateway credentials + impersonation (from buildUpstreamHeaders). */
  identityHeaders: OutgoingHttpHeaders;
  /** Offered subprotocols with any bearer-token entry removed; undefined when none were offered. */
  subprotocols: string[] | undefined;
  /** Registers a stopper called on gateway shutdown (closes both sockets); returns its unregister function. */
  track?: (stop: () => void) => () => void;
}

function rawResponseHead(res: IncomingMessage): string {
  let head = `HTTP/1.1 ${res.statusCode ?? 502} ${res.statusMessage ?? ''}\r\n`;
  const raw = res.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) head += `${raw[i]}: ${raw[i + 1]}\r\n`;
  return `${head}\r\n`;
}

/** Relays one upgrade; resolves when both sides are closed (never rejects). */
export function passThroughUpgrade(a: PassThroughArgs): Promise<UpgradeResult> {
  return new Promise<UpgradeResult>((resolve) => {
    const { req, socket, upstream } = a;
    const result: UpgradeResult = { status: 0, bytesIn: a.head.length, bytesOut: 0, auditId: undefined };
    let settled = false;
    let upstreamSocket: Duplex | undefined;
    const untrack = a.track?.(() => {
      upstreamSocket?.destroy();
      socket.destroy();
    });
    const done = (error?: unknown): void => {
      if (settled) return;
      settled = true;
      untrack?.();
      if (error !== undefined) result.error = error;
      resolve(result);
    };
    const headers = forwardedHeaders(req, a.identityHeaders);
    headers['connection'] = 'Upgrade';
    headers['upgrade'] = req.headers.upgrade ?? '';
    if (a.subprotocols !== undefined && a.subprotocols.length > 0) headers['sec-websocket-protocol'] = a.subprotocols.join(', ');
    // An upgraded socket leaves any pool; a dedicated connection keeps the keep-alive agent clean.
    const upReq = https.request({ ...forwardRequestOptions(upstream, { method: req.method, url: a.path }, headers, false), ...upstream.tls });
    socket.on('error', () => upReq.destroy());
    socket.on('close', () => {
      if (result.status === 0) {
        upReq.destroy();
        done();
      }
    });
    upReq.on('error', (err) => {
      if (result.status === 0) {
        result.status = 502;
        const body = JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'the API server is not reachable through the gateway', reason: 'ServiceUnavailable', code: 502 });
        socket.end(`HTTP/1.1 502 Bad Gateway\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
      } else socket.destroy();
      done(err);
    });
    upReq.on('response', (res) => {
      // No upgrade (e.g. 400 for a pod without a node, 403 from RBAC): relay the answer and close.
      result.status = res.statusCode ?? 502;
      const auditId = res.headers['audit-id'];
      result.auditId = typeof auditId === 'string' ? auditId : undefined;
      const hdr: string[] = [];
      const raw = res.rawHeaders;
      for (let i = 0; i + 1 < raw.length; i += 2) {
        const n = (raw[i] as string).toLowerCase();
        if (n === 'connection' || n === 'transfer-encoding' || n === 'keep-alive' || n === 'content-length') continue;
        hdr.push(`${raw[i]}: ${raw[i + 1]}`);
      }
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        result.bytesOut = body.length;
        socket.write(`HTTP/1.1 ${result.status} ${res.statusMessage ?? ''}\r\n${hdr.join('\r\n')}${hdr.length ? '\r\n' : ''}content-length: ${body.length}\r\nconnection: close\r\n\r\n`);
        socket.end(body);
        done();
      });
      res.on('error', (err) => {
        socket.destroy();
        done(err);
      });
    });
    upReq.on('upgrade', (res, upSocket, upHead) => {
      result.status = res.statusCode ?? 101;
      const auditId = res.headers['audit-id'];
      result.auditId = typeof auditId === 'string' ? auditId : undefined;
      upstreamSocket = upSocket;
      upSocket.setNoDelay(true);
      const s = socket as Duplex & { setNoDelay?: (v: boolean) => void };
      s.setNoDelay?.(true);
      socket.write(rawResponseHead(res));
      if (upHead.length > 0) {
        result.bytesOut += upHead.length;
        socket.write(upHead);
      }
      if (a.head.length > 0) upSocket.write(a.head);
      upSocket.on('data', (c: Buffer) => void (result.bytesOut += c.length));
      socket.on('data', (c: Buffer) => void (result.bytesIn += c.length));
      upSocket.pipe(socket);
      socket.pipe(upSocket);
      let open = 2;
      const closed = (): void => {
        if (--open === 0) done();
      };
      upSocket.on('error', () => socket.destroy());
      socket.on('error', () => upSocket.destroy());
      upSocket.on('close', () => {
        socket.destroy();
        closed();
      });
      socket.on('close', () => {
        upSocket.destroy();
        closed();
      });
    });
    upReq.end();
  });
}
