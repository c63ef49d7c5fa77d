/**
 * What the webhook does with a valid AdmissionRequest: decide (guardrails),
 * mutate (stamp + MutationPolicy), and capture (an `admission.review` event,
 * durable before the answer).
 *
 * Which webhook records what (settled here, documented in docs/policies.md):
 * - `/validate` records every review it sees, all operations, as an
 *   `admission.review` event with `webhook: validate`, the decision, matched
 *   policies, masked object and oldObject (the object as finally admitted,
 *   since validating webhooks run after mutation), plus one
 *   `guardrail.decision` event per violated rule.
 * - `/mutate` records an `admission.review` with `webhook: mutate` for each
 *   patch it returns (object as received, and the patch). Its event id is the
 *   `kubetrail.io/event` annotation it stamps.
 * - Joining them: the API server gives every webhook call its own request uid
 *   (`correlation.admissionUid` is per call, and joins a review to its
 *   `guardrail.decision` events), so the validate event of a write finds its
 *   mutate event through the stamp: the validating webhook sees the mutated
 *   object, whose `kubetrail.io/event` annotation is the mutate event's id.
 *   Both put their event id in `auditAnnotations` (`<webhook name>/event` in
 *   the API server's audit log), where the audit ID joins them too.
 * - Dry-run: evaluated (same decision, same patch minus the event id) but not
 *   recorded, so no event id is stamped or annotated.
 * - A no-op UPDATE (the object less the stamp equals oldObject): the patch puts
 *   the previous stamp back (stamp.ts), so the API server does not write;
 *   /mutate records nothing, /validate records the request.
 * - When the event cannot be made durable before the API server's deadline:
 *   with `webhook.failClosed` (default) a request matched by an enforcing
 *   guardrail (deny/requireApproval) is denied; everything else is admitted
 *   with a warning and without an event id.
 */
import { isDeepStrictEqual } from 'node:util';
import { annotationOps, restoreStampOps, withoutStamp } from './stamp.ts';
import { uuidv7 } from '../core/events/ids.ts';
import { admissionReview, guardrailDecision } from '../core/events/builders.ts';
import fastJsonPatch, { type Operation } from 'fast-json-patch';

export { annotationOps, escapePointer, restoreStampOps } from './stamp.ts';
import type { Actor, AdmissionReviewBody, Correlation, Decision, EventDraft, Target } from '../core/events/model.ts';
import type { EventSink } from '../core/sinks/sink.ts';
import type { Logger } from '../core/logger.ts';
import { maskObject, type ObjectMasking, type ValuePattern } from '../core/masking/object.ts';
import { patternsFor, type CompiledMaskingPolicy } from '../core/masking/stream.ts';
import { evaluateGuardrails, isGuardrailed, toDecision, type GuardrailOutcome, type GuardrailPolicy } from '../core/policy/guardrail.ts';
import { applyMutations, type MutationPolicy } from '../core/policy/mutation.ts';
import type { PolicyInput } from '../core/policy/match.ts';
import type { PolicySet } from '../core/policy/store.ts';
import type { AdmissionRequest, AdmissionResponse } from './review.ts';
import { applyApprovals, type ApprovalGate } from './approvals.ts';

// fast-json-patch is CommonJS: only its default export is visible to ESM.
const { compare } = fastJsonPatch;

/** Annotation: who last created or updated the object (the prefix follows config.webhook.name). */
const ANN_LAST_MODIFIED_BY = 'kubetrail.io/last-modified-by';
/** Annotation: the gateway session that made the change (when it came through the gateway). */
const ANN_SESSION = 'kubetrail.io/session';
/** Annotation: the admission.review event that recorded the change. */
const ANN_EVENT = 'kubetrail.io/event';
/** The userInfo.extra key the gateway sets (Impersonate-Extra-kubetrail.io%2Fsession). */
const EXTRA_SESSION = 'kubetrail.io/session';
/**
 * The userInfo.extra key that carries the API server's audit ID to the webhook, which the API server itself never
 * sends (no `Audit-ID` header on webhook calls; `request.uid` is per call): a gateway that sets `Audit-ID: X` upstream
 * also sets `Impersonate-Extra-kubetrail.io%2Faudit-id: X`. Trusted as the session extra is: only a principal allowed
 * to impersonate that extra can set it.
 */
