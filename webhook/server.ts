/**
 * The webhook's HTTPS listener, an express app: `/validate` and `/mutate`
 * only, POST only, `application/json` only (`req.is`), bodies up to
 * `webhook.maxBodyBytes` (`express.raw`'s limit; 413 past it), the API
 * server's `?timeout=` honoured, uid echoed. Every refusal is thrown as an
 * {@link AdmissionError} and reaches express's error handler, the one place
 * ({@link sendError}) that maps errors to responses; it never echoes internal
 * text.
 *
 * Certificates reload without a restart (core/tls-reload.ts).
 */
import https from 'node:https';
import express, { type NextFunction, type Request, type Response } from 'express';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import type { Drain } from '../core/drain.ts';
import type { Logger } from '../core/logger.ts';
import { splitHostPort } from '../core/health-server.ts';
import { watchServerCertificate } from '../core/tls-reload.ts';
import { AdmissionError } from './errors.ts';
import { encodeResponse, parseAdmissionReview, parseGoDuration } from './review.ts';
import type { AdmissionHandler } from './handler.ts';

/** Options of {@link startWebhookServer}. */
export interface WebhookServerOptions {
  /** host:port; port 0 picks a free one. */
  listen: string;
  tls: { certFile: string; keyFile: string };
  handler: AdmissionHandler;
  log: Logger;
  maxBodyBytes: number;
  /** Used when the request has no ?timeout= (ms). */
  defaultTimeoutMs: number;
  /** Debounce of certificate reloads (ms). */
  tlsReloadDebounceMs?: number;
  /** While it drains, answers carry `Connection: close`. */
  drain?: Drain;
}

/** A running webhook listener. */
export interface WebhookServer {
  readonly port: number;
  /** Reviews being processed right now. */
  inFlight(): number;
  /** Reloads the certificate now (also done on file change); resolves false if the new pair did not load. */
  reloadTls(): boolean;
  /** Stops accepting, waits for in-flight reviews to be answered, closes idle connections. */
  close(): Promise<void>;
}

/** Margin kept before the API server's deadline so our answer still reaches it (ms). */
function safetyMargin(timeoutMs: number): number {
  return Math.min(1000, Math.max(50, timeoutMs * 0.1));
}

