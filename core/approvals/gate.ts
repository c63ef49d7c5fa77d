/**
 * The one owner of finding, creating, using and expiring ApprovalRequests
 * (issue 17), for the webhook and for the gateway's own exec policy (an
 * ExecPolicy `requireApproval` rule: the gateway creates the record and holds
 * the session, exec-proxy/stream/session.ts). Admission webhooks may not
 * hold a request (timeoutSeconds ≤ 30), so a `requireApproval` request is
 * denied with the name of its ApprovalRequest, unless an approved, unused one
 * matches (same requester, operation, target and body hash): then it is
 * admitted and marked used. Every caller, through the gateway or straight to
 * the API server, gets the same record: the gateway holds on the denial this
 * webhook gives and resends once approved (exec-proxy/approval-hold.ts).
 *
 * It also reviews writes to ApprovalRequests themselves: only kubetrail
 * creates them or marks them used/expired, and a decision must name the user
 * the API server authenticated, who may `approve` (SubjectAccessReview), is
 * an allowed approver and not the requester (core/approvals/lifecycle.ts).
 */
import { approvalEvent } from '../events/builders.ts';
import type { Actor, ApprovalBody, Correlation, EventDraft, Target } from '../events/model.ts';
import type { Logger } from '../logger.ts';
import type { EventSink } from '../sinks/sink.ts';
import { ApprovalError } from './errors.ts';
import { approvalBodySha256, approvalMatchKey, matchLabelValue } from './hash.ts';
import { checkStatusChange, effectivePhase, usability } from './lifecycle.ts';
import type { ApprovalStore } from './store.ts';
import type { Notifier } from './notify.ts';
import { APPROVAL_GROUP, APPROVAL_PLURAL, type ApprovalRequest, type ApprovalRequester, type ApprovalRequirement, type ApprovalSpec, type ApprovalTargetRequest } from './types.ts';
// Type only: the admission fields the webhook hands over (the gateway calls decide() directly).
import type { AdmissionRequest } from '../../webhook/review.ts';

/** What the gate answers for a request that needs approval. */
export type GateAnswer =
  | { allowed: true; name: string; namespace: string }
  | { allowed: false; name?: string; namespace?: string; message: string; code: number };

/** What {@link ApprovalGate} needs. */
export interface ApprovalGateOptions {
  store: ApprovalStore;
  sink: EventSink;
  log: Logger;
  /** Namespace of the ApprovalRequests of cluster-scoped targets. */
  namespace: string;
  /** Usernames kubetrail writes as; the store's own identity (SelfSubjectReview) is added. */
  serviceUsers: readonly string[];
  /** Annotation keys of kubetrail's stamp (left out of the body hash). */
  stampAnnotations: readonly string[];
  notifier?: Notifier;
  now?: () => number;
}

/** Decides `requireApproval` requests against ApprovalRequests, and reviews writes to them. */
export class ApprovalGate {
  readonly #o: ApprovalGateOptions;
  readonly #now: () => number;
  #service: Promise<ReadonlySet<string>> | undefined;

  constructor(o: ApprovalGateOptions) {
    this.#o = o;
    this.#now = o.now ?? Date.now;
  }

  /** kubetrail's own usernames: configured ones plus whoever the store's credentials are. */
  #serviceUsers(): Promise<ReadonlySet<string>> {
    this.#service ??= this.#o.store.whoAmI().then(
      (me) => new Set([...this.#o.serviceUsers, me.username]),
      (err: unknown) => {
        this.#service = undefined; // retry on the next call
        throw err;
      },
    );
    return this.#service;
  }

  /** True for a review of an ApprovalRequest (or its status). */
  static isApprovalWrite(req: AdmissionRequest): boolean {
    return req.resource.group === APPROVAL_GROUP && req.resource.resource === APPROVAL_PLURAL;
  }

