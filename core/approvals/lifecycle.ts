/**
 * The lifecycle rules of an ApprovalRequest, pure: which phase its decisions
 * give, whether a user may decide, whether a status change is legal, and
 * whether an approval can be used for a request now. The webhook applies
 * {@link checkStatusChange} to every status write, which is what binds a
 * decision to the API server's authenticated user.
 *
 *   Pending ──approve×minApprovals──▶ Approved ──used──▶ Used
 *      │ └────────deny (final)─────▶ Denied
 *      └──(expiresAt passes, Pending or Approved)──▶ Expired
 */
import { isDeepStrictEqual } from 'node:util';
import type { ApprovalDecision, ApprovalPhase, ApprovalRequest, ApprovalSpec, ApprovalStatus } from './types.ts';

/** A user as the API server authenticated them. */
export interface DecidingUser {
  username: string;
  groups: readonly string[];
}

/** The phase an ApprovalRequest is in at `now`: a Pending or Approved one past expiresAt is Expired even before anyone writes it. */
export function effectivePhase(ar: Pick<ApprovalRequest, 'spec' | 'status'>, now: number): ApprovalPhase {
  const phase = ar.status?.phase ?? 'Pending';
  if ((phase === 'Pending' || phase === 'Approved') && now >= Date.parse(ar.spec.expiresAt)) return 'Expired';
  return phase;
}

/** The phase that `decisions` give: any deny → Denied; minApprovals distinct approvers (never the requester) → Approved; else Pending. */
export function tally(spec: ApprovalSpec, decisions: readonly ApprovalDecision[]): 'Pending' | 'Approved' | 'Denied' {
  if (decisions.some((d) => d.decision === 'deny')) return 'Denied';
  const approvers = new Set(decisions.filter((d) => d.decision === 'approve' && d.user !== spec.requester.username).map((d) => d.user));
  return approvers.size >= spec.minApprovals ? 'Approved' : 'Pending';
}

/** Why `user` may not decide on `ar` now, or undefined when they may (RBAC is checked separately, with a SubjectAccessReview). */
export function decisionRefusal(ar: Pick<ApprovalRequest, 'spec' | 'status' | 'metadata'>, user: DecidingUser, now: number): string | undefined {
  const name = ar.metadata.name;
  const phase = effectivePhase(ar, now);
  if (phase !== 'Pending') return `ApprovalRequest ${name} is ${phase}: decisions are final`;
  if (user.username === ar.spec.requester.username) return `${user.username} requested ${name} and cannot decide on their own request`;
  const { users, groups } = ar.spec.approvers;
  if (users.length + groups.length > 0 && !users.includes(user.username) && !user.groups.some((g) => groups.includes(g))) {
    return `${user.username} is not an approver of ${name} (policy ${ar.spec.policy})`;
  }
  if ((ar.status?.decisions ?? []).some((d) => d.user === user.username)) return `${user.username} has already decided on ${name}`;
  return undefined;
}

/** The outcome of checking a status write. */
export type StatusChange =
  | { ok: true; decision?: ApprovalDecision; transition: 'init' | 'decide' | 'use' | 'expire' | 'none' }
  | { ok: false; message: string };

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  const sa = new Set(a);
  return sa.size === new Set(b).size && b.every((x) => sa.has(x));
}

/**
 * Whether the status write `old → next` by `user` is legal. kubetrail's own
 * identities (`service`) initialise the status, mark it Used or Expired, and
 * never decide. Anyone else may only append ONE decision naming themselves
 * (the user and groups the API server authenticated), on a Pending request,
 * with the phase that the decisions then give; nothing else may change.
 */
