/**
 * The faithful HTTP relay: one upstream request per client request, built
 * from scratch (an allow-list of end-to-end headers plus the gateway's own
 * credentials and impersonation), bodies streamed both ways with
 * backpressure, watches and chunked streams flushed chunk by chunk, content
 * types untouched (JSON, protobuf, CBOR, YAML), and only write bodies up to
 * the recorded-body limit ever buffered.
 *
 * For writes the caller passes `beforeEnd`: the last chunk of the response is
 * held back until it resolves (the event is durable), so a client never sees
 * a complete write response whose record could still be lost. If it rejects,
 * the connection is cut and the client sees an incomplete response.
 */
import https from 'node:https';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { ProxyError, sendError } from './errors.ts';
import type { UpstreamTarget } from './upstream.ts';
import { forwardRequestOptions } from './upstream.ts';

/**
 * Request headers copied from the client. Everything else — Authorization,
 * Impersonate-*, X-Remote-*, cookies, proxy and hop-by-hop headers — is
 * dropped: the upstream request is built from scratch.
 */
const FORWARDED_REQUEST_HEADERS: ReadonlySet<string> = new Set([
  'accept',
  'accept-encoding',
  'accept-language',
  'content-type',
  'content-encoding',
  'content-length',
  'user-agent',
  'if-match',
  'if-none-match',
  'if-modified-since',
  'if-unmodified-since',
  // Not 'audit-id': the API server takes a client's Audit-ID as the request's audit ID, so a caller would pick it.
  'x-request-id',
  'traceparent',
  'tracestate',
  'kubectl-command',
  'kubectl-session',
  'x-stream-protocol-version',
  'sec-websocket-key',
  'sec-websocket-version',
  'sec-websocket-extensions',
  // The API server's WebSocket watch (golang.org/x/net/websocket) refuses a handshake without Origin.
  'origin',
]);

// Response headers that describe one hop, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-authenticate', 'proxy-authorization']);

/**
 * Copies the allow-listed request headers (each repeated line kept apart),
 * except those the client names in `Connection` (hop-by-hop, RFC 9110
 * §7.6.1), then adds `identityHeaders`. Reads `rawHeaders` directly: one
 * pass, no intermediate header objects on the hot path.
 */
export function forwardedHeaders(req: IncomingMessage, identityHeaders: OutgoingHttpHeaders): OutgoingHttpHeaders {
  const out: Record<string, string | string[]> = {};
  const raw = req.rawHeaders;
  const connection = req.headers.connection;
  const hopByHop = connection === undefined ? undefined : new Set(connection.split(',').map((t) => t.trim().toLowerCase()));
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase();
    if (!FORWARDED_REQUEST_HEADERS.has(name) || hopByHop?.has(name)) continue;
    const value = raw[i + 1] as string;
    const prev = out[name];
    if (prev === undefined) out[name] = value;
    else if (Array.isArray(prev)) prev.push(value);
    else out[name] = [prev, value];
  }
  return Object.assign(out as OutgoingHttpHeaders, identityHeaders);
}

/** Response header lines to send back to the client, as a flat [name, value, ...] list (repeated lines kept). */
function responseHeaders(upRes: IncomingMessage): string[] {
  const out: string[] = [];
  const raw = upRes.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (HOP_BY_HOP.has((raw[i] as string).toLowerCase())) continue;
    out.push(raw[i] as string, raw[i + 1] as string);
  }
  return out;
}

/** What the relay observed. */
export interface RelayResult {
  /** Upstream status, or the gateway's error status when there was no upstream response. */
  status: number;
  bytesIn: number;
  bytesOut: number;
  /** The API server's Audit-Id response header. */
  auditId: string | undefined;
  /** Set when the exchange did not complete (upstream error, timeout, client gone, record not durable). */
  error?: unknown;
  /** Set when `intercept` took the response: nothing was written to the client. */
  intercepted?: { status: number; headerLines: string[]; body: Buffer };
}

