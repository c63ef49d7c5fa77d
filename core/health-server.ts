/**
 * The plain-HTTP health listener every server runs beside its main port:
 * `/healthz` (the process is alive), `/readyz` (every readiness check passes),
 * `/metrics` (Prometheus text from prom-client). An express app: GET and
 * HEAD only (405 otherwise), 404 for any other path.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type NextFunction, type Request, type Response } from 'express';
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
  const app = express();
  app.set('case sensitive routing', true);
  app.set('strict routing', true);
  app.disable('x-powered-by');
  app.disable('etag');
  app.use((req: Request, res: Response, next: NextFunction) => {
    if (req.method === 'GET' || req.method === 'HEAD') return next();
    res.status(405).set('allow', 'GET, HEAD').end();
  });
  app.get('/healthz', (_req, res) => void res.type('text/plain').send('ok\n'));
  app.get('/readyz', async (_req, res) => {
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
      .status(failed.length === 0 ? 200 : 503)
      .type('text/plain')
      .send(failed.length === 0 ? 'ok\n' : `not ready: ${failed.join(', ')}\n`);
  });
  app.get('/metrics', async (_req, res) => {
    const text = await registry.metrics();
    res.set('content-type', registry.contentType).send(text);
  });
  app.use((_req: Request, res: Response) => void res.status(404).type('text/plain').send('not found\n'));
  // A failed collection (the only error a route can raise) is a bare 500: metric text is never half-sent and no internals are echoed.
  app.use((_err: unknown, _req: Request, res: Response, _next: NextFunction) => void res.status(500).end());
  const server = http.createServer(app);
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
