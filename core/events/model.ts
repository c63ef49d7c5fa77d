/**
 * The canonical kubetrail event, `kubetrail.io/v1` (see shared DESIGN.md).
 * Every observation — an admission review, a gateway request, an exec session,
 * a guardrail decision, a signed checkpoint — is one of these.
 */

/** The event types kubetrail emits. */
export type EventType =
  | 'admission.review'
  | 'api.request'
  | 'session.start'
  | 'session.end'
  | 'session.data'
  | 'guardrail.decision'
  | 'chain.checkpoint'
  | 'chain.gap'
  | 'approval.requested'
  | 'approval.decided'
  | 'approval.expired'
  | 'approval.used';

/** Which kubetrail process emitted an event. `instance` scopes the sequence numbers. */
export interface EventSource {
  component: 'webhook' | 'proxy' | 'cli' | 'console';
  instance: string;
  cluster: string;
}

/** How the actor proved who they are. */
export type AuthnMethod = 'oidc' | 'serviceaccount' | 'apiserver' | 'token';

/** Who did it. */
export interface Actor {
  username: string;
  uid?: string;
  groups: string[];
  extra?: Record<string, string[]>;
  authn: AuthnMethod;
  issuer?: string;
  subject?: string;
}

/** What it was done to. */
export interface Target {
  group?: string;
  version?: string;
  resource?: string;
  subresource?: string;
  namespace?: string;
  name?: string;
  uid?: string;
}

/** Identifiers that join this event to others and to the API server's audit log. */
export interface Correlation {
  session?: string;
  request?: string;
  admissionUid?: string;
  /** The API server's audit ID, where kubetrail knows it (the gateway always; the webhook only when the gateway passed it on). */
  auditId?: string;
  /**
   * Admission events: the id of the mutate event whose stamp (`kubetrail.io/event`) this write carries, on that
   * mutate event and on the same write's validate event: joins the two, and the API server's audit event (annotation
   * `<mutating webhook name>/event`), where the audit ID is not known.
   */
  stamp?: string;
}

/** Hash-chain link: `hash` = SHA-256 over the canonical event with `chain.hash` empty. */
export interface ChainLink {
  seq: number;
  prev: string;
  hash: string;
}

/** A guardrail outcome. */
export interface Decision {
  allowed: boolean;
  /** Action of the deciding rule: deny | warn | audit | requireApproval, or allow when none matched. */
  action?: 'allow' | 'deny' | 'warn' | 'audit' | 'requireApproval';
  policy?: string;
  rule?: string;
  message?: string;
  warnings?: string[];
}

/** Body of `admission.review`. */
export interface AdmissionReviewBody {
  operation: 'CREATE' | 'UPDATE' | 'DELETE' | 'CONNECT';
  dryRun: boolean;
  kind?: { group: string; version: string; kind: string };
  object?: unknown;
  oldObject?: unknown;
  decision: Decision;
  /** RFC 6902 operations applied by the mutating webhook. */
  patch?: unknown[];
  matchedPolicies?: string[];
  latencyMs?: number;
  webhook: 'validate' | 'mutate';
  /**
   * JSON Pointers (`/object/...`, `/oldObject/...`) of numbers a double cannot hold (`1e309`, integers beyond
   * ±2^53): they are recorded as strings of their raw text, as the API server sent them.
   */
  rawNumbers?: string[];
}

/** Body of `api.request`. */
export interface ApiRequestBody {
  verb: string;
  method: string;
  path: string;
  query?: string;
  status: number;
  latencyMs: number;
  bytesIn: number;
  bytesOut: number;
  userAgent?: string;
  sourceIp?: string;
  /** Masked write body (JSON) when it fit the recorded-body limit. */
  requestBody?: unknown;
  requestBodyTruncated?: boolean;
  decision?: Decision;
  /** Set when this event summarises several sampled discovery calls. */
  sampled?: number;
}

/** Body of `session.start` / `session.end`. */
export interface SessionBody {
  kind: 'exec' | 'attach' | 'portforward';
  pod: string;
  namespace: string;
  container?: string;
  command?: string[];
  tty?: boolean;
  stdin?: boolean;
  ports?: number[];
  protocol?: string;
  exitCode?: number;
  bytesIn?: number;
  bytesOut?: number;
  durationMs?: number;
  decision?: Decision;
  /** How the session ended: completed, denied, client-closed, upstream-closed, error. */
  outcome?: string;
  error?: string;
  /** Negotiated WebSocket subprotocol of the client side. */
  subprotocol?: string;
  /** Set when the recording stopped at proxy.exec.maxRecordedBytes (the stream itself went on). */
  recordTruncated?: boolean;
  /** Secrets replaced by inline masking, by pattern name. */
  masked?: Record<string, number>;
  /** Typed lines checked against ExecPolicy, and how many were blocked. */
  linesChecked?: number;
  linesBlocked?: number;
  /** session.data chunks recorded (so a reader can tell a complete recording). */
  chunks?: number;
  /** Initial terminal size, when a resize arrived (for replay headers). */
  width?: number;
  height?: number;
}

