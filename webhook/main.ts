/**
 * Wiring of the admission webhook: policy store, masking, handler, HTTPS
 * listener and metrics, from the configuration. Used by `kubetrail webhook`,
 * `kubetrail start` and tests; it owns no logic of its own.
 */
import { Counter, Histogram, type Registry } from 'prom-client';
import type { Config } from '../core/config.ts';
import { ConfigError } from '../core/errors.ts';
import type { Drain } from '../core/drain.ts';
import type { Logger } from '../core/logger.ts';
import type { EventSink } from '../core/sinks/sink.ts';
import { compileObjectMasking } from '../core/masking/object.ts';
import { maskingPolicyCompiler } from '../core/masking/stream.ts';
import { compileGuardrail } from '../core/policy/guardrail.ts';
import { compileMutation } from '../core/policy/mutation.ts';
import { PolicyStore } from '../core/policy/store.ts';
import { AdmissionHandler, type HandlerMetrics, type NamespaceLookup } from './handler.ts';
import { startWebhookServer, type WebhookServer } from './server.ts';
import { approvalGateFromConfig } from './approvals-wiring.ts';

/** What {@link startWebhook} needs beyond the configuration. */
export interface WebhookOptions {
  config: Config;
  log: Logger;
  /** Where admission.review and guardrail.decision events go (the pipeline, durable). */
  sink: EventSink;
  registry: Registry;
  /** Overrides config.webhook.listen (e.g. 127.0.0.1:0 in tests). */
  listen?: string;
  /** Overrides config.webhook.tls. */
  tls?: { certFile: string; keyFile: string };
  /** Overrides config.policies.dir. */
  policiesDir?: string;
  namespaceLookup?: NamespaceLookup;
  /** The process's drain after SIGTERM (core/drain.ts). */
  drain?: Drain;
}

/** A running webhook. */
export interface Webhook {
  readonly port: number;
  readonly server: WebhookServer;
  readonly policies: PolicyStore;
  readonly handler: AdmissionHandler;
  /** True when the policy set is loaded and its last reload succeeded. */
  ready(): boolean;
  /** Stops accepting, answers in-flight reviews, stops watching policies (the sink is the caller's to close). */
  close(): Promise<void>;
}

function handlerMetrics(registry: Registry): HandlerMetrics {
  const get = <T>(name: string, make: () => T): T => (registry.getSingleMetric(name) as T | undefined) ?? make();
  const reviews = get('kubetrail_webhook_reviews_total', () => new Counter({ name: 'kubetrail_webhook_reviews_total', help: 'Admission reviews answered.', labelNames: ['webhook', 'operation', 'allowed'], registers: [registry] }));
  const duration = get(
    'kubetrail_webhook_review_duration_seconds',
    () =>
      new Histogram({
        name: 'kubetrail_webhook_review_duration_seconds',
        help: 'Time to answer an admission review, event durable included.',
        labelNames: ['webhook'],
        buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
        registers: [registry],
      }),
  );
  const failures = get(
    'kubetrail_webhook_record_failures_total',
    () => new Counter({ name: 'kubetrail_webhook_record_failures_total', help: 'Reviews whose event could not be made durable, by whether the review was then denied.', labelNames: ['webhook', 'failed_closed'], registers: [registry] }),
  );
  // Label children bound once per label combination (a handful): prom-client otherwise hashes the label object on every review.
  const reviewChildren = new Map<string, { inc(): void }>();
  const durationChildren = { validate: duration.labels({ webhook: 'validate' }), mutate: duration.labels({ webhook: 'mutate' }) };
  return {
    review: (webhook, operation, allowed, seconds) => {
      const key = `${webhook} ${operation} ${allowed}`;
      let child = reviewChildren.get(key);
      if (child === undefined) reviewChildren.set(key, (child = reviews.labels({ webhook, operation, allowed: String(allowed) })));
      child.inc();
      durationChildren[webhook].observe(seconds);
    },
    recordFailure: (webhook, failedClosed) => failures.inc({ webhook, failed_closed: String(failedClosed) }),
  };
}

/**
 * Checks what the webhook needs beyond the config schema, so `kubetrail
 * webhook` fails before opening anything: the TLS pair is set, and
 * `webhook.name` can prefix annotations. Throws ConfigError with every issue.
 */
export function checkWebhookConfig(cfg: Config, hasTls = cfg.webhook.tls !== undefined): void {
  const issues: { path: string; message: string }[] = [];
  if (!hasTls) issues.push({ path: 'webhook.tls', message: 'certFile and keyFile are required: the API server only calls webhooks over HTTPS' });
  // The stamp annotations are <webhook.name>/...: an invalid prefix would make the API server reject every patch.
  if (cfg.webhook.name.length > 253 || !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(cfg.webhook.name)) {
    issues.push({ path: 'webhook.name', message: 'must be a DNS subdomain (it prefixes the stamp annotations), e.g. kubetrail.io' });
  }
  if (issues.length > 0) throw new ConfigError('CFG_ERR_INVALID', issues);
}

/** Loads the policies (throws PolicyError if the initial set is invalid), then listens. */
export async function startWebhook(opts: WebhookOptions): Promise<Webhook> {
  const cfg = opts.config;
  const log = opts.log.child({ component: 'webhook' });
  const tls = opts.tls ?? cfg.webhook.tls;
  checkWebhookConfig(cfg, tls !== undefined);
  if (!tls) throw new TypeError('webhook.tls is required'); // for the type checker: checkWebhookConfig has thrown already
  const policies = new PolicyStore({
    dir: opts.policiesDir ?? cfg.policies.dir,
    debounceMs: cfg.policies.reloadDebounceMs,
    log,
    registry: opts.registry,
    // MaskingPolicy patterns also mask secret-shaped substrings in captured objects; ExecPolicy is the gateway's only.
    compilers: { GuardrailPolicy: compileGuardrail, MutationPolicy: compileMutation, MaskingPolicy: maskingPolicyCompiler },
  });
  await policies.load();
  policies.watch();
  const gate = approvalGateFromConfig(cfg, opts.sink, log);
  // Eager expiry (several replicas agree through the conditional status write, core/approvals/gate.ts).
  const sweepSeconds = cfg.approvals?.expirySweepSeconds ?? 0;
  const stopSweep = gate.approvals && sweepSeconds > 0 ? gate.approvals.startExpirySweep(sweepSeconds * 1000) : () => undefined;
  const handler = new AdmissionHandler({
    sink: opts.sink,
    policies: () => policies.current(),
    masking: compileObjectMasking({ envNamePatterns: cfg.masking.envNamePatterns, paths: cfg.masking.paths }),
    log,
    failClosed: cfg.webhook.failClosed,
    annotationPrefix: cfg.webhook.name,
    metrics: handlerMetrics(opts.registry),
    ...(opts.namespaceLookup ? { namespaceLookup: opts.namespaceLookup } : {}),
    ...gate,
  });
  let server: WebhookServer;
  try {
    server = await startWebhookServer({
      listen: opts.listen ?? cfg.webhook.listen,
      tls,
      handler,
      log,
      maxBodyBytes: cfg.webhook.maxBodyBytes,
      defaultTimeoutMs: cfg.webhook.defaultTimeoutMs,
      ...(opts.drain ? { drain: opts.drain } : {}),
    });
  } catch (err) {
    stopSweep();
    await policies.close();
    throw err;
  }
  return {
    port: server.port,
    server,
    policies,
    handler,
    ready: () => policies.current().generation > 0 && policies.lastError() === undefined,
    close: async () => {
      stopSweep();
      await server.close();
      await policies.close();
    },
  };
}