/** One relayed exchange. */
export interface RelayArgs {
  upstream: UpstreamTarget;
  req: IncomingMessage;
  res: ServerResponse;
  /** Path and query to forward: the canonical target the gateway parsed (request-target.ts), never `req.url`. */
  path: string;
  /** The upstream request headers (built for this request; the relay may add content-length to it). */
  headers: OutgoingHttpHeaders;
  /**
   * The request body already read (writes up to the recorded-body limit).
   * With `bodyComplete` false it is only a prefix and the rest still flows from `req`.
   */
  body?: Buffer;
  bodyComplete?: boolean;
  /** Idle timeout towards the API server (ms); undefined for long-running requests (watch, follow). */
  timeoutMs: number | undefined;
  /** Extra response header lines as a flat [name, value, ...] list (e.g. guardrail warnings). */
  extraResponseHeaders?: string[] | undefined;
  /** Awaited before the last byte of the response is released (writes: the event is durable). */
  beforeEnd?: (partial: Omit<RelayResult, 'error'>) => Promise<void>;
  /**
   * Registers a stopper the gateway calls on shutdown (long-running requests:
   * the watch is ended cleanly, as the API server does, and the client
   * re-establishes it); returns the function that unregisters it.
   */
  track?: (stop: () => void) => () => void;
  /**
   * Called with the upstream status and headers before anything is written to
   * the client: true keeps the response (up to 64 KiB) in `intercepted`
   * instead of relaying it (the approval hold reads a webhook's denial).
   */
  intercept?: (status: number, headers: IncomingMessage['headers']) => boolean;
}

/** Largest response body `intercept` keeps (a Status is a few hundred bytes). */
const MAX_INTERCEPTED_BYTES = 64 * 1024;

/** Relays one request; resolves when the exchange is over (never rejects). */
export function relay(a: RelayArgs): Promise<RelayResult> {
  return new Promise<RelayResult>((resolve) => {
    const { req, res, upstream } = a;
    const result: RelayResult = { status: 0, bytesIn: 0, bytesOut: 0, auditId: undefined };
    let done = false;
    let stopping = false;
    let untrack: (() => void) | undefined;
    const finish = (error?: unknown): void => {
      if (done) return;
      done = true;
      untrack?.();
      if (error !== undefined && !stopping) result.error = error;
      resolve(result);
    };

    const headers = a.headers;
    if (a.body !== undefined && a.bodyComplete) {
      headers['content-length'] = a.body.length;
    }
    const upReq = https.request(forwardRequestOptions(upstream, { method: req.method, url: a.path }, headers, upstream.agent));
    untrack = a.track?.(() => {
      stopping = true;
      // End what the client has cleanly (a complete chunked body), then drop the upstream side.
      if (res.headersSent && !res.writableEnded) res.end();
      upReq.destroy();
      if (!res.headersSent) {
        // Stopped before the API server answered: answer for it, so the client is not left waiting.
        sendError(res, new ProxyError('PROXY_ERR_SHUTTING_DOWN', 'gateway shutting down'));
        finish();
      }
    });
    if (a.timeoutMs !== undefined) {
      upReq.setTimeout(a.timeoutMs, () => upReq.destroy(new ProxyError('PROXY_ERR_UPSTREAM_TIMEOUT', 'upstream idle timeout')));
    }

    // The client went away (e.g. kubectl ended a watch): stop the upstream exchange too.
    res.on('close', () => {
      if (!res.writableFinished) {
        upReq.destroy();
        finish(result.error ?? new ProxyError('PROXY_ERR_CLIENT_ABORTED', 'client closed the connection'));
      }
    });

    upReq.on('error', (err) => {
      const e = err instanceof ProxyError ? err : new ProxyError('PROXY_ERR_UPSTREAM_UNAVAILABLE', 'upstream request failed', { cause: err });
      if (!res.headersSent) {
        result.status = e.status;
        // Let the caller write the Status; we only report.
      } else if (!stopping) {
        res.destroy();
      }
      finish(e);
    });

    upReq.on('response', (upRes) => {
      result.status = upRes.statusCode ?? 502;
      const auditId = upRes.headers['audit-id'];
      result.auditId = typeof auditId === 'string' ? auditId : undefined;
      // The timeout is an idle timeout of the upstream socket: every chunk of a long response (e.g. a
      // large list) re-arms it, so it only fires when the API server stalls.
      const lines = responseHeaders(upRes);
      if (a.extraResponseHeaders) lines.push(...a.extraResponseHeaders);
      if (a.intercept?.(result.status, upRes.headers)) {
        const chunks: Buffer[] = [];
        let size = 0;
        upRes.on('data', (c: Buffer) => {
          result.bytesOut += c.length;
          size += c.length;
          if (size <= MAX_INTERCEPTED_BYTES) chunks.push(c);
        });
        upRes.on('error', (err) => finish(new ProxyError('PROXY_ERR_UPSTREAM_UNAVAILABLE', 'upstream response failed', { cause: err })));
        upRes.on('end', () => {
          result.intercepted = { status: result.status, headerLines: lines, body: Buffer.concat(chunks) };
          finish();
        });
        return;
      }
      res.writeHead(result.status, lines);
      // Long-running responses (watch, follow) must show their headers at once: kubectl waits for them.
      if (a.timeoutMs === undefined) res.flushHeaders();
      let held: Buffer | undefined;
      const write = (chunk: Buffer): void => {
        if (!res.write(chunk)) {
          upRes.pause();
          res.once('drain', () => upRes.resume());
        }
      };
      upRes.on('data', (chunk: Buffer) => {
        result.bytesOut += chunk.length;
        if (a.beforeEnd) {
          if (held !== undefined) write(held);
          held = chunk;
        } else {
          write(chunk);
        }
      });
      upRes.on('error', (err) => {
        if (!stopping) res.destroy();
        finish(new ProxyError('PROXY_ERR_UPSTREAM_UNAVAILABLE', 'upstream response failed', { cause: err }));
      });
      upRes.on('end', () => {
        if (!a.beforeEnd) {
          res.end(() => finish());
          return;
        }
        a.beforeEnd({ status: result.status, bytesIn: result.bytesIn, bytesOut: result.bytesOut, auditId: result.auditId }).then(
          () => {
            if (held !== undefined) res.end(held, () => finish());
            else res.end(() => finish());
          },
          (err: unknown) => {
            // Not durable: cut the connection before the last bytes, so the response is visibly incomplete.
            res.destroy();
            finish(err);
          },
        );
      });
    });

    // Request body.
    if (a.body !== undefined) {
      result.bytesIn += a.body.length;
      if (a.bodyComplete) {
        upReq.end(a.body);
        return;
      }
      upReq.write(a.body);
    } else if (!hasBody(req)) {
      // No Content-Length and no Transfer-Encoding: no body (RFC 9112 §6.3). Send the request now, in one
      // write, instead of a tick later through pipe(); the server dumps the (empty) request stream itself.
      upReq.end();
      return;
    }
    req.on('data', (c: Buffer) => {
      result.bytesIn += c.length;
    });
    req.pipe(upReq);
  });
}

