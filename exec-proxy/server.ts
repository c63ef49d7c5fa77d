/**
 * The gateway's HTTPS listener and its handler chain, after
 * jetstack/kube-oidc-proxy: authenticate → authorize client impersonation
 * (SubjectAccessReview) → gateway guardrails → forward (relay or upgrade)
 * → audit. Every failure goes through `sendError`, the one place that turns
 * errors into Kubernetes `Status` responses.
 *
 * Why node:https and not express (the webhook and health listeners use
 * express): the gateway is a streaming relay. Bodies (watches, `logs -f`,
 * multi-MiB lists) are piped with backpressure, never buffered, and
 * exec/attach/port-forward arrive on the server's `upgrade` event as a raw
 * socket, which express's request pipeline never sees. express would add only
 * its per-request routing cost on the hot path (+10–45 µs per request measured
 * on the webhook, docs/benchmarks.md) where the gateway's own budget is
 * ≈ 100–160 µs.
 *
 * Over 400 lines because it is the one handler chain (authenticate →
 * impersonation → guardrails → forward → audit, and the refusals and
 * shutdown answers of each step): read top to bottom it shows every place a
 * request can be refused and recorded.
 */
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { performance } from 'node:perf_hooks';
import { Counter, Histogram, type Registry } from 'prom-client';
import type { Decision } from '../core/events/model.ts';
import { guardrailDecision } from '../core/events/builders.ts';
import { uuidv7 } from '../core/events/ids.ts';
import type { Identity } from '../core/identity.ts';
import type { Logger } from '../core/logger.ts';
import type { EventSink } from '../core/sinks/sink.ts';
import { evaluateGuardrails, toDecision, type GuardrailPolicy } from '../core/policy/guardrail.ts';
import type { PolicyInput } from '../core/policy/match.ts';
import type { CompiledExecPolicy } from '../core/policy/exec.ts';
import type { CompiledMaskingPolicy } from '../core/masking/stream.ts';
import type { Config } from '../core/config.ts';
import { handleStreamUpgrade } from './stream/index.ts';
import type { StreamContext, StreamSubresource } from './stream/context.ts';
import { extractCredential, type Authenticator } from './authn/index.ts';
import { ApiAuditor, decodeBody } from './audit.ts';
import { AuthError, ProxyError, sendError, statusResponseBytes, toKubeStatus } from './errors.ts';
import { buildUpstreamHeaders, hasImpersonationHeaders, readClientImpersonation, type ImpersonationAuthorizer } from './impersonation.ts';
import { forwardedHeaders, readBodyPrefix, relay } from './relay.ts';
import { isStreamSubresource, parseRequestInfo, SERVED_METHODS, type RequestInfo } from './request-info.ts';
import { parseRequestTarget, type RequestTarget } from './request-target.ts';
import { passThroughUpgrade } from './upgrade.ts';
import { applyConnectionLimits, createConnectionMetrics, timeoutServerOptions, type ConnectionLimits, type ConnectionMetrics } from './connection-limits.ts';
import type { UpstreamTarget } from './upstream.ts';
import { approvalOfDenial, heldStatusBody, holdForApproval, mayBeApprovalDenial, type ApprovalHold } from './approval-hold.ts';

/** The extra key under which an event records who used `kubectl --as` (never forwarded upstream). */
const IMPERSONATOR_EXTRA_KEY = 'kubetrail.io/impersonator';
/** The extra key under which an event refused before impersonation was checked (at shutdown) records whom the caller asked to act as. */
const REQUESTED_AS_EXTRA_KEY = 'kubetrail.io/requested-as';

/** Everything the handler chain needs; built once by main.ts. */
export interface GatewayContext {
  upstream: UpstreamTarget;
  authenticator: Authenticator;
  impersonation: ImpersonationAuthorizer;
  auditor: ApiAuditor;
  sink: EventSink;
  log: Logger;
  /** Holding writes that need approval (config `approvals`); absent: the webhook's denial passes through. */
  approvals?: ApprovalHold;
  /** The active gateway guardrails (from the PolicyStore); empty when none. */
  guardrails: () => readonly GuardrailPolicy[];
  limits: {
    /** Write bodies up to this size are buffered, recorded and visible to guardrails. */
    maxRecordedBodyBytes: number;
    /** Idle timeout of non-long-running requests towards the API server (ms). */
    requestTimeoutMs: number;
    /** Header timeout and connection caps of the listener. */
    connections: ConnectionLimits;
  };
  metrics: GatewayMetrics | undefined;
  /** What the exec/attach/port-forward stream relay needs besides the request (see {@link streamContext}). */
  stream: {
    execPolicies: () => readonly CompiledExecPolicy[];
    masking: () => readonly CompiledMaskingPolicy[];
    limits: Config['proxy']['exec'];
  };
  /** Stoppers of long-running exchanges (watches, follows, upgrades), called on shutdown. */
  active: Set<() => void>;
  /** Set when shutdown begins: new requests get 503, and exchanges tracked from then on are stopped at once. */
  closing?: boolean;
  /** Events still being recorded after their response ended; shutdown waits for them. */
  pending: Set<Promise<unknown>>;
}

