/**
 * Wiring of the gateway: builds the upstream, the authenticators, the
 * impersonation authorizer, the auditor and the guardrail source from the
 * configuration, and starts the HTTPS listener. Used by `kubetrail proxy`,
 * `kubetrail start` and tests; it owns no logic of its own.
 */
import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { Config } from '../core/config.ts';
import { approvalsFromConfig } from '../core/approvals/from-config.ts';
import { watchServerCertificate } from '../core/tls-reload.ts';
import type { Drain } from '../core/drain.ts';
import type { Logger } from '../core/logger.ts';
import type { EventSink } from '../core/sinks/sink.ts';
import { splitHostPort } from '../core/health-server.ts';
import { compileGuardrail, type GuardrailPolicy } from '../core/policy/guardrail.ts';
import { PolicyStore } from '../core/policy/store.ts';
import { execPolicyCompiler, type CompiledExecPolicy } from '../core/policy/exec.ts';
import { maskingPolicyCompiler, type CompiledMaskingPolicy } from '../core/masking/stream.ts';
import { Authenticator } from './authn/index.ts';
import { JwtAuthenticator } from './authn/jwt.ts';
import { TokenReviewAuthenticator } from './authn/token-review.ts';
import { ApiAuditor, createDefaultMasker, type BodyMasker } from './audit.ts';
import { ImpersonationAuthorizer } from './impersonation.ts';
import { createGatewayMetrics, createGatewayServer, type GatewayContext, type ListenerTls } from './server.ts';
import { drainSessions } from './stream/index.ts';
import { loadUpstream, type Upstream } from './upstream.ts';

/** What {@link startGateway} needs beyond the configuration. */
export interface GatewayOptions {
  config: Config;
  log: Logger;
  /** Where api.request and guardrail.decision events go. */
  sink: EventSink;
  /** Listener certificate and key; with certFile/keyFile, reloaded when those files change. */
  tls: ListenerTls;
  /** Debounce of certificate reloads (ms). */
  tlsReloadDebounceMs?: number;
  registry?: Registry;
  /** Overrides `config.proxy.listen` (e.g. `127.0.0.1:0` in tests). */
  listen?: string;
  /**
   * Gateway guardrails. Default: a PolicyStore on `config.policies.dir`
   * (when the directory exists), watched for changes.
   */
  guardrails?: () => readonly GuardrailPolicy[];
  /** Exec policies and stream masking for the stream relay; default from the same PolicyStore (empty with `guardrails` given or no directory). */
  execPolicies?: () => readonly CompiledExecPolicy[];
  masking?: () => readonly CompiledMaskingPolicy[];
  /** Masking of recorded write bodies; default {@link createDefaultMasker} with `config.masking`. */
  mask?: BodyMasker;
  /** Test hook: the OIDC verification clock. */
  now?: () => Date;
  /** The process's drain after SIGTERM (core/drain.ts). */
  drain?: Drain;
}

/** A running gateway. */
export interface Gateway {
  /** `https://host:port` of the listener. */
  readonly url: string;
  readonly port: number;
  readonly upstream: Upstream;
  readonly context: GatewayContext;
  /**
   * Reads tls.certFile/keyFile again and serves that pair to new connections
   * (also done when the files change); false, with the previous pair kept,
   * when the new one does not load or there are no files.
   */
  reloadTls(): boolean;
  /**
   * Stops accepting, ends idle keep-alive connections and long-running
   * exchanges, waits for requests in flight and for their events, then stops
   * the policy watch and the upstream agent. The sink is the caller's to close.
   */
  close(): Promise<void>;
}