  /** The request part of an ApprovalRequest for an admission request. */
  #targetRequest(req: AdmissionRequest): ApprovalTargetRequest {
    const r: ApprovalTargetRequest = {
      kind: 'api',
      verb: req.operation.toLowerCase(),
      apiGroup: req.resource.group,
      apiVersion: req.resource.version,
      resource: req.resource.resource,
    };
    if (req.subResource) r.subresource = req.subResource;
    if (req.namespace) r.namespace = req.namespace;
    if (req.name) r.name = req.name;
    // CONNECT: the object is the PodExecOptions (command, container, stdin, tty): hashed too, so an
    // approval of one command never admits another.
    if (req.operation !== 'DELETE' && req.object !== null) r.bodySha256 = approvalBodySha256(req.object, this.#o.stampAnnotations);
    if (req.operation === 'CONNECT' && req.resource.resource === 'pods' && (req.subResource === 'exec' || req.subResource === 'attach')) {
      const o = (req.object ?? {}) as { container?: unknown; command?: unknown };
      r.kind = 'exec';
      r.pod = req.name;
      if (typeof o.container === 'string' && o.container !== '') r.container = o.container;
      if (Array.isArray(o.command)) r.command = o.command.filter((c): c is string => typeof c === 'string');
    }
    return r;
  }