const EXTRA_AUDIT_ID = 'kubetrail.io/audit-id';
// What an audit ID may look like to be recorded as one (the API server's are UUIDs; callers may choose theirs).
const AUDIT_ID = /^[A-Za-z0-9._-]{1,128}$/;

/** Looks up a Namespace object by name: the object, null when it does not exist, undefined when unknown. */
export type NamespaceLookup = (name: string) => Promise<unknown>;

/** Counters the handler reports (wired to Prometheus by the server). */
export interface HandlerMetrics {
  review(webhook: 'validate' | 'mutate', operation: string, allowed: boolean, seconds: number): void;
  recordFailure(webhook: 'validate' | 'mutate', failedClosed: boolean): void;
}

/** Options of {@link AdmissionHandler}. */
export interface AdmissionHandlerOptions {
  sink: EventSink;
  policies: () => PolicySet;
  masking: ObjectMasking;
  log: Logger;
  failClosed: boolean;
  /** Prefix of the stamp annotations (config.webhook.name, default `kubetrail.io`): `<prefix>/last-modified-by` etc. */
  annotationPrefix?: string;
  namespaceLookup?: NamespaceLookup;
  /** Human approval (config `approvals`); absent: requireApproval denies and nothing can approve. */
  approvals?: ApprovalGate;
  metrics?: HandlerMetrics;
  now?: () => number;
}

class DeadlineError extends Error {}

function withDeadline<T>(p: Promise<T>, deadline: number, now: () => number): Promise<T> {
  const ms = deadline - now();
  if (ms <= 0) return Promise.reject(new DeadlineError('deadline passed'));
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new DeadlineError('deadline passed')), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Decides, mutates and records admission requests. */
/** API groups whose objects are reviews answered in the request, never persisted: never stamped. */
const EPHEMERAL_GROUPS: ReadonlySet<string> = new Set(['authentication.k8s.io', 'authorization.k8s.io']);

export class AdmissionHandler {
  readonly #o: AdmissionHandlerOptions;
  readonly #now: () => number;
  readonly #annotations: { lastModifiedBy: string; session: string; event: string };

  constructor(opts: AdmissionHandlerOptions) {
    this.#o = opts;
    this.#now = opts.now ?? (() => performance.now());
    const prefix = opts.annotationPrefix;
    this.#annotations =
      prefix === undefined || prefix === 'kubetrail.io'
        ? { lastModifiedBy: ANN_LAST_MODIFIED_BY, session: ANN_SESSION, event: ANN_EVENT }
        : { lastModifiedBy: `${prefix}/last-modified-by`, session: `${prefix}/session`, event: `${prefix}/event` };
  }

