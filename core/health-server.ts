/**
 * The plain-HTTP health listener every server runs beside its main port:
 * `/healthz` (the process is alive), `/readyz` (every readiness check passes),
 * `/metrics` (Prometheus text from prom-client).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Registry, collectDefaultMetrics } from 'prom-client';

/** A named readiness check; resolves true when ready. */
export type ReadinessCheck = () => boolean | Promise<boolean>;

/** A fresh metrics registry with the default process metrics. */
export function createMetricsRegistry(prefix = 'kubetrail_'): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix });
  return registry;
}

/** Handle of a running health listener. */
export interface HealthServer {
  readonly port: number;
  /** Adds a readiness check (e.g. policies loaded, sink open). */
  addCheck(name: string, check: ReadinessCheck): void;
  close(): Promise<void>;
}

/** Parses `host:port` (IPv6 in brackets) into its parts. */
export function splitHostPort(hostPort: string): { host: string; port: number } {
  const i = hostPort.lastIndexOf(':');
  const host = hostPort.slice(0, i).replace(/^\[|\]$/g, '') || '0.0.0.0';
  return { host, port: Number(hostPort.slice(i + 1)) };
}

/** Starts the health listener on `hostPort` (port 0 picks a free one). */
export async function startHealthServer(hostPort: string, registry: Registry): Promise<HealthServer> {
  const checks = new Map<string, ReadinessCheck>();
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (url === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      return;
    }
    if (url === '/readyz') {
      void (async () => {
        const failed: string[] = [];
        for (const [name, check] of checks) {
          let ok = false;
          try {
            ok = await check();
          } catch {
            ok = false;
          }
          if (!ok) failed.push(name);
        }
        res
          .writeHead(failed.length === 0 ? 200 : 503, { 'content-type': 'text/plain' })
          .end(failed.length === 0 ? 'ok\n' : `not ready: ${failed.join(', ')}\n`);
      })();
      return;
    }
    if (url === '/metrics') {
      registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
        () => res.writeHead(500).end(),
      );
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
  });
  const { host, port } = splitHostPort(hostPort);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    addCheck: (name, check) => void checks.set(name, check),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