/** Builds everything and starts listening. Throws (before listening) on a bad upstream, issuer rule or policy set. */
export async function startGateway(opts: GatewayOptions): Promise<Gateway> {
  const cfg = opts.config.proxy;
  const log = opts.log.child({ component: 'gateway' });
  const upstream = await loadUpstream({ kubeconfig: cfg.upstream.kubeconfig, context: cfg.upstream.context, inCluster: cfg.upstream.inCluster, log });
  try {
    const jwt = cfg.authn.jwt.length > 0 ? new JwtAuthenticator(cfg.authn.jwt, { leewaySeconds: cfg.authn.leewaySeconds, ...(opts.now ? { now: opts.now } : {}) }) : undefined;
    if (jwt) {
      // Not fatal: an issuer that is down now may be up by the first request; it is retried then.
      for (const f of await jwt.warmUp()) log.warn({ issuer: f.issuer, err: f.err }, 'OIDC issuer discovery failed at start');
    }
    const tokenReview = cfg.authn.tokenReview ? new TokenReviewAuthenticator({ upstream, cacheTtlMs: cfg.authn.tokenReviewCacheTtlMs }) : undefined;
    const authenticator = new Authenticator({ ...(jwt ? { jwt } : {}), ...(tokenReview ? { tokenReview } : {}) });

    let guardrails = opts.guardrails;
    let execPolicies = opts.execPolicies ?? ((): readonly CompiledExecPolicy[] => []);
    let masking = opts.masking ?? ((): readonly CompiledMaskingPolicy[] => []);
    let store: PolicyStore | undefined;
    if (!guardrails) {
      if (existsSync(opts.config.policies.dir)) {
        store = new PolicyStore({
          dir: opts.config.policies.dir,
          debounceMs: opts.config.policies.reloadDebounceMs,
          log,
          ...(opts.registry ? { registry: opts.registry } : {}),
          compilers: { GuardrailPolicy: compileGuardrail, ExecPolicy: execPolicyCompiler, MaskingPolicy: maskingPolicyCompiler },
        });
        await store.load();
        store.watch();
        const s = store;
        guardrails = () => s.current().of<GuardrailPolicy>('GuardrailPolicy');
        if (!opts.execPolicies) execPolicies = () => s.current().of<CompiledExecPolicy>('ExecPolicy');
        if (!opts.masking) masking = () => s.current().of<CompiledMaskingPolicy>('MaskingPolicy');
      } else {
        log.info({ dir: opts.config.policies.dir }, 'no policy directory; the gateway enforces no guardrails');
        guardrails = () => [];
      }
    }

    const ctx: GatewayContext = {
      upstream,
      authenticator,
      impersonation: new ImpersonationAuthorizer({ upstream, cacheTtlMs: cfg.authn.tokenReviewCacheTtlMs }),
      auditor: new ApiAuditor({
        sink: opts.sink,
        log,
        discoverySampleRate: cfg.discoverySampleRate,
        mask: opts.mask ?? createDefaultMasker(opts.config.masking),
      }),
      sink: opts.sink,
      log,
      guardrails,
      limits: { maxRecordedBodyBytes: cfg.maxRecordedBodyBytes, requestTimeoutMs: cfg.requestTimeoutMs, connections: cfg.connections },
      metrics: opts.registry ? createGatewayMetrics(opts.registry) : undefined,
      stream: { execPolicies, masking, limits: cfg.exec },
      active: new Set(),
      pending: new Set(),
      ...approvalHoldFromConfig(opts.config, opts.sink, log),
    };
    const server = createGatewayServer(ctx, opts.tls);
    opts.drain?.attach(server);
    const { certFile, keyFile } = opts.tls;
    const certReload =
      certFile !== undefined && keyFile !== undefined
        ? watchServerCertificate(server, { certFile, keyFile }, { log, what: 'gateway', debounceMs: opts.tlsReloadDebounceMs ?? 100 })
        : { reload: () => false, stop: () => undefined };
    const { host, port } = splitHostPort(opts.listen ?? cfg.listen);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    const actual = (server.address() as AddressInfo).port;
    const shownHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
    log.info({ listen: `${host}:${actual}`, upstream: upstream.url.origin, issuers: cfg.authn.jwt.length, tokenReview: cfg.authn.tokenReview }, 'gateway listening');
    return {
      url: `https://${shownHost}:${actual}`,
      port: actual,
      upstream,
      context: ctx,
      reloadTls: certReload.reload,
      close: async () => {
        ctx.closing = true;
        certReload.stop();
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        // Watches, follows and upgrades would hold the listener open forever: end them, as the API server does on shutdown.
        for (const stop of [...ctx.active]) stop();
        // Keep-alive connections whose request was in flight become idle later: close those as they do.
        const sweep = setInterval(() => server.closeIdleConnections(), 50);
        // Exec/attach/port-forward sessions in progress end on their own (their recording is completed);
        // the process's shutdown deadline bounds how long that may take.
        await drainSessions();
        await closed;
        clearInterval(sweep);
        // Requests still finishing and their events being made durable; a request adds its
        // event as it finishes, so wait until nothing is left.
        while (ctx.pending.size > 0) await Promise.allSettled([...ctx.pending]);
        await store?.close();
        upstream.close();
      },
    };
  } catch (err) {
    upstream.close();
    throw err;
  }
}

/** `{ approvals }` of the gateway context from config `approvals` (absent: `{}`). */
function approvalHoldFromConfig(cfg: Config, sink: EventSink, log: Logger): Pick<GatewayContext, 'approvals'> {
  // The gateway creates ApprovalRequests for its own ExecPolicy rules: its identity must be in approvals.serviceUsers for the webhook to admit them.
  const built = approvalsFromConfig(cfg, sink, log, []);
  return built === undefined ? {} : { approvals: built };
}
