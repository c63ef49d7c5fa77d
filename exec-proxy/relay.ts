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
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import { ProxyError, sendError } from './errors.ts';
import type { UpstreamTarget } from './upstream.ts';

/**
 * Request headers copied from the client. Everything else — Authorization,
 * Impersonate-*, X-Remote-*, cookies, proxy and hop-by-hop headers — is
 * dropped: the upstream request is built from scratch.
 */
export const FORWARDED_REQUEST_HEADERS: ReadonlySet<string> = new Set([
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
  'audit-id',
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
 * then adds `identityHeaders`. Reads `rawHeaders` directly: one pass, no
 * intermediate header objects on the hot path.
 */
export function forwardedHeaders(req: IncomingMessage, identityHeaders: OutgoingHttpHeaders): OutgoingHttpHeaders {
  const out: Record<string, string | string[]> = {};
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase();
    if (!FORWARDED_REQUEST_HEADERS.has(name)) continue;
    const value = raw[i + 1] as string;
    const prev = out[name];
    if (prev === undefined) out[name] = value;
    else if (Array.isArray(prev)) prev.push(value);
    else out[name] = [prev, value];
  }
  return Object.assign(out as OutgoingHttpHeaders, identityHeaders);
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
}

/** One relayed exchange. */
export interface RelayArgs {
  upstream: UpstreamTarget;
  req: IncomingMessage;
  res: ServerResponse;
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
}

/** An upstream error as the relay reports it. */
function upstreamError(err: Error): ProxyError {
  if (err instanceof ProxyError) return err;
  // undici's idle timeouts: no response head, or no body bytes, within the request's timeout.
  const code = (err as { code?: unknown }).code;
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') return new ProxyError('PROXY_ERR_UPSTREAM_TIMEOUT', 'upstream idle timeout', { cause: err });
  return new ProxyError('PROXY_ERR_UPSTREAM_UNAVAILABLE', 'upstream request failed', { cause: err });
}

/**
 * Relays one request; resolves when the exchange is over (never rejects).
 *
 * The upstream request goes through the upstream's undici Pool with a raw
 * dispatch handler: no ClientRequest or response stream objects, header
 * lines handed over as received, body chunks written to the client as they
 * arrive; a full client socket pauses the upstream connection (and with it
 * the API server), a slow upstream simply delivers fewer chunks.
 */
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

    // The dispatch controller arrives once the request is on a connection; an abort before that is applied then.
    let controller: Dispatcher.DispatchController | undefined;
    let abortReason: Error | undefined;
    const abort = (reason: Error): void => {
      if (controller !== undefined) {
        if (!controller.aborted) controller.abort(reason);
      } else abortReason ??= reason;
    };

    const headers = a.headers;
    let body: Buffer | IncomingMessage | null = null;
    if (a.body !== undefined && a.bodyComplete) {
      result.bytesIn += a.body.length;
      headers['content-length'] = a.body.length;
      body = a.body;
    } else if (a.body !== undefined) {
      // Only a prefix was read (past the recorded-body limit): put it back in front of the rest and stream the lot.
      // (No 'data' listener here: it would start the stream before undici reads it; onBodySent counts instead.)
      req.unshift(a.body);
      body = req;
    } else if (hasBody(req)) {
      body = req;
    }
    // (Neither: no Content-Length and no Transfer-Encoding, no body (RFC 9112 §6.3); the server dumps the empty request stream.)
    const streamed = body === req;

    untrack = a.track?.(() => {
      stopping = true;
      // End what the client has cleanly (a complete chunked body), then drop the upstream side.
      if (res.headersSent && !res.writableEnded) res.end();
      abort(new ProxyError('PROXY_ERR_SHUTTING_DOWN', 'gateway shutting down'));
      if (!res.headersSent) {
        // Stopped before the API server answered: answer for it, so the client is not left waiting.
        const e = new ProxyError('PROXY_ERR_SHUTTING_DOWN', 'gateway shutting down');
        result.status = e.status;
        sendError(res, e);
        finish();
      }
    });

    // The client went away (e.g. kubectl ended a watch): stop the upstream exchange too.
    res.on('close', () => {
      if (!res.writableFinished) {
        const e = result.error ?? new ProxyError('PROXY_ERR_CLIENT_ABORTED', 'client closed the connection');
        abort(e instanceof Error ? e : new ProxyError('PROXY_ERR_CLIENT_ABORTED', 'client closed the connection'));
        finish(e);
      }
    });

    let held: Buffer | undefined;
    const timeout = a.timeoutMs ?? 0;
    upstream.pool.dispatch(
      {
        origin: upstream.url.origin,
        method: (req.method ?? 'GET') as Dispatcher.HttpMethod,
        path: upstream.basePath + (req.url ?? '/'),
        headers: headers as Record<string, string | string[]>,
        body,
        // Idle timeouts: until the response head, and between body chunks (every chunk of a large list re-arms it).
        headersTimeout: timeout,
        bodyTimeout: timeout,
      },
      {
        onRequestStart(c) {
          controller = c;
          if (abortReason !== undefined) c.abort(abortReason);
        },
        onBodySent(chunk) {
          if (streamed) result.bytesIn += chunk.length;
        },
        onResponseStart(c, statusCode, parsed) {
          result.status = statusCode;
          const auditId = parsed['audit-id'];
          result.auditId = typeof auditId === 'string' ? auditId : undefined;
          const lines = responseHeaderLines(c.rawHeaders);
          if (a.extraResponseHeaders) lines.push(...a.extraResponseHeaders);
          res.writeHead(statusCode, lines);
          // Long-running responses (watch, follow) must show their headers at once: kubectl waits for them.
          if (a.timeoutMs === undefined) res.flushHeaders();
        },
        onResponseData(c, chunk) {
          result.bytesOut += chunk.length;
          let out: Buffer | undefined = chunk;
          if (a.beforeEnd) {
            out = held;
            held = chunk;
          }
          if (out !== undefined && !res.write(out)) {
            c.pause();
            res.once('drain', () => c.resume());
          }
        },
        onResponseEnd() {
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
        },
        onResponseError(_c, err) {
          if (done) return;
          const e = upstreamError(err);
          if (!res.headersSent) {
            if (!stopping) result.status = e.status;
            // Let the caller write the Status; we only report.
          } else if (!stopping) {
            res.destroy();
          }
          finish(e);
        },
      },
    );
  });
}

