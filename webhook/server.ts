/**
 * The webhook's HTTPS listener: `/validate` and `/mutate` only, POST only,
 * `application/json` only, bodies up to `webhook.maxBodyBytes` (413 past it),
 * the API server's `?timeout=` honoured, uid echoed. One place
 * ({@link sendError}) maps errors to responses; it never echoes internal text.
 *
 * Certificates reload without a restart (core/tls-reload.ts).
 */
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
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

function sendError(res: ServerResponse, err: unknown, log: Logger): void {
  const e =
    err instanceof AdmissionError
      ? err
      : (log.error({ err }, 'unexpected error before a review could be answered'), new AdmissionError('ADM_ERR_INVALID_REVIEW', 'the request could not be processed'));
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const json = JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', code: e.status, reason: e.code, message: e.message });
  const headers: Record<string, string | number> = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) };
  if (e.code === 'ADM_ERR_METHOD') headers['allow'] = 'POST';
  if (e.code === 'ADM_ERR_TOO_LARGE') headers['connection'] = 'close';
  res.writeHead(e.status, headers).end(json);
}

function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > max) {
      reject(new AdmissionError('ADM_ERR_TOO_LARGE', `body exceeds ${max} bytes (webhook.maxBodyBytes)`));
      req.resume();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on('data', (c: Buffer) => {
      if (done) return;
      size += c.length;
      if (size > max) {
        done = true;
        reject(new AdmissionError('ADM_ERR_TOO_LARGE', `body exceeds ${max} bytes (webhook.maxBodyBytes)`));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (!done) {
        done = true;
        resolve(Buffer.concat(chunks, size));
      }
    });
    req.on('error', (err) => {
      if (!done) {
        done = true;
        reject(new AdmissionError('ADM_ERR_READ', 'the request body could not be read', { cause: err }));
      }
    });
  });
}

/** Starts the HTTPS listener. */
export async function startWebhookServer(opts: WebhookServerOptions): Promise<WebhookServer> {
  const { log, handler } = opts;
  const first = { cert: readFileSync(opts.tls.certFile), key: readFileSync(opts.tls.keyFile) };
  let inFlight = 0;
  let closing = false;
  const idleWaiters: (() => void)[] = [];

  const onRequest = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const t0 = performance.now();
    inFlight++;
    try {
      const url = new URL(req.url ?? '/', 'https://webhook.invalid');
      const which = url.pathname === '/validate' ? 'validate' : url.pathname === '/mutate' ? 'mutate' : undefined;
      if (which === undefined) throw new AdmissionError('ADM_ERR_NOT_FOUND', 'not found: the webhook serves POST /validate and POST /mutate');
      if (req.method !== 'POST') throw new AdmissionError('ADM_ERR_METHOD', 'method not allowed: use POST');
      const ct = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
      if (ct !== 'application/json') throw new AdmissionError('ADM_ERR_CONTENT_TYPE', 'content-type must be application/json');
      const timeoutMs = parseGoDuration(url.searchParams.get('timeout')) ?? opts.defaultTimeoutMs;
      const deadline = t0 + timeoutMs - safetyMargin(timeoutMs);
      const body = await readBody(req, opts.maxBodyBytes);
      const review = parseAdmissionReview(body);
      let response;
      try {
        response = which === 'validate' ? await handler.validate(review, deadline) : await handler.mutate(review, deadline);
      } catch (err) {
        // A bug past parsing: answer the review (the uid is known) and fail closed rather than a 5xx.
        log.error({ err, uid: review.uid, webhook: which }, 'review failed unexpectedly; denying');
        response = { uid: review.uid, allowed: false, status: { code: 500, reason: 'InternalError', message: 'kubetrail could not evaluate this request' } };
      }
      const json = encodeResponse(response);
      // With a content-length Node writes head and body as one TLS write; without one the body goes chunked (4 writes).
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) }).end(json);
    } catch (err) {
      if (err instanceof AdmissionError && err.code !== 'ADM_ERR_NOT_FOUND') log.debug({ code: err.code }, 'review rejected');
      sendError(res, err, log);
    } finally {
      inFlight--;
      if (inFlight === 0) for (const w of idleWaiters.splice(0)) w();
    }
  };

  const server = https.createServer({ cert: first.cert, key: first.key, minVersion: 'TLSv1.2' }, (req, res) => void onRequest(req, res));
  // A review never needs long keep-alive idle: the API server reuses connections within seconds.
  server.keepAliveTimeout = 30_000;
  server.headersTimeout = 15_000;
  server.requestTimeout = 60_000;

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
