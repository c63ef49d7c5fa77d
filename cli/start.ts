/**
 * `kubetrail start`: the local all-in-one. At this stage it validates the
 * configuration, serves health and metrics, and says which components are
 * still coming; later issues add the webhook and the gateway here.
 */
import { loadConfig } from '../core/config.ts';
import { createLogger } from '../core/logger.ts';
import { createMetricsRegistry, startHealthServer } from '../core/health-server.ts';
import { Shutdown } from '../core/shutdown.ts';

/** Runs `kubetrail start`. */
export async function run(argv: string[]): Promise<number> {
  const cfg = loadConfig({ env: process.env, argv });
  const log = createLogger({ level: cfg.log.level });
  const shutdown = new Shutdown(log);
  const health = await startHealthServer(cfg.webhook.health, createMetricsRegistry());
  shutdown.add('health', () => health.close());
  log.info({ health: cfg.webhook.health, cluster: cfg.cluster, dataDir: cfg.dataDir }, 'kubetrail started');
  process.stdout.write(`kubetrail is running: health and metrics on http://${cfg.webhook.health}/metrics\nThe webhook and the gateway are not built yet; Ctrl-C to stop.\n`);
  shutdown.installSignalHandlers();
  return new Promise<number>(() => undefined);
}