export function checkStatusChange(old: ApprovalRequest, next: ApprovalRequest, user: DecidingUser, service: boolean, now: number): StatusChange {
  if (!isDeepStrictEqual(old.spec, next.spec)) return { ok: false, message: 'the spec of an ApprovalRequest cannot change' };
  const before: ApprovalStatus = old.status ?? { phase: 'Pending', decisions: [] };
  const after = next.status;
  if (after === undefined) return { ok: false, message: 'status cannot be removed' };
  const beforeDecisions = before.decisions ?? [];
  const afterDecisions = after.decisions ?? [];
  if (isDeepStrictEqual(before, after)) return { ok: true, transition: 'none' };
  const phase = effectivePhase(old, now);
  if (service) {
    if (!isDeepStrictEqual(beforeDecisions, afterDecisions)) return { ok: false, message: 'kubetrail does not decide on approvals' };
    const same = (k: keyof ApprovalStatus): boolean => isDeepStrictEqual(before[k], after[k]);
    if (old.status === undefined && after.phase === 'Pending' && afterDecisions.length === 0) return { ok: true, transition: 'init' };
    if (after.phase === 'Expired' && (phase === 'Expired' || before.phase === 'Expired')) return { ok: true, transition: 'expire' };
    if (after.phase === 'Used' && (before.phase === 'Approved' || before.phase === 'Used') && same('approvedAt') && after.usedAt !== undefined && (after.usedCount ?? 0) === (before.usedCount ?? 0) + 1) {
      return { ok: true, transition: 'use' };
    }
    return { ok: false, message: `kubetrail cannot move an ApprovalRequest from ${before.phase} to ${after.phase}` };
  }
  if (afterDecisions.length !== beforeDecisions.length + 1 || !isDeepStrictEqual(afterDecisions.slice(0, beforeDecisions.length), beforeDecisions)) {
    return { ok: false, message: 'a decision appends exactly one entry to status.decisions and changes no other' };
  }
  const d = afterDecisions[afterDecisions.length - 1] as ApprovalDecision;
  if (d.user !== user.username || !sameSet(d.groups ?? [], user.groups)) {
    return { ok: false, message: `a decision must name the user who makes it (${user.username}) and their groups` };
  }
  if (d.decision !== 'approve' && d.decision !== 'deny') return { ok: false, message: 'decision must be approve or deny' };
  if (Number.isNaN(Date.parse(d.time)) || Math.abs(Date.parse(d.time) - now) > 5 * 60_000) return { ok: false, message: 'decision time must be now (RFC 3339)' };
  const refusal = decisionRefusal(old, user, now);
  if (refusal !== undefined) return { ok: false, message: refusal };
  const expected = tally(old.spec, afterDecisions);
  if (after.phase !== expected) return { ok: false, message: `with these decisions the phase is ${expected}, not ${after.phase}` };
  if ((expected === 'Approved') !== (after.approvedAt !== undefined)) return { ok: false, message: 'approvedAt is set when, and only when, the request becomes Approved' };
  if (after.usedAt !== before.usedAt || after.usedCount !== before.usedCount) return { ok: false, message: 'only kubetrail marks an approval used' };
  return { ok: true, decision: d, transition: 'decide' };
}

/** The status after `user` decides (what the CLI and the console write). */
export function withDecision(ar: ApprovalRequest, user: DecidingUser, decision: 'approve' | 'deny', comment: string | undefined, now: number): ApprovalStatus {
  const d: ApprovalDecision = { user: user.username, groups: [...user.groups], decision, time: new Date(now).toISOString() };
  if (comment !== undefined && comment !== '') d.comment = comment;
  const decisions = [...(ar.status?.decisions ?? []), d];
  const phase = tally(ar.spec, decisions);
  const status: ApprovalStatus = { ...(ar.status ?? { phase: 'Pending', decisions: [] }), phase, decisions };
  if (phase === 'Approved') status.approvedAt = d.time;
  return status;
}

/** What an ApprovalRequest means for a request that matches it. */
export type Usability = 'usable' | 'pending' | 'denied' | 'expired' | 'used';

/** Whether `ar` admits its request now: Approved and unused, or Used within the policy's window after approval. */
export function usability(ar: ApprovalRequest, now: number): Usability {
  const phase = effectivePhase(ar, now);
  switch (phase) {
    case 'Approved':
      return 'usable';
    case 'Pending':
      return 'pending';
    case 'Denied':
      return 'denied';
    case 'Expired':
      return 'expired';
    case 'Used': {
      const w = ar.spec.window;
      const at = Date.parse(ar.status?.approvedAt ?? '');
      return w !== undefined && !Number.isNaN(at) && now < at + w * 1000 ? 'usable' : 'used';
    }
  }
}