/** Response header lines (undici's raw lines) to send back to the client, as a flat [name, value, ...] list, hop-by-hop ones dropped. */
function responseHeaderLines(raw: Dispatcher.DispatchController['rawHeaders']): string[] {
  const out: string[] = [];
  if (!Array.isArray(raw)) return out;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = typeof raw[i] === 'string' ? (raw[i] as string) : (raw[i] as Buffer).toString('latin1');
    if (HOP_BY_HOP.has(name.toLowerCase())) continue;
    const value = raw[i + 1] as string | Buffer;
    out.push(name, typeof value === 'string' ? value : value.toString('latin1'));
  }
  return out;
}

/** Whether a request has a body to relay: a Transfer-Encoding, or a Content-Length other than 0. */
export function hasBody(req: IncomingMessage): boolean {
  const h = req.headers;
  if (h['transfer-encoding'] !== undefined) return true;
  const cl = h['content-length'];
  return cl !== undefined && cl !== '0';
}

/**
 * Reads a write body up to `limit` bytes. Returns the bytes and whether that
 * is the whole body; when it is not, the request is paused with the rest
 * unread (the relay streams it on).
 */
export function readBodyPrefix(req: IncomingMessage, limit: number): Promise<{ body: Buffer; complete: boolean }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    const onData = (c: Buffer): void => {
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
  });
}
