/**
 * `kubetrail proxy [--config F]`: the API gateway. Loads and validates the
 * configuration, opens the event pipeline, connects the upstream (kubeconfig
 * or in-cluster), serves the gateway on proxy.listen over TLS (proxy.tls) and
 * /healthz, /readyz, /metrics on proxy.health. SIGTERM stops accepting, lets
 * requests in flight finish, then flushes and closes the pipeline.
 */
import { readFileSync } from 'node:fs';
import { loadConfig } from '../core/config.ts';
import { ConfigError } from '../core/errors.ts';
import { createLogger } from '../core/logger.ts';
import { createMetricsRegistry, startHealthServer } from '../core/health-server.ts';
import { Shutdown } from '../core/shutdown.ts';
import { createEventPipeline } from '../core/pipeline.ts';
import { startGateway, type Gateway } from '../exec-proxy/main.ts';

const USAGE = `usage: kubetrail proxy [--config FILE]

Serves the gateway on proxy.listen over TLS (proxy.tls): callers authenticate with an OIDC JWT
(proxy.authn.jwt) or a ServiceAccount token (TokenReview); requests go to the API server of
proxy.upstream as the caller, through impersonation. /healthz, /readyz, /metrics on proxy.health.
Every setting is also a KUBETRAIL_* variable. Write a caller's kubeconfig with \`kubetrail kubeconfig\`.
`;

/** Runs `kubetrail proxy`. */
export async function run(argv: string[]): Promise<number> {
  if (argv.includes('-h') || argv.includes('--help')) {
    process.stdout.write(USAGE);
    return 0;
  }
  const cfg = loadConfig({ env: process.env, argv });
  const tlsCfg = cfg.proxy.tls;
  if (!tlsCfg) throw new ConfigError('CFG_ERR_INVALID', [{ path: 'proxy.tls', message: 'required: the gateway only serves TLS (create one with `kubetrail certs`)' }]);
  let tls: { cert: Buffer; key: Buffer };
  try {
    tls = { cert: readFileSync(tlsCfg.certFile), key: readFileSync(tlsCfg.keyFile) };
  } catch (err) {
    throw new ConfigError('CFG_ERR_FILE', [{ path: 'proxy.tls', message: `cannot read ${tlsCfg.certFile} / ${tlsCfg.keyFile}: ${(err as NodeJS.ErrnoException).code ?? 'error'}` }], { cause: err });
  }
  const log = createLogger({ level: cfg.log.level, name: 'kubetrail-proxy' });
  const shutdown = new Shutdown(log);
  const registry = createMetricsRegistry();
  const pipeline = await createEventPipeline({ config: cfg, log, registry, component: 'proxy' });
  // Closers run last-registered first: the listener stops before the pipeline flushes.
  shutdown.add('event pipeline', () => pipeline.close());
  let gateway: Gateway;
  try {
    // With the file names, the gateway reloads its certificate when they change (as the webhook does).
    gateway = await startGateway({ config: cfg, log, sink: pipeline, registry, tls: { ...tls, certFile: tlsCfg.certFile, keyFile: tlsCfg.keyFile } });
  } catch (err) {
    await pipeline.close();
    throw err;
  }
  shutdown.add('gateway', () => gateway.close());
  const health = await startHealthServer(cfg.proxy.health, registry);
  health.addCheck('event-pipeline', () => pipeline.ready());
  shutdown.add('health', () => health.close());
  log.info({ url: gateway.url, upstream: gateway.upstream.url.origin, health: cfg.proxy.health, healthPort: health.port }, 'kubetrail proxy ready');
  shutdown.installSignalHandlers();
  return new Promise<number>(() => undefined);
}