  async #input(req: AdmissionRequest, lookupNamespace = true): Promise<PolicyInput> {
    const input: PolicyInput = {
      request: {
        operation: req.operation,
        userInfo: req.userInfo,
        resource: req.resource,
        subResource: req.subResource,
        namespace: req.namespace,
        name: req.name,
        uid: req.uid,
        kind: req.kind,
        dryRun: req.dryRun,
      },
      object: req.object,
      oldObject: req.oldObject,
    };
    if (req.resource.group === '' && req.resource.resource === 'namespaces') {
      input.namespaceObject = req.object ?? req.oldObject;
    } else if (req.namespace === '') {
      input.namespaceObject = null;
    } else if (this.#o.namespaceLookup && lookupNamespace) {
      try {
        input.namespaceObject = await this.#o.namespaceLookup(req.namespace);
      } catch (err) {
        this.#o.log.warn({ err, namespace: req.namespace }, 'namespace lookup failed; label selectors match (fail closed)');
      }
    }
    return input;
  }

  /** The mutate event id this write is stamped with, when this request is what carries the stamp (not an older one). */
  #stampOf(req: AdmissionRequest): string | undefined {
    if ((req.operation !== 'CREATE' && req.operation !== 'UPDATE') || req.subResource !== '') return undefined;
    const key = this.#annotations.event;
    const of = (o: unknown): unknown => (o as { metadata?: { annotations?: Record<string, unknown> } } | null)?.metadata?.annotations?.[key];
    const now = of(req.object);
    return typeof now === 'string' && now !== of(req.oldObject) ? now : undefined;
  }

  #draft(req: AdmissionRequest, body: AdmissionReviewBody, id?: string): EventDraft<'admission.review'> {
    const actor: Actor = { username: req.userInfo.username, groups: req.userInfo.groups, authn: 'apiserver' };
    if (req.userInfo.uid) actor.uid = req.userInfo.uid;
    if (Object.keys(req.userInfo.extra).length > 0) actor.extra = req.userInfo.extra;
    const target: Target = { group: req.resource.group, version: req.resource.version, resource: req.resource.resource };
    if (req.subResource) target.subresource = req.subResource;
    if (req.namespace) target.namespace = req.namespace;
    if (req.name) target.name = req.name;
    const objUid = ((req.object ?? req.oldObject) as { metadata?: { uid?: unknown } } | null)?.metadata?.uid;
    if (typeof objUid === 'string') target.uid = objUid;
    const correlation: Correlation = { admissionUid: req.uid };
    const session = req.userInfo.extra[EXTRA_SESSION]?.[0];
    if (session) correlation.session = session;
    const auditId = req.userInfo.extra[EXTRA_AUDIT_ID];
    if (auditId?.length === 1 && AUDIT_ID.test(auditId[0] as string)) correlation.auditId = auditId[0] as string;
    // The mutate event names itself; the validate event the stamp the mutating webhook gave this write.
    const stamp = id ?? this.#stampOf(req);
    if (stamp !== undefined) correlation.stamp = stamp;
    return admissionReview({ actor, target, correlation, id }, body);
  }

  /** Secret-shaped substrings to mask in this request's objects: the patterns of every MaskingPolicy that applies (any stream). */
  #valuePatterns(req: AdmissionRequest): ValuePattern[] {
    const policies = this.#o.policies().of<CompiledMaskingPolicy>('MaskingPolicy');
    if (policies.length === 0) return [];
    const who = { namespace: req.namespace, user: { username: req.userInfo.username, groups: req.userInfo.groups, authn: 'apiserver' as const } };
    const byName = new Map<string, ValuePattern>();
    for (const stream of ['stdout', 'stderr', 'stdin'] as const) for (const p of patternsFor(policies, who, stream)) byName.set(p.name, p);
    return [...byName.values()];
  }

  #body(req: AdmissionRequest, webhook: 'validate' | 'mutate', decision: Decision, extra: Partial<AdmissionReviewBody>): AdmissionReviewBody {
    const body: AdmissionReviewBody = {
      operation: req.operation,
      dryRun: req.dryRun,
      kind: req.kind,
      decision,
      webhook,
      ...extra,
    };
    // Only those in what the event copies (object, oldObject).
    const raw = req.rawNumbers?.filter((p) => p.startsWith('/object/') || p.startsWith('/oldObject/'));
    if (raw !== undefined && raw.length > 0) body.rawNumbers = raw;
    const patterns = this.#valuePatterns(req);
    // The request's kind masks objects sent without apiVersion/kind (a TokenReview's spec.token is masked all the same).
    const opts = { canonicalView: true, kind: { group: req.kind.group, kind: req.kind.kind } };
    // Built as canonical views: sealing the event then does not walk the (15 KiB) objects a second time.
    if (body.object === undefined && req.object !== null) body.object = maskObject(this.#o.masking, req.object, patterns, opts);
    if (req.oldObject !== null) body.oldObject = maskObject(this.#o.masking, req.oldObject, patterns, opts);
    // A MutationPolicy patch can copy values of the object: masked like it (the stamp's own values pass unchanged).
    if (body.patch !== undefined) body.patch = maskObject(this.#o.masking, body.patch, patterns) as unknown[];
    return body;
  }

  /** Records `draft` (and `more`) durably before `deadline`; resolves the event id, or undefined when it could not. */
  async #record(webhook: 'validate' | 'mutate', draft: EventDraft<'admission.review'>, deadline: number, more: EventDraft[] = []): Promise<string | undefined> {
    try {
      const emitted = withDeadline(Promise.all([this.#o.sink.emit(draft), ...more.map((d) => this.#o.sink.emit(d))]), deadline, this.#now);
      const [ev] = await emitted;
      return ev.id;
    } catch (err) {
      this.#o.log.error(
        { err: err instanceof DeadlineError ? undefined : err, deadline: err instanceof DeadlineError, webhook, uid: draft.correlation?.admissionUid },
        'admission event could not be made durable',
      );
      return undefined;
    }
  }

  #failClosed(req: AdmissionRequest, guardrailed: boolean, webhook: 'validate' | 'mutate'): AdmissionResponse | undefined {
    const closed = this.#o.failClosed && guardrailed;
    this.#o.metrics?.recordFailure(webhook, closed);
    if (!closed) return undefined;
    return {
      uid: req.uid,
      allowed: false,
      status: { code: 503, reason: 'ServiceUnavailable', message: 'kubetrail could not record this request durably, and guardrailed requests are denied when they cannot be recorded (webhook.failClosed)' },
    };
  }

  /** Evaluates the guardrails (admission stage) for a request: exported for the gateway-free unit tests and the benchmark. */
  async evaluate(req: AdmissionRequest): Promise<{ input: PolicyInput; outcome: GuardrailOutcome }> {
    const input = await this.#input(req);
    const outcome = evaluateGuardrails(this.#o.policies().of<GuardrailPolicy>('GuardrailPolicy'), input, 'admission');
    return { input, outcome };
  }

  /** The validating webhook: decide and record. `deadline` is on the handler's clock (performance.now by default). */
  async validate(req: AdmissionRequest, deadline: number): Promise<AdmissionResponse> {
    const started = this.#now();
    const { outcome } = await this.evaluate(req);
    const res: AdmissionResponse = { uid: req.uid, allowed: outcome.allowed };
    if (!outcome.allowed) res.status = { code: 403, reason: 'Forbidden', message: outcome.message ?? 'denied by kubetrail policy' };
    if (this.#o.approvals) {
      const masked = (): unknown => (req.object === null ? undefined : maskObject(this.#o.masking, req.object, this.#valuePatterns(req), { kind: { group: req.kind.group, kind: req.kind.kind } }));
      await applyApprovals(this.#o.approvals, req, outcome, res, masked, this.#draft(req, {} as AdmissionReviewBody).correlation ?? { admissionUid: req.uid }, this.#o.log);
    }
    const warnings = [...outcome.warnings];
    for (const e of outcome.errors) this.#o.log.warn({ policy: e.policy, rule: e.rule, error: e.message, uid: req.uid }, 'policy evaluation error');
    if (!req.dryRun) {
      const decision = toDecision(outcome);
      const body = this.#body(req, 'validate', decision, {
        matchedPolicies: outcome.matchedPolicies,
        latencyMs: Math.round((this.#now() - started) * 1000) / 1000,
      });
      const draft = this.#draft(req, body);
      const decisions: EventDraft[] = outcome.decisions.map((d) => guardrailDecision(draft, d));
      const id = await this.#record('validate', draft, deadline, decisions);
      if (id === undefined) {
        const closed = this.#failClosed(req, outcome.guardrailed, 'validate');
        if (closed) return this.#done('validate', req, closed, started);
        warnings.push('kubetrail could not record this request');
      } else {
        res.auditAnnotations = { event: id };
        if (outcome.policy) res.auditAnnotations['policy'] = outcome.policy;
      }
    }
    if (warnings.length > 0) res.warnings = warnings;
    return this.#done('validate', req, res, started);
  }

  /** The mutating webhook: stamp, apply MutationPolicy, record the patch. */
  async mutate(req: AdmissionRequest, deadline: number): Promise<AdmissionResponse> {
    const started = this.#now();
    const res: AdmissionResponse = { uid: req.uid, allowed: true };
    const obj = req.object;
    // Only whole-object writes are stamped: subresource writes (status, scale...) would churn annotations controllers do not own.
    if ((req.operation !== 'CREATE' && req.operation !== 'UPDATE') || req.subResource !== '' || obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
      return this.#done('mutate', req, res, started);
    }
    // Review objects (TokenReview, SubjectAccessReview, SelfSubjectReview...) are answered, never stored, and the API
    // server rejects them if their metadata is not empty ("metadata: Invalid value ... must be empty"), so a stamp would break them.
    if (EPHEMERAL_GROUPS.has(req.resource.group)) return this.#done('mutate', req, res, started);
    const md = (obj as { metadata?: unknown }).metadata;
    if (md === null || typeof md !== 'object' || Array.isArray(md)) return this.#done('mutate', req, res, started);
    const set = this.#o.policies();
    // The Namespace is only worth a lookup when some MutationPolicy may look at it.
    const input = await this.#input(req, set.of<MutationPolicy>('MutationPolicy').length > 0);
    const mutated = applyMutations(set.of<MutationPolicy>('MutationPolicy'), input);
    for (const e of mutated.errors) this.#o.log.warn({ policy: e.policy, error: e.message, uid: req.uid }, 'mutation policy condition error; not applied');
    // MutationPolicy changes (rare) are diffed; the stamp (every write) is generated directly, without copying the object.
    const target = mutated.object as Record<string, unknown>;
    const policyOps = mutated.object === obj ? [] : (compare(obj, target) as Operation[]);
    const ann = this.#annotations;
    const stamp: Record<string, string> = { [ann.lastModifiedBy]: req.userInfo.username };
    const session = req.userInfo.extra[EXTRA_SESSION]?.[0];
    if (session) stamp[ann.session] = session;
    // A no-op UPDATE (e.g. a re-applied manifest) stays one: the previous stamp is kept rather than a new event id
    // written, which would make every re-apply a write. Nothing is recorded for it here; /validate records the request.
    const old = req.oldObject;
    if (req.operation === 'UPDATE' && old !== null && typeof old === 'object' && !Array.isArray(old)) {
      const keys = [ann.lastModifiedBy, ann.session, ann.event];
      if (isDeepStrictEqual(withoutStamp(target, keys), withoutStamp(old as Record<string, unknown>, keys))) {
        const ops = [...policyOps, ...restoreStampOps(target, old as Record<string, unknown>, keys)];
        if (ops.length > 0) res.patch = ops;
        return this.#done('mutate', req, res, started);
      }
    }
    if (req.dryRun) {
      res.patch = [...policyOps, ...annotationOps(target, stamp)];
      return this.#done('mutate', req, res, started);
    }
    const eventId = uuidv7();
    const patch = [...policyOps, ...annotationOps(target, { ...stamp, [ann.event]: eventId })];
    const body = this.#body(req, 'mutate', { allowed: true, action: 'allow' }, {
      patch,
      ...(mutated.applied.length > 0 ? { matchedPolicies: mutated.applied } : {}),
      latencyMs: Math.round((this.#now() - started) * 1000) / 1000,
    });
    const id = await this.#record('mutate', this.#draft(req, body, eventId), deadline);
    if (id === undefined) {
      const closed = this.#failClosed(req, isGuardrailed(set.of<GuardrailPolicy>('GuardrailPolicy'), input, 'admission'), 'mutate');
      if (closed) return this.#done('mutate', req, closed, started);
      // Not recorded: do not stamp an event id that does not exist.
      res.patch = [...policyOps, ...annotationOps(target, stamp)];
      res.warnings = ['kubetrail could not record this request'];
      return this.#done('mutate', req, res, started);
    }
    res.patch = patch;
    res.auditAnnotations = { event: id };
    return this.#done('mutate', req, res, started);
  }

  #done(webhook: 'validate' | 'mutate', req: AdmissionRequest, res: AdmissionResponse, started: number): AdmissionResponse {
    this.#o.metrics?.review(webhook, req.operation, res.allowed, (this.#now() - started) / 1000);
    return res;
  }
}
