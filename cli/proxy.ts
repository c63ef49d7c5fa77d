/**
 * `kubetrail proxy [--config F]`: the API gateway. Loads and validates the
 * configuration, opens the event pipeline, connects the upstream (kubeconfig
 * or in-cluster), serves the gateway on proxy.listen over TLS (proxy.tls) and
 * /healthz, /readyz, /metrics on proxy.health. SIGTERM first drains (not
 * ready, still serving with `Connection: close`, for shutdownDrainSeconds:
 * core/drain.ts), then stops accepting, lets requests in flight finish, then
 * flushes and closes the pipeline.
 */
import { readFileSync } from 'node:fs';
import { startSelfManagedTls, usesSelfManagedTls } from '../certs/self-managed-runtime.ts';
import { withClusterSigningKey } from '../core/signing-key-secret.ts';
import { loadConfig } from '../core/config.ts';
import { ConfigError } from '../core/errors.ts';
import { createLogger } from '../core/logger.ts';
import { createMetricsRegistry, startHealthServer } from '../core/health-server.ts';
import { Shutdown } from '../core/shutdown.ts';
import { DRAIN_CHECK, Drain } from '../core/drain.ts';
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
  const log = createLogger({ level: cfg.log.level, name: 'kubetrail-proxy' });
  const shutdown = new Shutdown(log);
  const drain = new Drain({ seconds: cfg.shutdownDrainSeconds, log });
  shutdown.drainFirst(() => drain.run());
  // No proxy.tls but selfManaged.tls: the pair comes from the Secret the webhook's leader keeps (waits for it).
  const selfManaged = usesSelfManagedTls(cfg, cfg.proxy.tls) ? await startSelfManagedTls({ config: cfg, log, role: 'gateway' }) : undefined;
  if (selfManaged) shutdown.add('self-managed TLS', () => selfManaged.close());
  const tlsCfg = cfg.proxy.tls ?? selfManaged?.files;
  if (!tlsCfg) throw new ConfigError('CFG_ERR_INVALID', [{ path: 'proxy.tls', message: 'required: the gateway only serves TLS (create one with `kubetrail certs`, or set selfManaged.tls)' }]);
  let tls: { cert: Buffer; key: Buffer };
  try {
    tls = { cert: readFileSync(tlsCfg.certFile), key: readFileSync(tlsCfg.keyFile) };
  } catch (err) {
    throw new ConfigError('CFG_ERR_FILE', [{ path: 'proxy.tls', message: `cannot read ${tlsCfg.certFile} / ${tlsCfg.keyFile}: ${(err as NodeJS.ErrnoException).code ?? 'error'}` }], { cause: err });
  }
  const registry = createMetricsRegistry();
  // signing.keyFile unset and selfManaged.signingKey set: the key comes from (or is created in) the cluster.
  const pipeline = await createEventPipeline({ config: await withClusterSigningKey(cfg, log), log, registry, component: 'proxy' });
  // Closers run last-registered first: the listener stops before the pipeline flushes.
  shutdown.add('event pipeline', () => pipeline.close());
  let gateway: Gateway;
  try {
    // With the file names, the gateway reloads its certificate when they change (as the webhook does).
    gateway = await startGateway({ config: cfg, log, sink: pipeline, registry, tls: { ...tls, certFile: tlsCfg.certFile, keyFile: tlsCfg.keyFile }, drain });
  } catch (err) {
    await pipeline.close();
    throw err;
  }
  shutdown.add('gateway', () => gateway.close());
  selfManaged?.follow(() => gateway.reloadTls());
  const health = await startHealthServer(cfg.proxy.health, registry);
  health.addCheck('event-pipeline', () => pipeline.ready());
  health.addCheck(DRAIN_CHECK, drain.ready);
  shutdown.add('health', () => health.close());
  log.info({ url: gateway.url, upstream: gateway.upstream.url.origin, health: cfg.proxy.health, healthPort: health.port }, 'kubetrail proxy ready');
  shutdown.installSignalHandlers();
  return new Promise<number>(() => undefined);
}