/** Keeps `p` in `ctx.pending` until it settles, so shutdown can wait for it. */
function keepPending(ctx: GatewayContext, p: Promise<unknown>): void {
  ctx.pending.add(p);
  const drop = (): void => void ctx.pending.delete(p);
  p.then(drop, drop);
}

/** Registers a stopper in `ctx.active`; returns its unregister function. */
function trackActive(ctx: GatewayContext, stop: () => void): () => void {
  // A watch that began before shutdown but starts streaming after the stop sweep must not hold the listener open.
  if (ctx.closing) queueMicrotask(stop);
  ctx.active.add(stop);
  return () => void ctx.active.delete(stop);
}

/** Prometheus metrics of the gateway. */
export interface GatewayMetrics {
  requests: Counter<'verb' | 'code'>;
  latency: Histogram<'verb'>;
  auditFailures: Counter;
  connections: ConnectionMetrics;
}

/** Registers the gateway metrics in `registry` (idempotent per registry). */
export function createGatewayMetrics(registry: Registry): GatewayMetrics {
  const get = <T>(name: string, make: () => T): T => (registry.getSingleMetric(name) as T | undefined) ?? make();
  return {
    requests: get('kubetrail_gateway_requests_total', () => new Counter({ name: 'kubetrail_gateway_requests_total', help: 'API requests through the gateway by verb and status code.', labelNames: ['verb', 'code'] as const, registers: [registry] })),
    latency: get('kubetrail_gateway_request_duration_seconds', () => new Histogram({ name: 'kubetrail_gateway_request_duration_seconds', help: 'Gateway request latency (to response end) by verb.', labelNames: ['verb'] as const, buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10], registers: [registry] })),
    auditFailures: get('kubetrail_gateway_audit_failures_total', () => new Counter({ name: 'kubetrail_gateway_audit_failures_total', help: 'api.request events that could not be made durable.', registers: [registry] })),
    connections: createConnectionMetrics(registry),
  };
}

/** A request that passed authentication and impersonation checks. */
export interface AuthenticatedRequest {
  /** Who the request is forwarded as (the caller, or whom they were allowed to impersonate). */
  identity: Identity;
  /** The identity as recorded in events (adds who impersonated, if anyone). */
  actor: Identity;
  sessionId: string;
  info: RequestInfo;
  /** WebSocket subprotocols minus any bearer-token entry. */
  subprotocols: string[] | undefined;
  startedAt: number;
}

/** Per-upgrade arguments handed to the upgrade dispatcher. */
export interface UpgradeCall {
  req: IncomingMessage;
  /** The target as parsed (never `req.url`): what is forwarded and what the stream relay reads its options from. */
  target: RequestTarget;
  socket: Duplex;
  head: Buffer;
  auth: AuthenticatedRequest;
}

function sourceIp(req: IncomingMessage): string | undefined {
  return req.socket.remoteAddress;
}

function splitUrl(url: string): { path: string; query: string | undefined } {
  const i = url.indexOf('?');
  return i === -1 ? { path: url, query: undefined } : { path: url.slice(0, i), query: url.slice(i + 1) };
}

/** The method and target of a request as the API server will read them, or why the gateway refuses them. */
type ParsedRequest = { target: RequestTarget; info: RequestInfo; error?: undefined } | { target?: undefined; info: RequestInfo; error: unknown };

/**
 * Reads method and target once, before anything else (issue 13 item 2). A
 * refusal is not answered here: the caller authenticates first, so the
 * recorded refusal names who sent the request.
 */