  #envelope(ar: ApprovalRequest, correlation: Correlation): { target: Target; correlation: Correlation } {
    const r = ar.spec.request;
    const target: Target = { group: r.apiGroup, version: r.apiVersion, resource: r.resource };
    if (r.subresource) target.subresource = r.subresource;
    if (r.namespace) target.namespace = r.namespace;
    if (r.name) target.name = r.name;
    return { target, correlation };
  }

  #body(ar: ApprovalRequest, extra: Partial<ApprovalBody> = {}): ApprovalBody {
    const s = ar.spec;
    const b: ApprovalBody = { name: ar.metadata.name, namespace: ar.metadata.namespace, phase: ar.status?.phase ?? 'Pending', policy: s.policy, rule: s.rule, verb: s.request.verb, ...extra };
    if (s.request.bodySha256) b.requestSha256 = s.request.bodySha256;
    return b;
  }

  async #emit(d: EventDraft): Promise<void> {
    try {
      await this.#o.sink.emit(d);
    } catch (err) {
      // The ApprovalRequest itself is the state; the event is the record. Never dropped silently.
      this.#o.log.error({ err, type: d.type }, 'approval event could not be made durable');
      throw err;
    }
  }

  #refusal(ar: ApprovalRequest, what: string, req: ApprovalRequirement | undefined): GateAnswer {
    const n = ar.metadata.name;
    const ns = ar.metadata.namespace;
    const who = req?.approval ?? 'an approver';
    const message =
      `${what}. kubetrail ApprovalRequest ${ns}/${n} (policy ${ar.spec.policy}, rule ${ar.spec.rule}: ${ar.spec.reason}; approval by ${who}). ` +
      `Wait for it: kubetrail approvals wait ${n} -n ${ns}; an approver runs: kubetrail approvals approve ${n} -n ${ns}; then retry the same request.`;
    return { allowed: false, name: n, namespace: ns, message, code: 403 };
  }

  /**
   * The answer for a request the guardrails say needs approval. `masked` is
   * the object as events record it (what the ApprovalRequest shows);
   * `correlation` joins the approval events to the admission.review.
   */
  async check(req: AdmissionRequest, need: ApprovalRequirement, masked: unknown, correlation: Correlation): Promise<GateAnswer> {
    const requester = { username: req.userInfo.username, groups: [...req.userInfo.groups], ...(req.userInfo.uid ? { uid: req.userInfo.uid } : {}) };
    const request = this.#targetRequest(req);
    if (masked !== undefined && masked !== null && req.operation !== 'DELETE') request.object = masked;
    return this.decide({ requester, request, need, correlation, dryRun: req.dryRun === true, namespace: req.namespace || this.#o.namespace, authn: 'apiserver' });
  }

  /**
   * The answer for any request that needs approval (an admission request, an
   * exec session or a typed line the gateway holds): admit it when an
   * approved, unused ApprovalRequest matches (marking it used), refuse while
   * one is pending or denied, else create one and refuse naming it. Holding
   * and waiting are the caller's (exec-proxy/approval-hold.ts); a caller that
   * saw its ApprovalRequest approved calls this again to use it.
   */
  async decide(q: { requester: ApprovalRequester; request: ApprovalTargetRequest; need: ApprovalRequirement; correlation: Correlation; dryRun: boolean; namespace: string; authn: Actor['authn'] }): Promise<GateAnswer> {
    const { requester, need, correlation } = q;
    const now = this.#now();
    const { object: masked, ...request } = q.request;
    const key = approvalMatchKey(requester, request);
    const label = matchLabelValue(key);
    const ns = q.namespace;
    const actor: Actor = { username: requester.username, groups: requester.groups, authn: q.authn };
    const found = (await this.#o.store.findByMatch(ns, label)).filter((a) => approvalMatchKey(a.spec.requester, a.spec.request) === key);
    // Newest first: the latest record decides (an old Used one does not hide a fresh Pending one).
    for (const ar of found.reverse()) {
      let cur: ApprovalRequest | undefined = ar;
      for (let attempt = 0; cur !== undefined && attempt < 5; attempt++) {
        const u = usability(cur, now);
        if (u === 'expired') {
          if (cur.status?.phase !== 'Expired') await this.#expire(cur, correlation);
          break;
        }
        if (u === 'used') break;
        if (u === 'pending') return this.#refusal(cur, 'This request is waiting for approval', need);
        if (u === 'denied') {
          // Deny is final: the same request stays refused until that record expires.
          if (now < Date.parse(cur.spec.expiresAt)) {
            const by = (cur.status?.decisions ?? []).filter((d) => d.decision === 'deny').map((d) => d.user).join(', ');
            const message = `This request was denied by ${by || 'an approver'}: kubetrail ApprovalRequest ${cur.metadata.namespace}/${cur.metadata.name} (policy ${cur.spec.policy}). A denial is final; the same request stays refused until ${cur.spec.expiresAt}.`;
            return { allowed: false, name: cur.metadata.name, namespace: cur.metadata.namespace, message, code: 403 };
          }
          break;
        }
        // usable
        if (q.dryRun) return { allowed: true, name: cur.metadata.name, namespace: cur.metadata.namespace };
        const used: ApprovalRequest | undefined = await this.#o.store.replaceStatus(cur, {
          ...(cur.status ?? { phase: 'Approved', decisions: [] }),
          phase: 'Used',
          usedAt: new Date(now).toISOString(),
          usedCount: (cur.status?.usedCount ?? 0) + 1,
        });
        if (used !== undefined) {
          await this.#emit(approvalEvent('approval.used', { actor, ...this.#envelope(used, correlation) }, this.#body(used, { usedCount: used.status?.usedCount ?? 1 })));
          return { allowed: true, name: used.metadata.name, namespace: used.metadata.namespace };
        }
        // Another replica wrote it first (e.g. used it): read again and decide again.
        cur = await this.#o.store.get(cur.metadata.namespace, cur.metadata.name).catch((err: unknown) => {
          if (err instanceof ApprovalError && err.code === 'APPROVAL_ERR_NOT_FOUND') return undefined;
          throw err;
        });
      }
    }
    if (q.dryRun) return { allowed: false, message: `This request requires approval by ${need.approval} (${need.reason}); a dry run creates no ApprovalRequest.`, code: 403 };
    const spec: ApprovalSpec = {
      requester,
      request: { ...request, ...(masked !== undefined && masked !== null ? { object: masked } : {}) },
      policy: need.policy,
      rule: need.rule,
      reason: need.reason,
      expiresAt: new Date(now + need.expirySeconds * 1000).toISOString(),
      approvers: { users: [...need.approvers.users], groups: [...need.approvers.groups] },
      minApprovals: need.minApprovals,
      ...(need.windowSeconds === undefined ? {} : { window: need.windowSeconds }),
      correlation: {
        ...(correlation.session ? { sessionId: correlation.session } : {}),
        ...(correlation.auditId ? { auditId: correlation.auditId } : {}),
      },
    };
    const name = `ar-${key.slice(0, 10)}-${now.toString(36)}`;
    const ar = await this.#o.store.create(ns, name, label, spec);
    await this.#emit(
      approvalEvent(
        'approval.requested',
        { actor, ...this.#envelope(ar, correlation) },
        this.#body(ar, { reason: spec.reason, expiresAt: spec.expiresAt, approvers: spec.approvers, minApprovals: spec.minApprovals, ...(spec.window === undefined ? {} : { window: spec.window }) }),
      ),
    );
    this.#o.notifier?.requested(ar);
    return this.#refusal(ar, 'This request requires approval', need);
  }

  /**
   * Marks `ar` Expired, conditional on the resourceVersion it was read at:
   * of several replicas (or a sweep and a reader) only the one whose write
   * lands emits approval.expired. True when this call expired it.
   */
  async #expire(ar: ApprovalRequest, correlation: Correlation): Promise<boolean> {
    const done = await this.#o.store.replaceStatus(ar, { ...(ar.status ?? { decisions: [] }), phase: 'Expired' } as NonNullable<ApprovalRequest['status']>);
    if (done !== undefined) await this.#emit(approvalEvent('approval.expired', this.#envelope(done, correlation), this.#body(done)));
    return done !== undefined;
  }

  /**
   * Expires every Pending or Approved ApprovalRequest past its expiry, so the
   * record says Expired (and approval.expired is emitted) without anyone
   * having to read it. Resolves how many this call expired.
   */
  async sweepExpired(): Promise<number> {
    const now = this.#now();
    let n = 0;
    for (const ar of await this.#o.store.list()) {
      if (ar.status?.phase === 'Expired' || effectivePhase(ar, now) !== 'Expired') continue;
      const c = ar.spec.correlation;
      if (await this.#expire(ar, { ...(c.sessionId ? { session: c.sessionId } : {}), ...(c.auditId ? { auditId: c.auditId } : {}) })) n++;
    }
    return n;
  }

  /** Runs {@link sweepExpired} every `intervalMs` (one at a time); returns the stop function. */
  startExpirySweep(intervalMs: number): () => void {
    let running = false;
    const timer = setInterval(() => {
      if (running) return;
      running = true;
      this.sweepExpired()
        .then((n) => n > 0 && this.#o.log.info({ expired: n }, 'ApprovalRequests expired'))
        .catch((err: unknown) => this.#o.log.warn({ err, code: err instanceof ApprovalError ? err.code : undefined }, 'expiry sweep failed; retried on the next tick'))
        .finally(() => (running = false));
    }, intervalMs);
    timer.unref();
    return () => clearInterval(timer);
  }

  /**
   * Reviews a write to an ApprovalRequest. Resolves undefined to admit it, or
   * the refusal message. Emits `approval.decided` for an admitted decision.
   */
  async review(req: AdmissionRequest, correlation: Correlation): Promise<string | undefined> {
    if (req.operation === 'DELETE' || req.operation === 'CONNECT') return undefined;
    const service = (await this.#serviceUsers()).has(req.userInfo.username);
    if (req.operation === 'CREATE') return service ? undefined : `only kubetrail creates ApprovalRequests (${req.userInfo.username} may not)`;
    const old = req.oldObject as ApprovalRequest;
    const next = req.object as ApprovalRequest;
    if (req.subResource !== 'status') {
      // The main resource: the API server ignores status here and the CRD refuses spec changes; metadata is kubetrail's.
      return service ? undefined : `only kubetrail changes ApprovalRequests; approvers decide through the status (kubetrail approvals approve|deny)`;
    }
    const user = { username: req.userInfo.username, groups: req.userInfo.groups };
    const now = this.#now();
    const change = checkStatusChange(old, next, user, service, now);
    if (!change.ok) return `${change.message} (ApprovalRequest ${old.metadata.namespace}/${old.metadata.name})`;
    if (change.transition !== 'decide' || change.decision === undefined) return undefined;
    const allowed = await this.#o.store.canApprove({ username: req.userInfo.username, groups: req.userInfo.groups, ...(req.userInfo.uid ? { uid: req.userInfo.uid } : {}), extra: req.userInfo.extra }, old.metadata.namespace, old.metadata.name);
    if (!allowed) return `${req.userInfo.username} may not approve ApprovalRequests: RBAC grants no verb "approve" on approvalrequests.kubetrail.io in ${old.metadata.namespace}`;
    if (!req.dryRun) {
      const d = change.decision;
      await this.#emit(
        approvalEvent(
          'approval.decided',
          { actor: { username: user.username, groups: [...user.groups], authn: 'apiserver' }, ...this.#envelope(next, { ...correlation, ...(old.spec.correlation.sessionId ? { session: old.spec.correlation.sessionId } : {}) }) },
          this.#body(next, {
            decision: { user: d.user, groups: [...d.groups], decision: d.decision, time: d.time, ...(d.comment ? { comment: d.comment } : {}) },
            decisions: (next.status?.decisions ?? []).map((x) => ({ user: x.user, decision: x.decision, time: x.time })),
            minApprovals: old.spec.minApprovals,
          }),
        ),
      );
    }
    return undefined;
  }
}