/** Whether a request has a body to relay: a Transfer-Encoding, or a Content-Length other than 0. */
function hasBody(req: IncomingMessage): boolean {
  const h = req.headers;
  if (h['transfer-encoding'] !== undefined) return true;
  const cl = h['content-length'];
  return cl !== undefined && cl !== '0';
}

/**
 * Reads a write body up to `limit` bytes. Returns the bytes and whether that
 * is the whole body; when it is not, the request is paused with the rest
 * unread (the relay streams it on). With `idleTimeoutMs`, a body that stalls
 * that long between bytes is refused (PROXY_ERR_CLIENT_ABORTED): the
 * listener has no request timeout, and a client must not hold a connection
 * by trickling a body the gateway buffers before forwarding.
 */
export function readBodyPrefix(req: IncomingMessage, limit: number, idleTimeoutMs?: number): Promise<{ body: Buffer; complete: boolean }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let timer: NodeJS.Timeout | undefined;
    const arm = (): void => {
      if (idleTimeoutMs === undefined) return;
      clearTimeout(timer);
      timer = setTimeout(() => {
        cleanup();
        reject(new ProxyError('PROXY_ERR_CLIENT_ABORTED', 'request body stalled', { clientMessage: 'the request body stalled for longer than the gateway idle timeout' }));
      }, idleTimeoutMs);
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    const onData = (c: Buffer): void => {
      arm();
      chunks.push(c);
      size += c.length;
      if (size > limit) {
        req.pause();
        cleanup();
        resolve({ body: Buffer.concat(chunks), complete: false });
      }
    };
    const onEnd = (): void => {
      cleanup();
      resolve({ body: Buffer.concat(chunks), complete: true });
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(new ProxyError('PROXY_ERR_CLIENT_ABORTED', 'client request failed', { cause: err }));
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    arm();
  });
}