/** Body of `session.data`: one ordered chunk of a recorded stream. */
export interface SessionDataBody {
  /** Ordinal of this chunk within the session (0, 1, 2 ...). */
  chunk: number;
  stream: 'stdin' | 'stdout' | 'stderr' | 'resize';
  /** Byte offset of this chunk within its stream. */
  offset: number;
  /** Milliseconds since session start. */
  t: number;
  /** Base64 bytes (already masked). */
  data: string;
  /** Set when `data` is raw-deflated (RFC 1951) stream bytes; absent: `data` is the bytes themselves. */
  encoding?: 'deflate-raw';
  /** Uncompressed length of this chunk (set with `encoding`). */
  size?: number;
}

/** Body of `guardrail.decision`. */
export interface GuardrailDecisionBody {
  policy: string;
  rule: string;
  action: 'deny' | 'warn' | 'audit' | 'requireApproval';
  message: string;
  input?: unknown;
}

/** Body of `chain.checkpoint`: an Ed25519 signature over the last link. */
export interface CheckpointBody {
  seq: number;
  hash: string;
  /** Key id: SHA-256 (hex, first 16) of the raw public key. */
  keyId: string;
  /** Base64 Ed25519 signature over `${instance}\n${seq}\n${hash}`. */
  signature: string;
}

/**
 * Body of `chain.gap`: a signed declaration that sequence numbers
 * `fromSeq..toSeq` were assigned to events the pipeline could not make
 * durable (e.g. the disk was full), so `verify` reports a declared gap
 * instead of a deletion. Written once the pipeline can write again.
 */
export interface GapBody {
  fromSeq: number;
  toSeq: number;
  /** How many seqs in the range were lost (the rest were written). */
  events: number;
  /** Events refused while the pipeline was unready; they consumed no seq. */
  refused: number;
  /** Stable error code of the failed write (`SINK_ERR_IO`), and the errno (`ENOSPC`). */
  reason: string;
  errno?: string;
  /** When the first write failed and when writing worked again. */
  since: string;
  until: string;
  keyId: string;
  /** Base64 Ed25519 signature over the gap message (signing.ts, gapMessage). */
  signature: string;
}

/**
 * Body of the `approval.*` events: which ApprovalRequest, what it binds
 * (policy, rule, body hash), its phase after the step, and, for
 * `approval.decided`, the decision (the approver is the event's actor).
 */
export interface ApprovalBody {
  name: string;
  namespace: string;
  phase: 'Pending' | 'Approved' | 'Denied' | 'Expired' | 'Used';
  policy: string;
  rule: string;
  verb: string;
  /** SHA-256 of the canonical raw object the approval is bound to (writes). */
  requestSha256?: string;
  reason?: string;
  expiresAt?: string;
  approvers?: { users: string[]; groups: string[] };
  minApprovals?: number;
  window?: number;
  decision?: { user: string; groups: string[]; decision: 'approve' | 'deny'; comment?: string; time: string };
  decisions?: { user: string; decision: 'approve' | 'deny'; time: string }[];
  usedCount?: number;
}

/** Bodies by event type. */
export interface EventBodies {
  'admission.review': AdmissionReviewBody;
  'api.request': ApiRequestBody;
  'session.start': SessionBody;
  'session.end': SessionBody;
  'session.data': SessionDataBody;
  'guardrail.decision': GuardrailDecisionBody;
  'chain.checkpoint': CheckpointBody;
  'chain.gap': GapBody;
  'approval.requested': ApprovalBody;
  'approval.decided': ApprovalBody;
  'approval.expired': ApprovalBody;
  'approval.used': ApprovalBody;
}

/** A canonical event of type T. */
export interface KubetrailEvent<T extends EventType = EventType> {
  apiVersion: 'kubetrail.io/v1';
  id: string;
  time: string;
  type: T;
  source: EventSource;
  actor?: Actor;
  target?: Target;
  correlation?: Correlation;
  chain?: ChainLink;
  body: EventBodies[T];
}

/** An event before the pipeline assigns id/time/source/chain. */
export type EventDraft<T extends EventType = EventType> = Omit<KubetrailEvent<T>, 'apiVersion' | 'id' | 'time' | 'source' | 'chain'> & {
  id?: string;
  time?: string;
};
