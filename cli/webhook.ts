/**
 * `kubetrail webhook [--config F]`: the admission webhook server. Loads and
 * validates the configuration, opens the event pipeline, loads the policies,
 * serves /validate and /mutate over HTTPS and /healthz, /readyz, /metrics on
 * the health listener. SIGTERM first drains (not ready, still serving with
 * `Connection: close`, for shutdownDrainSeconds: core/drain.ts), then stops
 * accepting, answers the reviews in flight, then flushes and closes the pipeline.
 */
import { startSelfManagedTls, usesSelfManagedTls } from '../certs/self-managed-runtime.ts';
import { withClusterSigningKey } from '../core/signing-key-secret.ts';
import { loadConfig } from '../core/config.ts';
import { createLogger } from '../core/logger.ts';
import { createMetricsRegistry, startHealthServer } from '../core/health-server.ts';
import { Shutdown } from '../core/shutdown.ts';
import { DRAIN_CHECK, Drain } from '../core/drain.ts';
import { createEventPipeline } from '../core/pipeline.ts';
import { checkWebhookConfig, startWebhook } from '../webhook/main.ts';
import { createNamespaceLookup } from '../webhook/namespaces.ts';

/** Runs `kubetrail webhook`. */
export async function run(argv: string[]): Promise<number> {
  if (argv.includes('-h') || argv.includes('--help')) {
    process.stdout.write('usage: kubetrail webhook [--config FILE]\n\nServes the admission webhook (POST /validate, POST /mutate) on webhook.listen over TLS (webhook.tls),\nand /healthz, /readyz, /metrics on webhook.health. Every setting is also a KUBETRAIL_* variable.\n');
    return 0;
  }
  const cfg = loadConfig({ env: process.env, argv });
  const self = usesSelfManagedTls(cfg, cfg.webhook.tls);
  checkWebhookConfig(cfg, cfg.webhook.tls !== undefined || self);
  const log = createLogger({ level: cfg.log.level, name: 'kubetrail-webhook' });
  const shutdown = new Shutdown(log);
  const drain = new Drain({ seconds: cfg.shutdownDrainSeconds, log });
  shutdown.drainFirst(() => drain.run());
  // No webhook.tls but selfManaged.tls: join the election and wait until the Secret holds a pair.
  const selfManaged = self ? await startSelfManagedTls({ config: cfg, log, role: 'webhook' }) : undefined;
  if (selfManaged) shutdown.add('self-managed TLS', () => selfManaged.close());
  const registry = createMetricsRegistry();
  // signing.keyFile unset and selfManaged.signingKey set: the key comes from (or is created in) the cluster.
  const pipeline = await createEventPipeline({ config: await withClusterSigningKey(cfg, log), log, registry, component: 'webhook' });
  // Closers run last-registered first: the listener stops (answering in-flight reviews) before the pipeline flushes.
  shutdown.add('event pipeline', () => pipeline.close());
  let webhook;
  try {
    const nl = cfg.webhook.namespaceLookup;
    const namespaceLookup = nl
      ? createNamespaceLookup({ cacheTtlMs: nl.cacheTtlMs, inCluster: nl.inCluster, ...(nl.kubeconfig ? { kubeconfig: nl.kubeconfig } : {}), ...(nl.context ? { context: nl.context } : {}) })
      : undefined;
    webhook = await startWebhook({ config: cfg, log, sink: pipeline, registry, ...(selfManaged ? { tls: selfManaged.files } : {}), ...(namespaceLookup ? { namespaceLookup } : {}), drain });
  } catch (err) {
    await pipeline.close();
    throw err;
  }
  shutdown.add('webhook', () => webhook.close());
  selfManaged?.follow(() => webhook.server.reloadTls());
  const health = await startHealthServer(cfg.webhook.health, registry);
  health.addCheck('policies', () => webhook.ready());
  health.addCheck('event-pipeline', () => pipeline.ready());
  health.addCheck(DRAIN_CHECK, drain.ready);
  shutdown.add('health', () => health.close());
  log.info({ listen: cfg.webhook.listen, port: webhook.port, health: cfg.webhook.health, healthPort: health.port, policies: cfg.policies.dir }, 'kubetrail webhook ready');
  shutdown.installSignalHandlers();
  return new Promise<number>(() => undefined);
}
