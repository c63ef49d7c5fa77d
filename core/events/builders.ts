/**
 * Builders per event type: small typed constructors for drafts, so emitters
 * cannot put the body of one type under another, plus helpers every consumer
 * needs (record key, topic routing).
 */
import type {
  Actor,
  ApprovalBody,
  AdmissionReviewBody,
  ApiRequestBody,
  Correlation,
  EventDraft,
  EventType,
  GuardrailDecisionBody,
  KubetrailEvent,
  SessionBody,
  SessionDataBody,
  Target,
} from './model.ts';

/** Every event type, in the order of DESIGN.md. */
export const EVENT_TYPES: readonly EventType[] = Object.freeze([
  'admission.review',
  'api.request',
  'session.start',
  'session.end',
  'session.data',
  'guardrail.decision',
  'chain.checkpoint',
  'chain.gap',
  'approval.requested',
  'approval.decided',
  'approval.expired',
  'approval.used',
]);

/** Types that travel on the sessions topic; the rest go to the events topic. */
export const SESSION_TOPIC_TYPES: ReadonlySet<EventType> = new Set(['session.start', 'session.end', 'session.data']);

/** Common envelope parts a builder accepts. */
export interface EnvelopeParts {
  actor?: Actor;
  target?: Target;
  correlation?: Correlation;
}

// Keys in one order (type, actor, target, correlation, body, id) for every emitter, so drafts print alike.
function draft<T extends EventType>(type: T, parts: EnvelopeParts, body: KubetrailEvent<T>['body'], id?: string): EventDraft<T> {
  const d = { type } as EventDraft<T>;
  if (parts.actor !== undefined) d.actor = parts.actor;
  if (parts.target !== undefined) d.target = parts.target;
  if (parts.correlation !== undefined) d.correlation = parts.correlation;
  d.body = body;
  if (id !== undefined) d.id = id;
  return d;
}

/** Draft of an `admission.review` (webhook); `id` when the event must carry an id chosen before it is emitted (the mutating webhook's stamp). */
export function admissionReview(parts: EnvelopeParts & { id?: string | undefined }, body: AdmissionReviewBody): EventDraft<'admission.review'> {
  return draft('admission.review', parts, body, parts.id);
}

/** Draft of an `api.request` (gateway). */
export function apiRequest(parts: EnvelopeParts, body: ApiRequestBody): EventDraft<'api.request'> {
  return draft('api.request', parts, body);
}

/** Draft of a `session.start` (gateway). `correlation.session` is required: it keys the sessions topic. */
export function sessionStart(parts: EnvelopeParts & { correlation: Correlation & { session: string } }, body: SessionBody): EventDraft<'session.start'> {
  return draft('session.start', parts, body);
}

/** Draft of a `session.end` (gateway). */
export function sessionEnd(parts: EnvelopeParts & { correlation: Correlation & { session: string } }, body: SessionBody): EventDraft<'session.end'> {
  return draft('session.end', parts, body);
}

/** Draft of one `session.data` chunk (gateway). */
export function sessionData(parts: EnvelopeParts & { correlation: Correlation & { session: string } }, body: SessionDataBody): EventDraft<'session.data'> {
  return draft('session.data', parts, body);
}

/** Draft of a `guardrail.decision` (webhook or gateway). */
export function guardrailDecision(parts: EnvelopeParts, body: GuardrailDecisionBody): EventDraft<'guardrail.decision'> {
  return draft('guardrail.decision', parts, body);
}

/**
 * Kafka record key of an event: the session id for session traffic (so a
 * session's chunks stay in one partition, in order), `namespace/name` of the
 * target otherwise (cluster-scoped: `/name`), and the source instance for
 * events without a target (checkpoints), so one source's checkpoints keep
 * their order too.
 */
export function recordKey(event: KubetrailEvent): string {
  if (SESSION_TOPIC_TYPES.has(event.type)) {
    const s = event.correlation?.session;
    if (s !== undefined && s !== '') return s;
  }
  const t = event.target;
  if (t !== undefined && (t.name !== undefined || t.namespace !== undefined)) return `${t.namespace ?? ''}/${t.name ?? ''}`;
  return `${event.source.component}/${event.source.instance}`;
}

/** Draft of an `approval.requested|decided|expired|used` (webhook or gateway). */
export function approvalEvent<T extends 'approval.requested' | 'approval.decided' | 'approval.expired' | 'approval.used'>(type: T, parts: EnvelopeParts, body: ApprovalBody): EventDraft<T> {
  return draft(type, parts, body as KubetrailEvent<T>['body']);
}
