/**
 * Limits on the gateway's connections, against slow and greedy clients
 * (issue 13 item 7). The listener has no request timeout (watches, follows
 * and exec sessions last as long as the API server lets them), so the bounds
 * are elsewhere:
 *
 * - a header timeout: the TLS handshake, and then each request's headers,
 *   must arrive within `headersTimeoutMs` (Node's `handshakeTimeout` and
 *   `headersTimeout`); once a request's headers are in, nothing here limits
 *   how long it runs;
 * - a cap on open connections per listener (`server.maxConnections`: Node
 *   drops the connection before the TLS handshake, so a refused one costs no
 *   TLS state) and per source address.
 *
 * A refused or timed-out connection is closed without an HTTP answer where
 * it has not sent a request yet (there is nothing to answer); a request whose
 * headers did not arrive in time gets 408.
 */
import type https from 'node:https';
import type { Socket } from 'node:net';
import { Counter, Gauge, type Registry } from 'prom-client';

/** The connection limits of one listener (config `proxy.connections`). */
export interface ConnectionLimits {
  /** The TLS handshake, and each request's headers, must arrive within this (ms). */
  headersTimeoutMs: number;
  /** Open connections the listener accepts; more are dropped at accept. */
  maxConnections: number;
  /** Open connections one source address may hold; more are closed at accept. */
  maxConnectionsPerSource: number;
}

/** Prometheus metrics of the limits. */
export interface ConnectionMetrics {
  open: Gauge;
  refused: Counter<'reason'>;
  timeouts: Counter<'phase'>;
}

/** Registers the connection metrics in `registry` (idempotent per registry). */
export function createConnectionMetrics(registry: Registry): ConnectionMetrics {
  const get = <T>(name: string, make: () => T): T => (registry.getSingleMetric(name) as T | undefined) ?? make();
  return {
    open: get('kubetrail_gateway_open_connections', () => new Gauge({ name: 'kubetrail_gateway_open_connections', help: 'Client connections open on the gateway listener.', registers: [registry] })),
    refused: get(
      'kubetrail_gateway_connections_refused_total',
      () => new Counter({ name: 'kubetrail_gateway_connections_refused_total', help: 'Client connections closed at accept, by the limit that refused them (listener, source).', labelNames: ['reason'] as const, registers: [registry] }),
    ),
    timeouts: get(
      'kubetrail_gateway_client_timeouts_total',
      () => new Counter({ name: 'kubetrail_gateway_client_timeouts_total', help: 'Client connections closed because the TLS handshake or request headers did not arrive in time, by phase (handshake, headers).', labelNames: ['phase'] as const, registers: [registry] }),
    ),
  };
}

/**
 * Server options implementing the header timeout. Node checks for expired
 * headers every `connectionsCheckingInterval` (30 s by default, which would
 * let a slow client hold a connection for up to that much longer); a quarter
 * of the timeout, within [100 ms, 1 s], keeps the overshoot small and the
 * check cheap.
 */
export function timeoutServerOptions(limits: ConnectionLimits): Pick<https.ServerOptions, 'headersTimeout' | 'handshakeTimeout' | 'requestTimeout' | 'connectionsCheckingInterval'> {
  return {
    // 0: no limit on a whole request; watches and follows last long, and the API server ends them itself.
    requestTimeout: 0,
    headersTimeout: limits.headersTimeoutMs,
    handshakeTimeout: limits.headersTimeoutMs,
    connectionsCheckingInterval: Math.min(1000, Math.max(100, Math.floor(limits.headersTimeoutMs / 4))),
  };
}

/** An IPv4 address seen through a dual-stack socket counts as itself. */
function sourceKey(socket: Socket): string {
  const a = socket.remoteAddress ?? 'unknown';
  return a.startsWith('::ffff:') ? a.slice(7) : a;
}

/**
 * Applies the caps to `server` (created with {@link timeoutServerOptions})
 * and counts refusals and timeouts in `metrics`.
 */
export function applyConnectionLimits(server: https.Server, limits: ConnectionLimits, metrics: ConnectionMetrics | undefined): void {
  server.maxConnections = limits.maxConnections;
  server.on('drop', () => metrics?.refused.inc({ reason: 'listener' }));
  const perSource = new Map<string, number>();
  // Before the TLS layer's own listener: a refused socket is closed before any handshake work.
  server.prependListener('connection', (socket: Socket) => {
    const key = sourceKey(socket);
    const n = (perSource.get(key) ?? 0) + 1;
    if (n > limits.maxConnectionsPerSource) {
      metrics?.refused.inc({ reason: 'source' });
      socket.destroy();
      return;
    }
    perSource.set(key, n);
    metrics?.open.inc();
    socket.once('close', () => {
      metrics?.open.dec();
      const left = (perSource.get(key) ?? 1) - 1;
      if (left <= 0) perSource.delete(key);
      else perSource.set(key, left);
    });
  });
  // Node reports a handshake timeout here but leaves the socket open: close it.
  server.on('tlsClientError', (err: NodeJS.ErrnoException, socket) => {
    if (err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT') metrics?.timeouts.inc({ phase: 'handshake' });
    socket.destroy();
  });
}