function sendError(res: Response, err: unknown, log: Logger): void {
  const e =
    err instanceof AdmissionError
      ? err
      : (log.error({ err }, 'unexpected error before a review could be answered'), new AdmissionError('ADM_ERR_INVALID_REVIEW', 'the request could not be processed'));
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (e.code === 'ADM_ERR_METHOD') res.set('allow', 'POST');
  if (e.code === 'ADM_ERR_TOO_LARGE') res.set('connection', 'close');
  res.status(e.status).type('application/json').send(Buffer.from(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', code: e.status, reason: e.code, message: e.message })));
}

/** What body-parser's errors mean here (its `type` field is its stable code): too large, or unreadable. */
function bodyError(err: unknown, max: number): AdmissionError | undefined {
  const type = (err as { type?: unknown } | null)?.type;
  if (typeof type !== 'string') return undefined;
  if (type === 'entity.too.large') return new AdmissionError('ADM_ERR_TOO_LARGE', `body exceeds ${max} bytes (webhook.maxBodyBytes)`);
  // The API server never compresses a review; an encoded body would pass the limit compressed and grow past it inflated.
  if (type === 'encoding.unsupported') return new AdmissionError('ADM_ERR_READ', 'content-encoding is not supported: send the review uncompressed', { cause: err });
  return new AdmissionError('ADM_ERR_READ', 'the request body could not be read', { cause: err });
}

/** Starts the HTTPS listener. */
export async function startWebhookServer(opts: WebhookServerOptions): Promise<WebhookServer> {
  const { log, handler } = opts;
  const first = { cert: readFileSync(opts.tls.certFile), key: readFileSync(opts.tls.keyFile) };
  let inFlight = 0;
  let closing = false;
  const idleWaiters: (() => void)[] = [];

  const app = express();
  // The API server calls exactly /validate and /mutate; /Validate or /validate/ are unknown paths (404), as before express.
  app.set('case sensitive routing', true);
  app.set('strict routing', true);
  app.disable('x-powered-by');
  app.disable('etag');

  app.use((_req: Request, res: Response, next: NextFunction) => {
    inFlight++;
    let counted = true;
    const done = (): void => {
      if (!counted) return;
      counted = false;
      inFlight--;
      if (inFlight === 0) for (const w of idleWaiters.splice(0)) w();
    };
    res.once('finish', done);
    res.once('close', done);
    next();
  });

  const review = (which: 'validate' | 'mutate') => async (req: Request, res: Response): Promise<void> => {
    const t0 = performance.now();
    const q = req.query['timeout'];
    const timeoutMs = parseGoDuration(typeof q === 'string' ? q : Array.isArray(q) && typeof q[0] === 'string' ? q[0] : null) ?? opts.defaultTimeoutMs;
    const deadline = t0 + timeoutMs - safetyMargin(timeoutMs);
    // express.raw leaves req.body unset when the request has no body at all (no Content-Length, no Transfer-Encoding).
    const parsed = parseAdmissionReview(Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0));
    let response;
    try {
      response = which === 'validate' ? await handler.validate(parsed, deadline) : await handler.mutate(parsed, deadline);
    } catch (err) {
      // A bug past parsing: answer the review (the uid is known) and fail closed rather than a 5xx.
      log.error({ err, uid: parsed.uid, webhook: which }, 'review failed unexpectedly; denying');
      response = { uid: parsed.uid, allowed: false, status: { code: 500, reason: 'InternalError', message: 'kubetrail could not evaluate this request' } };
    }
    // A Buffer keeps the content type as set (a string would get "; charset=utf-8") and gets a content-length, so Node writes head and body as one TLS write.
    res.status(200).type('application/json').send(Buffer.from(encodeResponse(response)));
  };

  const requireJson = (req: Request, _res: Response, next: NextFunction): void => {
    next(req.is('application/json') ? undefined : new AdmissionError('ADM_ERR_CONTENT_TYPE', 'content-type must be application/json'));
  };
  // inflate: false: an encoded body is refused (see bodyError), not inflated.
  const body = express.raw({ type: 'application/json', limit: opts.maxBodyBytes, inflate: false });
  for (const which of ['validate', 'mutate'] as const) {
    app.post(`/${which}`, requireJson, body, review(which));
    app.all(`/${which}`, () => {
      throw new AdmissionError('ADM_ERR_METHOD', 'method not allowed: use POST');
    });
  }
  app.use(() => {
    throw new AdmissionError('ADM_ERR_NOT_FOUND', 'not found: the webhook serves POST /validate and POST /mutate');
  });
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    const e = bodyError(err, opts.maxBodyBytes) ?? err;
    if (e instanceof AdmissionError && e.code !== 'ADM_ERR_NOT_FOUND') log.debug({ code: e.code }, 'review rejected');
    sendError(res, e, log);
  });

  const server = https.createServer({ cert: first.cert, key: first.key, minVersion: 'TLSv1.2' }, app);
  // A review never needs long keep-alive idle: the API server reuses connections within seconds.
  server.keepAliveTimeout = 30_000;
  server.headersTimeout = 15_000;
  server.requestTimeout = 60_000;

  opts.drain?.attach(server);
  const certificate = watchServerCertificate(server, opts.tls, { log, what: 'webhook', debounceMs: opts.tlsReloadDebounceMs ?? 100, contextOptions: { minVersion: 'TLSv1.2' } });

  const { host, port } = splitHostPort(opts.listen);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  log.info({ listen: opts.listen, port: (server.address() as AddressInfo).port }, 'webhook listening');

  return {
    port: (server.address() as AddressInfo).port,
    inFlight: () => inFlight,
    reloadTls: certificate.reload,
    close: async () => {
      if (closing) return;
      closing = true;
      certificate.stop();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      if (inFlight > 0) await new Promise<void>((resolve) => idleWaiters.push(resolve));
      // A keep-alive connection becomes idle only once its response is flushed; sweep until the server has closed.
      const sweep = setInterval(() => server.closeIdleConnections(), 20);
      server.closeIdleConnections();
      await closed;
      clearInterval(sweep);
    },
  };
}
