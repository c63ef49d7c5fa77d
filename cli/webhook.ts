/**
 * `kubetrail webhook [--config F]`: the admission webhook server. Loads and
 * validates the configuration, opens the event pipeline, loads the policies,
 * serves /validate and /mutate over HTTPS and /healthz, /readyz, /metrics on
 * the health listener. SIGTERM stops accepting, answers the reviews in flight,
 * then flushes and closes the pipeline.
 */
import { loadConfig } from '../core/config.ts';
import { createLogger } from '../core/logger.ts';
import { createMetricsRegistry, startHealthServer } from '../core/health-server.ts';
import { Shutdown } from '../core/shutdown.ts';
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
  checkWebhookConfig(cfg);
  const log = createLogger({ level: cfg.log.level, name: 'kubetrail-webhook' });
  const shutdown = new Shutdown(log);
  const registry = createMetricsRegistry();
  const pipeline = await createEventPipeline({ config: cfg, log, registry, component: 'webhook' });
  // Closers run last-registered first: the listener stops (answering in-flight reviews) before the pipeline flushes.
  shutdown.add('event pipeline', () => pipeline.close());
  let webhook;
  try {
    const nl = cfg.webhook.namespaceLookup;
    const namespaceLookup = nl
      ? createNamespaceLookup({ cacheTtlMs: nl.cacheTtlMs, inCluster: nl.inCluster, ...(nl.kubeconfig ? { kubeconfig: nl.kubeconfig } : {}), ...(nl.context ? { context: nl.context } : {}) })
      : undefined;
    webhook = await startWebhook({ config: cfg, log, sink: pipeline, registry, ...(namespaceLookup ? { namespaceLookup } : {}) });
  } catch (err) {
    await pipeline.close();
    throw err;
  }
  shutdown.add('webhook', () => webhook.close());
  const health = await startHealthServer(cfg.webhook.health, registry);
  health.addCheck('policies', () => webhook.ready());
  health.addCheck('event-pipeline', () => pipeline.ready());
  shutdown.add('health', () => health.close());
  log.info({ listen: cfg.webhook.listen, port: webhook.port, health: cfg.webhook.health, healthPort: health.port, policies: cfg.policies.dir }, 'kubetrail webhook ready');
  shutdown.installSignalHandlers();
  return new Promise<number>(() => undefined);
}
