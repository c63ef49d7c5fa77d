/**
 * The ApprovalRequest object (CRD `approvalrequests.kubetrail.io`, version
 * `v1alpha1`): the shape kubetrail writes and reads, shared with the console
 * (the contract is docs/approvals.md). State lives in the API server only, so
 * every webhook and gateway replica sees the same approvals.
 */

/** API group, version, kind and plural of the CRD. */
export const APPROVAL_GROUP = 'kubetrail.io';
export const APPROVAL_VERSION = 'v1alpha1';
export const APPROVAL_KIND = 'ApprovalRequest';
export const APPROVAL_PLURAL = 'approvalrequests';
/** RBAC verb an approver needs on `approvalrequests.kubetrail.io` (checked with a SubjectAccessReview). */
export const APPROVE_VERB = 'approve';
/**
 * Label holding the first 63 hex digits of the match key (requester +
 * operation + target + body hash): how a retry finds its ApprovalRequest with
 * one consistent list call instead of a cache that may lag behind.
 */
export const MATCH_LABEL = 'kubetrail.io/approval-match';

/** Lifecycle of an ApprovalRequest. */
export type ApprovalPhase = 'Pending' | 'Approved' | 'Denied' | 'Expired' | 'Used';

/** Who asked. */
export interface ApprovalRequester {
  username: string;
  uid?: string;
  groups: string[];
}

/** What was asked: an API write (exec and typed lines are reserved in the contract). */
export interface ApprovalTargetRequest {
  kind: 'api' | 'exec' | 'line';
  /** Lower-case admission operation: create | update | delete | connect. */
  verb: string;
  apiGroup: string;
  apiVersion: string;
  resource: string;
  subresource?: string;
  namespace?: string;
  name?: string;
  /** SHA-256 (hex) of the canonical raw object (see hash.ts); absent for deletes. */
  bodySha256?: string;
  /** The object as recorded in events: masked. */
  object?: unknown;
  pod?: string;
  container?: string;
  command?: string[];
  line?: string;
}

/** Who may approve, from the policy. Empty lists: anyone RBAC allows to `approve`. */
export interface ApproverSet {
  users: string[];
  groups: string[];
}

/** spec of an ApprovalRequest: written by kubetrail only, immutable (the CRD refuses changes). */
export interface ApprovalSpec {
  requester: ApprovalRequester;
  request: ApprovalTargetRequest;
  policy: string;
  rule: string;
  reason: string;
  /** RFC 3339. */
  expiresAt: string;
  approvers: ApproverSet;
  minApprovals: number;
  /** Seconds after approval during which the same identity + request is admitted again; absent = once. */
  window?: number;
  correlation: { eventId?: string; sessionId?: string; auditId?: string };
}

/** One approver's decision, bound to the API server's authenticated user by the webhook. */
export interface ApprovalDecision {
  user: string;
  groups: string[];
  decision: 'approve' | 'deny';
  comment?: string;
  time: string;
}

/** status of an ApprovalRequest. */
export interface ApprovalStatus {
  phase: ApprovalPhase;
  decisions: ApprovalDecision[];
  approvedAt?: string;
  usedAt?: string;
  usedCount?: number;
}

/** An ApprovalRequest as read from the API server. */
export interface ApprovalRequest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace: string; resourceVersion?: string; uid?: string; labels?: Record<string, string>; creationTimestamp?: string };
  spec: ApprovalSpec;
  status?: ApprovalStatus;
}

/** The approval settings of the policy rule that asked for approval. */
export interface ApprovalRequirement {
  policy: string;
  rule: string;
  /** Display name of who must approve (GuardrailPolicy `approval`). */
  approval: string;
  reason: string;
  approvers: ApproverSet;
  minApprovals: number;
  /** Seconds a granted approval may be reused; absent = once. */
  windowSeconds?: number;
  /** Seconds until a request (and an unused approval) expires. */
  expirySeconds: number;
}