function parseRequest(req: IncomingMessage): ParsedRequest {
  const method = req.method ?? 'GET';
  try {
    if (!SERVED_METHODS.has(method)) {
      throw new ProxyError('PROXY_ERR_BAD_REQUEST', 'method not served', { clientMessage: `the kubetrail gateway does not serve the method ${method}` });
    }
    const target = parseRequestTarget(req.url ?? '/');
    return { target, info: parseRequestInfo(method, target) };
  } catch (err) {
    return { info: { verb: method.toLowerCase(), isResourceRequest: false, target: {}, isDiscovery: false, isLongRunning: false, isWrite: true }, error: err };
  }
}

/** Path and query of a request as recorded: the canonical spelling that was forwarded, or the raw target of a refused one. */
function recordedUrl(req: IncomingMessage, target: RequestTarget | undefined): { path: string; query: string | undefined } {
  return splitUrl(target?.forward ?? req.url ?? '/');
}

/**
 * Authentication and client impersonation, shared by plain requests and
 * upgrades. The common case — a token whose verification is cached, no
 * client impersonation — is answered synchronously (no promise, no I/O);
 * everything else takes {@link authenticateSlow}.
 */
function authenticate(ctx: GatewayContext, req: IncomingMessage, info: RequestInfo, startedAt: number): AuthenticatedRequest | Promise<AuthenticatedRequest> {
  const cred = extractCredential(req);
  const { key, identity } = ctx.authenticator.cached(cred.token);
  if (identity !== undefined && !hasImpersonationHeaders(req.rawHeaders)) {
    return { identity, actor: identity, sessionId: uuidv7(), info, subprotocols: cred.subprotocols, startedAt };
  }
  return authenticateSlow(ctx, req, info, startedAt, cred.token, key, identity, cred.subprotocols);
}

async function authenticateSlow(
  ctx: GatewayContext,
  req: IncomingMessage,
  info: RequestInfo,
  startedAt: number,
  token: string,
  key: string,
  cachedIdentity: Identity | undefined,
  subprotocols: string[] | undefined,
): Promise<AuthenticatedRequest> {
  const caller = cachedIdentity ?? (await ctx.authenticator.authenticate(token, key));
  let identity = caller;
  let actor = caller;
  if (hasImpersonationHeaders(req.rawHeaders)) {
    const requested = readClientImpersonation(req.headersDistinct);
    if (requested) {
      identity = await ctx.impersonation.authorize(caller, requested);
      actor = { ...identity, extra: { ...(identity.extra ?? {}), [IMPERSONATOR_EXTRA_KEY]: [caller.username] } };
    }
  }
  return { identity, actor, sessionId: uuidv7(), info, subprotocols, startedAt };
}

const OPERATION_BY_VERB: Record<string, string> = { create: 'CREATE', update: 'UPDATE', patch: 'PATCH', delete: 'DELETE', deletecollection: 'DELETE', get: 'GET', list: 'LIST', watch: 'WATCH' };

/** The PolicyInput a gateway guardrail sees: request attributes, and the decoded body of a create/update as `object`. */
function gatewayPolicyInput(auth: AuthenticatedRequest, object: unknown): PolicyInput {
  const t = auth.info.target;
  const request: PolicyInput['request'] = {
    operation: isStreamSubresource(auth.info) ? 'CONNECT' : (OPERATION_BY_VERB[auth.info.verb] ?? auth.info.verb.toUpperCase()),
    userInfo: { username: auth.identity.username, groups: auth.identity.groups },
    resource: { group: t.group ?? '', version: t.version ?? '', resource: t.resource ?? '' },
    verb: auth.info.verb,
  };
  if (auth.identity.uid !== undefined) request.userInfo.uid = auth.identity.uid;
  if (auth.identity.extra !== undefined) request.userInfo.extra = auth.identity.extra;
  if (t.subresource !== undefined) request.subResource = t.subresource;
  if (t.namespace !== undefined) request.namespace = t.namespace;
  if (t.name !== undefined) request.name = t.name;
  return { request, object: object ?? null, oldObject: null };
}

/** What the gateway guardrails decided about a request that may go on. */
interface GuardrailResult {
  decision: Decision | undefined;
  warnings: readonly string[];
}
const NO_GUARDRAIL_RESULT: GuardrailResult = Object.freeze({ decision: undefined, warnings: Object.freeze([]) });

/**
 * Evaluates the gateway guardrails; records every violated rule as a
 * `guardrail.decision` (durably, before answering); throws
 * PROXY_ERR_GUARDRAIL_DENIED when the request must not reach the API server.
 * Returns the Decision and admission-style warnings. With no guardrail
 * that could apply (the common case), answers synchronously.
 */
function applyGuardrails(ctx: GatewayContext, auth: AuthenticatedRequest, object: unknown, objectUnreadable = false): GuardrailResult | Promise<GuardrailResult> {
  if (!auth.info.isResourceRequest || ctx.guardrails().length === 0) return NO_GUARDRAIL_RESULT;
  return applyGuardrailsAsync(ctx, auth, object, objectUnreadable);
}

async function applyGuardrailsAsync(ctx: GatewayContext, auth: AuthenticatedRequest, object: unknown, objectUnreadable: boolean): Promise<GuardrailResult> {
  let policies = ctx.guardrails();
  // A write whose body the gateway cannot read (protobuf or CBOR: kubectl sends typed creates as
  // protobuf; or a body past the recorded-body limit) gives the rules no `object`. Policies that also
  // run at admission are left to the webhook, which always receives the object as JSON, instead of
  // failing closed here on every protobuf client. Gateway-only policies still run, with object null,
  // and fail closed if they need it: nothing else would enforce them.
  if (objectUnreadable) policies = policies.filter((p) => !p.stages.has('admission'));
  if (policies.length === 0) return NO_GUARDRAIL_RESULT;
  const outcome = evaluateGuardrails(policies, gatewayPolicyInput(auth, object), 'gateway');
  if (outcome.errors.length > 0) ctx.log.warn({ errors: outcome.errors, session: auth.sessionId }, 'gateway guardrail evaluation errors');
  if (outcome.matchedPolicies.length === 0) return NO_GUARDRAIL_RESULT;
  const target = auth.info.target;
  await Promise.all(
    outcome.decisions.map((d) => ctx.sink.emit(guardrailDecision({ actor: auth.actor, target, correlation: { session: auth.sessionId } }, d))),
  );
  const decision = toDecision(outcome);
  if (!outcome.allowed) {
    throw new ProxyError('PROXY_ERR_GUARDRAIL_DENIED', 'denied by a gateway guardrail', {
      clientMessage: `kubetrail guardrail "${outcome.policy ?? ''}" denied the request: ${outcome.message ?? ''}`,
    });
  }
  return { decision, warnings: outcome.warnings };
}

/** Longest warning text sent, in UTF-16 code units (the API server also truncates long warnings). */
const MAX_WARNING_CHARS = 2048;

/**
 * `Warning` header lines as the API server writes them (RFC 7234 299 with the
 * text quoted), flat [name, value, ...]. A warning may quote the object (a
 * messageExpression), so its text is the caller's: control characters become
 * spaces, and the text goes on the wire as UTF-8 bytes (Node writes header
 * strings as latin1 and throws on anything else, which inside the relay's
 * response handler was an uncaught exception).
 */
function warningHeaders(warnings: readonly string[]): string[] {
  return warnings.flatMap((w) => {
    let text = w.toWellFormed();
    if (text.length > MAX_WARNING_CHARS) text = `${text.slice(0, MAX_WARNING_CHARS).toWellFormed()}...`;
    // eslint-disable-next-line no-control-regex
    text = text.replace(/[\u0000-\u001f\u007f-\u009f]/g, ' ').replace(/["\\]/g, (c) => `\\${c}`);
    return ['Warning', Buffer.from(`299 - "${text}"`, 'utf8').toString('latin1')];
  });
}

const SHUTTING_DOWN = new ProxyError('PROXY_ERR_SHUTTING_DOWN', 'gateway shutting down');

/**
 * Records a request refused with 503 because shutdown has begun; like every
 * refusal it gets its api.request event (shutdown waits for it in
 * `ctx.pending`, and the sink is closed only after that). The caller is named
 * when their token's verification is cached; otherwise the event has no actor:
 * a gateway that is going away does not call TokenReview or an OIDC issuer.
 * Client impersonation is not resolved either (that needs a
 * SubjectAccessReview): the event names the caller, and the user they asked
 * to act as under the extra key `kubetrail.io/requested-as`.
 */
function refuseAtShutdown(ctx: GatewayContext, req: IncomingMessage, info: RequestInfo, startedAt: number, target: RequestTarget | undefined): void {
  let auth: AuthenticatedRequest | undefined;
  try {
    const cred = extractCredential(req);
    const { identity } = ctx.authenticator.cached(cred.token);
    if (identity !== undefined) {
      let actor = identity;
      const requested = hasImpersonationHeaders(req.rawHeaders) ? readClientImpersonation(req.headersDistinct) : undefined;
      if (requested) actor = { ...identity, extra: { ...(identity.extra ?? {}), [REQUESTED_AS_EXTRA_KEY]: [requested.user] } };
      auth = { identity, actor, sessionId: uuidv7(), info, subprotocols: cred.subprotocols, startedAt };
    }
  } catch {
    // A malformed credential or impersonation set: recorded without an actor, as the 503 it got.
  }
  logRefusal(ctx, req, SHUTTING_DOWN, auth);
  recordRefusal(ctx, req, info, auth, SHUTTING_DOWN, startedAt, target);
  ctx.metrics?.requests.inc({ verb: info.verb, code: '503' });
}

/** Records a request that never reached the API server (refused by the gateway). */
function recordRefusal(ctx: GatewayContext, req: IncomingMessage, info: RequestInfo, auth: AuthenticatedRequest | undefined, err: unknown, startedAt: number, target?: RequestTarget): void {
  const status = toKubeStatus(err);
  const { path, query } = recordedUrl(req, target);
  const decision: Decision = { allowed: false, message: err instanceof AuthError || err instanceof ProxyError ? err.code : 'internal' };
  if (err instanceof ProxyError && err.code === 'PROXY_ERR_GUARDRAIL_DENIED') {
    decision.action = 'deny';
    if (err.clientMessage !== undefined) decision.message = err.clientMessage;
  }
  const p = ctx.auditor.record({
    identity: auth?.actor,
    info,
    method: req.method ?? 'GET',
    path,
    query,
    status: status.code,
    latencyMs: performance.now() - startedAt,
    bytesIn: 0,
    bytesOut: 0,
    userAgent: req.headers['user-agent'],
    sourceIp: sourceIp(req),
    sessionId: auth?.sessionId ?? uuidv7(),
    auditId: undefined,
    decision,
  });
  if (p) {
    keepPending(
      ctx,
      p.catch((e: unknown) => {
        ctx.metrics?.auditFailures.inc();
        ctx.log.error({ err: e }, 'could not record a refused request');
      }),
    );
  }
}

function logRefusal(ctx: GatewayContext, req: IncomingMessage, err: unknown, auth: AuthenticatedRequest | undefined): void {
  const code = err instanceof AuthError || err instanceof ProxyError ? err.code : 'PROXY_ERR_INTERNAL';
  const fields = { code, method: req.method, path: splitUrl(req.url ?? '/').path, user: auth?.identity.username, session: auth?.sessionId };
  if (err instanceof AuthError || err instanceof ProxyError) ctx.log.info(fields, 'request refused');
  else ctx.log.error({ ...fields, err }, 'request failed');
}

/**
 * Handles one plain (non-upgrade) request through the whole chain. The
 * request is kept in `ctx.pending` for its whole life, so shutdown also waits
 * for the event a request records just after its connection has closed.
 */
function handleRequest(ctx: GatewayContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const p = handleRequestChain(ctx, req, res);
  keepPending(ctx, p);
  return p;
}

async function handleRequestChain(ctx: GatewayContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const startedAt = performance.now();
  const parsed = parseRequest(req);
  const info = parsed.info;
  if (ctx.closing) {
    // A request on a keep-alive connection after shutdown began (e.g. kubectl's watch right after its list).
    res.shouldKeepAlive = false;
    if (!req.readableEnded) req.resume();
    refuseAtShutdown(ctx, req, info, startedAt, parsed.target);
    sendError(res, SHUTTING_DOWN);
    return;
  }
  let auth: AuthenticatedRequest | undefined;
  let body: { body: Buffer; complete: boolean } | undefined;
  let decision: Decision | undefined;
  let warnings: readonly string[] = [];
  let identityHeaders: ReturnType<typeof buildUpstreamHeaders> | undefined;
  try {
    // Cached token, no client impersonation, no guardrails, no body: no await before the upstream request.
    const authenticated = authenticate(ctx, req, info, startedAt);
    auth = authenticated instanceof Promise ? await authenticated : authenticated;
    if (parsed.error !== undefined) throw parsed.error;
    const mayHaveBody = req.method !== 'DELETE' || req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
    if (info.isWrite && mayHaveBody) {
      body = await readBodyPrefix(req, ctx.limits.maxRecordedBodyBytes, ctx.limits.requestTimeoutMs);
    }
    let object: unknown = null;
    let objectUnreadable = false;
    if (body !== undefined && (info.verb === 'create' || info.verb === 'update')) {
      const d = body.complete ? decodeBody(req.headers['content-type'], body.body) : undefined;
      if (d?.ok) object = d.value;
      else objectUnreadable = true;
    }
    const guarded = applyGuardrails(ctx, auth, object, objectUnreadable);
    ({ decision, warnings } = guarded instanceof Promise ? await guarded : guarded);
    // Inside the try: an identity that cannot be sent as header values is refused with a Status, not a 500.
    identityHeaders = buildUpstreamHeaders(auth.identity, auth.sessionId, ctx.upstream);
  } catch (err) {
    logRefusal(ctx, req, err, auth);
    recordRefusal(ctx, req, info, auth, err, startedAt, parsed.target);
    ctx.metrics?.requests.inc({ verb: info.verb, code: String(toKubeStatus(err).code) });
    if (err instanceof ProxyError && err.code === 'PROXY_ERR_CLIENT_ABORTED') {
      // A stalled or broken body: answer, then close, rather than wait for the rest.
      res.shouldKeepAlive = false;
      res.once('finish', () => req.socket.destroy());
    } else if (!req.readableEnded) {
      // Drain what the client is still sending so the connection can answer cleanly.
      req.resume();
    }
    sendError(res, err);
    return;
  }

  const a = auth;
  // Set once authentication passed with no parse error (which was thrown above).
  const target = parsed.target as RequestTarget;
  const { path, query } = recordedUrl(req, target);
  const record = (r: { status: number; bytesIn: number; bytesOut: number; auditId: string | undefined }): Promise<unknown> | undefined =>
    ctx.auditor.record({
      identity: a.actor,
      info,
      method: req.method ?? 'GET',
      path,
      query,
      status: r.status,
      latencyMs: performance.now() - startedAt,
      bytesIn: r.bytesIn,
      bytesOut: r.bytesOut,
      userAgent: req.headers['user-agent'],
      sourceIp: sourceIp(req),
      sessionId: a.sessionId,
      auditId: r.auditId,
      body: body?.body,
      bodyContentType: req.headers['content-type'],
      bodyTruncated: body !== undefined && !body.complete,
      ...(decision ? { decision } : {}),
    });

  let recorded = false;
  const relayArgs: Parameters<typeof relay>[0] = {
    upstream: ctx.upstream,
    req,
    res,
    path: target.forward,
    headers: forwardedHeaders(req, identityHeaders as ReturnType<typeof buildUpstreamHeaders>),
    timeoutMs: info.isLongRunning ? undefined : ctx.limits.requestTimeoutMs,
    extraResponseHeaders: warnings.length > 0 ? warningHeaders(warnings) : undefined,
  };
  if (info.isLongRunning) relayArgs.track = (stop) => trackActive(ctx, stop);
  // A write the gateway can send again (whole body in hand) may be held for approval.
  if (ctx.approvals && info.isWrite && (body === undefined || body.complete)) relayArgs.intercept = mayBeApprovalDenial;
  if (body !== undefined) {
    relayArgs.body = body.body;
    relayArgs.bodyComplete = body.complete;
  }
  if (info.isWrite) {
    relayArgs.beforeEnd = async (partial) => {
      recorded = true;
      try {
        await record(partial);
      } catch (err) {
        ctx.metrics?.auditFailures.inc();
        ctx.log.error({ err, session: a.sessionId }, 'write not recorded durably; cutting the response');
        throw new ProxyError('PROXY_ERR_AUDIT_NOT_DURABLE', 'api.request event not durable', { cause: err });
      }
    };
  }
  let result = await relay(relayArgs);
  if (result.intercepted !== undefined) result = await relayHeld(ctx, relayArgs, result, a.info.target.namespace);
  if (result.error !== undefined && !res.headersSent) sendError(res, result.error);
  ctx.metrics?.requests.inc({ verb: info.verb, code: String(result.status) });
  ctx.metrics?.latency.observe({ verb: info.verb }, (performance.now() - startedAt) / 1000);
  if (!recorded) {
    // Reads (and writes that failed before the response ended) are recorded after the fact; a failure is counted and logged, never silent.
    const p = record(result);
    if (p) {
      keepPending(
        ctx,
        p.catch((err: unknown) => {
          ctx.metrics?.auditFailures.inc();
          ctx.log.error({ err, session: a.sessionId }, 'api.request event not recorded');
        }),
      );
    }
  }
}

/**
 * A write came back as a webhook's approval denial: hold the client until the
 * ApprovalRequest is decided (approval-hold.ts), then send the same request
 * again (once approved) or answer with a Status naming the ApprovalRequest.
 * Any other intercepted 403 is relayed as it came.
 */
async function relayHeld(ctx: GatewayContext, args: Parameters<typeof relay>[0], first: Awaited<ReturnType<typeof relay>>, namespace: string | undefined): Promise<Awaited<ReturnType<typeof relay>>> {
  const { res } = args;
  const got = first.intercepted as NonNullable<typeof first.intercepted>;
  const ref = approvalOfDenial(got.body, namespace);
  const answer = (status: number, lines: string[], body: Buffer): typeof first => {
    if (!res.headersSent && !res.destroyed) {
      res.writeHead(status, lines);
      res.end(body);
    }
    return { status, bytesIn: first.bytesIn, bytesOut: body.length, auditId: first.auditId };
  };
  if (ref === undefined || ctx.approvals === undefined) return answer(got.status, got.headerLines, got.body);
  const gone = new AbortController();
  const onClose = (): void => gone.abort();
  res.once('close', onClose);
  const started = performance.now();
  let phase;
  try {
    phase = await holdForApproval(ctx.approvals, ref, gone.signal);
  } catch (err) {
    ctx.log.warn({ err, approval: ref.name }, 'could not watch the ApprovalRequest; answering with the denial');
    phase = 'Pending' as const;
  } finally {
    res.off('close', onClose);
  }
  if (gone.signal.aborted) return { ...first, error: new ProxyError('PROXY_ERR_CLIENT_ABORTED', 'client closed the connection while held for approval') };
  ctx.log.info({ approval: ref.name, namespace: ref.namespace, phase, heldMs: Math.round(performance.now() - started) }, 'request held for approval');
  if (phase !== 'Approved') {
    const body = heldStatusBody(ref, phase, performance.now() - started);
    return answer(403, ['content-type', 'application/json', 'content-length', String(body.length), 'cache-control', 'no-cache, private'], body);
  }
  // Approved: the same bytes again; the webhook admits them and marks the approval used. Not intercepted a
  // second time: if someone used the approval meanwhile, the client gets the new denial as it is.
  const { intercept: _ignored, ...again } = args;
  void _ignored;
  return relay({ ...again, headers: { ...args.headers } });
}

/**
 * The stream relay's context for an authenticated exec/attach/portforward
 * upgrade: the caller (already checked, impersonation resolved), the session
 * id, the pod, and the upstream with the gateway's credentials and
 * impersonation headers built by {@link buildUpstreamHeaders}.
 */
function streamContext(ctx: GatewayContext, call: UpgradeCall): StreamContext {
  const t = call.auth.info.target;
  return {
    identity: call.auth.identity,
    sessionId: call.auth.sessionId,
    target: {
      namespace: t.namespace ?? '',
      pod: t.name ?? '',
      subresource: t.subresource as StreamSubresource,
      query: new URLSearchParams(call.target.query),
    },
    upstream: {
      url: ctx.upstream.url,
      tls: { ...ctx.upstream.tls },
      headers: buildUpstreamHeaders(call.auth.identity, call.auth.sessionId, ctx.upstream) as Record<string, string | string[]>,
    },
    sink: ctx.sink,
    log: ctx.log.child({ session: call.auth.sessionId, user: call.auth.identity.username, namespace: t.namespace, name: t.name }),
    execPolicies: ctx.stream.execPolicies,
    masking: ctx.stream.masking,
    limits: ctx.stream.limits,
    ...(ctx.approvals ? { approvals: ctx.approvals } : {}),
  };
}

/**
 * THE dispatch point for authenticated upgrades: exec, attach and
 * port-forward go to the recording stream relay (exec-proxy/stream), which
 * terminates the client's WebSocket, applies ExecPolicy and masking, and
 * records the session; every other upgrade (e.g. a WebSocket watch) passes
 * through transparently.
 */
function dispatchUpgrade(ctx: GatewayContext, call: UpgradeCall): void {
  if (isStreamSubresource(call.auth.info)) {
    handleStreamUpgrade(streamContext(ctx, call), call.req, call.socket, call.head);
    return;
  }
  void passThrough(ctx, call);
}

async function passThrough(ctx: GatewayContext, call: UpgradeCall): Promise<void> {
  const { req, auth } = call;
  const result = await passThroughUpgrade({
    upstream: ctx.upstream,
    req,
    path: call.target.forward,
    socket: call.socket,
    head: call.head,
    identityHeaders: buildUpstreamHeaders(auth.identity, auth.sessionId, ctx.upstream),
    subprotocols: auth.subprotocols,
    track: (stop) => trackActive(ctx, stop),
  });
  const { path, query } = recordedUrl(req, call.target);
  ctx.metrics?.requests.inc({ verb: auth.info.verb, code: String(result.status) });
  const p = ctx.auditor.record({
      identity: auth.actor,
      info: auth.info,
      method: req.method ?? 'GET',
      path,
      query,
      status: result.status,
      latencyMs: performance.now() - auth.startedAt,
      bytesIn: result.bytesIn,
      bytesOut: result.bytesOut,
      userAgent: req.headers['user-agent'],
      sourceIp: sourceIp(req),
      sessionId: auth.sessionId,
      auditId: result.auditId,
    });
  if (p) {
    keepPending(
      ctx,
      p.catch((err: unknown) => {
        ctx.metrics?.auditFailures.inc();
        ctx.log.error({ err, session: auth.sessionId }, 'api.request event of an upgrade not recorded');
      }),
    );
  }
}

/** Handles an upgrade request: the same chain as plain requests, then {@link dispatchUpgrade}. */
export async function handleUpgrade(ctx: GatewayContext, req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
  const startedAt = performance.now();
  const parsed = parseRequest(req);
  const info = parsed.info;
  socket.on('error', () => socket.destroy());
  if (ctx.closing) {
    refuseAtShutdown(ctx, req, info, startedAt, parsed.target);
    socket.end(statusResponseBytes(SHUTTING_DOWN));
    return;
  }
  let auth: AuthenticatedRequest | undefined;
  try {
    auth = await authenticate(ctx, req, info, startedAt);
    if (parsed.error !== undefined) throw parsed.error;
    await applyGuardrails(ctx, auth, null);
    // Checks that the identity can be sent as header values (built once per identity, reused by the dispatch).
    buildUpstreamHeaders(auth.identity, auth.sessionId);
  } catch (err) {
    logRefusal(ctx, req, err, auth);
    recordRefusal(ctx, req, info, auth, err, startedAt, parsed.target);
    socket.end(statusResponseBytes(err));
    return;
  }
  dispatchUpgrade(ctx, { req, target: parsed.target as RequestTarget, socket, head, auth });
}

/** TLS material of the listener. */
export interface ListenerTls {
  cert: string | Buffer;
  key: string | Buffer;
  /**
   * Where `cert` and `key` were read from. When given, the gateway watches
   * them and serves a new pair without a restart (see startGateway).
   */
  certFile?: string;
  keyFile?: string;
}

/** Creates (does not start) the gateway's HTTPS server. */
export function createGatewayServer(ctx: GatewayContext, tls: ListenerTls): https.Server {
  const server = https.createServer({
    cert: tls.cert,
    key: tls.key,
    // HTTP/1.1 only: upgrades (exec, attach, port-forward) need it, and kubectl speaks it.
    ALPNProtocols: ['http/1.1'],
    // No request timeout (watches and follows last long), but a header and handshake timeout.
    ...timeoutServerOptions(ctx.limits.connections),
    keepAliveTimeout: 65_000,
    noDelay: true,
  });
  applyConnectionLimits(server, ctx.limits.connections, ctx.metrics?.connections);
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    handleRequest(ctx, req, res).catch((err: unknown) => {
      ctx.log.error({ err }, 'unhandled gateway error');
      sendError(res, new ProxyError('PROXY_ERR_INTERNAL', 'unhandled', { cause: err }));
    });
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    handleUpgrade(ctx, req, socket, head).catch((err: unknown) => {
      ctx.log.error({ err }, 'unhandled gateway upgrade error');
      socket.destroy();
    });
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
      // The headers did not arrive within proxy.connections.headersTimeoutMs.
      ctx.metrics?.connections.timeouts.inc({ phase: 'headers' });
      if (socket.writable) socket.end('HTTP/1.1 408 Request Timeout\r\nconnection: close\r\n\r\n');
      else socket.destroy();
      return;
    }
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
    else socket.destroy();
  });
  return server;
}
