/**
 * The `k8s-audit` wire format: an `audit.k8s.io/v1` Event, so tools built for
 * the API server's own audit log (`--audit-log-format=json`) parse kubetrail
 * events unchanged. Field names and shapes follow
 * k8s.io/apiserver/pkg/apis/audit/v1/types.go (Event, ObjectReference,
 * UserInfo) and metav1.Status for responseStatus.
 *
 * Mapped types: `admission.review`, `api.request`, `session.start`,
 * `session.end`. Other types (session.data, guardrail.decision,
 * chain.checkpoint) have no audit-Event meaning ({@link toK8sAudit} returns
 * undefined for them); on a k8s-audit topic they are written as
 * {@link markNonAudit} makes them: apiVersion `kubetrail.io/v1`, kind
 * `KubetrailEvent`, so a strict audit.k8s.io decoder skips them by kind
 * without reading kubetrail's record headers.
 *
 * Counting a request once (issue 13 item 13). One write through the gateway
 * yields three events: the gateway's `api.request` and the webhook's mutate
 * and validate `admission.review`s.
 * - `auditID` is the API server's audit ID wherever kubetrail knows it
 *   (`correlation.auditId`: the gateway reads it from the `Audit-ID`
 *   response header; the webhook from `userInfo.extra["kubetrail.io/audit-id"]`
 *   when the caller, i.e. the gateway, set that and the same `Audit-ID`
 *   request header). The API server sends webhooks no audit ID (no
 *   `Audit-ID` header; `request.uid` is per webhook call), so an admission
 *   event of a write that did not come that way carries a correlation
 *   instead: the id of the mutate event whose stamp the write carries
 *   (`correlation.stamp`), the same on that write's mutate and validate
 *   events and in the API server's own audit event as the `<mutating webhook
 *   name>/event` annotation; else the event's own id. Annotation
 *   `kubetrail.io/audit-id` says which: `apiserver` or `correlation`.
 * - Admission events have stage `RequestReceived` and no `responseStatus`:
 *   the webhook sees the request, never the response (a later webhook or
 *   the storage can still fail it). Only the gateway's events, which saw
 *   the response, are `ResponseComplete`: count those, or the API server's.
 *
 * Known differences from the API server's own record of the same request
 * (checked in test/pipeline/k8s-audit-compare.test.ts): kubetrail cannot see
 * the query string the client sent to the API server for admission events
 * (requestURI is rebuilt from the resource path), and the webhook does not
 * see the client's sourceIPs or userAgent.
 */
import type { KubetrailEvent, Target } from '../model.ts';

/** Audit level kubetrail records at: the request object is included. */
export type AuditLevel = 'Metadata' | 'Request' | 'RequestResponse';

/** audit.k8s.io/v1 Event (the subset of fields kubetrail fills). */
export interface K8sAuditEvent {
  kind: 'Event';
  apiVersion: 'audit.k8s.io/v1';
  level: AuditLevel;
  auditID: string;
  stage: 'RequestReceived' | 'ResponseComplete';
  requestURI: string;
  verb: string;
  user: { username: string; uid?: string; groups?: string[]; extra?: Record<string, string[]> };
  impersonatedUser?: { username: string; uid?: string; groups?: string[]; extra?: Record<string, string[]> };
  sourceIPs?: string[];
  userAgent?: string;
  objectRef?: { resource?: string; namespace?: string; name?: string; uid?: string; apiGroup?: string; apiVersion?: string; subresource?: string };
  responseStatus?: { metadata: Record<string, never>; status?: 'Success' | 'Failure'; message?: string; reason?: string; code: number };
  requestObject?: unknown;
  requestReceivedTimestamp: string;
  stageTimestamp: string;
  annotations: Record<string, string>;
}

const VERB_OF_OPERATION: Record<string, string> = { CREATE: 'create', UPDATE: 'update', DELETE: 'delete', CONNECT: 'create' };

/** Resource path as the API server builds it: /api/v1/... for the core group, /apis/G/V/... otherwise. */
function resourcePath(t: Target | undefined, withName: boolean): string {
  if (t === undefined || t.resource === undefined) return '/';
  const group = t.group ?? '';
  const version = t.version ?? 'v1';
  let p = group === '' ? `/api/${version}` : `/apis/${group}/${version}`;
  if (t.namespace !== undefined && t.namespace !== '' && !(t.resource === 'namespaces' && group === '')) p += `/namespaces/${t.namespace}`;
  p += `/${t.resource}`;
  if (withName && t.name !== undefined && t.name !== '') p += `/${t.name}`;
  if (t.subresource !== undefined && t.subresource !== '') p += `/${t.subresource}`;
  return p;
}

function objectRef(t: Target | undefined): K8sAuditEvent['objectRef'] {
  if (t === undefined) return undefined;
  const o: NonNullable<K8sAuditEvent['objectRef']> = {};
  if (t.resource !== undefined) o.resource = t.resource;
  if (t.namespace !== undefined && t.namespace !== '') o.namespace = t.namespace;
  if (t.name !== undefined && t.name !== '') o.name = t.name;
  if (t.uid !== undefined && t.uid !== '') o.uid = t.uid;
  if (t.group !== undefined && t.group !== '') o.apiGroup = t.group;
  if (t.version !== undefined) o.apiVersion = t.version;
  if (t.subresource !== undefined && t.subresource !== '') o.subresource = t.subresource;
  return o;
}

/** Audit timestamps are RFC 3339 with microseconds (metav1.MicroTime). */
function micro(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

function status(code: number, allowed: boolean, message: string | undefined): NonNullable<K8sAuditEvent['responseStatus']> {
  if (allowed && code < 400) return { metadata: {}, code };
  const s: NonNullable<K8sAuditEvent['responseStatus']> = { metadata: {}, status: 'Failure', code };
  if (message !== undefined) s.message = message;
  if (code === 403) s.reason = 'Forbidden';
  return s;
}

/**
 * Renders an event as an audit.k8s.io/v1 Event, or undefined for types that
 * have no audit meaning. Deterministic: verify re-renders and compares.
 */
export function toK8sAudit(e: KubetrailEvent): K8sAuditEvent | undefined {
  const start = Date.parse(e.time);
  const annotations: Record<string, string> = {
    'kubetrail.io/event-id': e.id,
    'kubetrail.io/event-type': e.type,
    'kubetrail.io/source': `${e.source.cluster}/${e.source.component}/${e.source.instance}`,
  };
  if (e.chain !== undefined) annotations['kubetrail.io/chain-seq'] = String(e.chain.seq);
  if (e.correlation?.session !== undefined) annotations['kubetrail.io/session'] = e.correlation.session;
  if (e.correlation?.admissionUid !== undefined) annotations['kubetrail.io/admission-uid'] = e.correlation.admissionUid;
  annotations['kubetrail.io/audit-id'] = e.correlation?.auditId !== undefined ? 'apiserver' : 'correlation';
  if (e.actor !== undefined) annotations['kubetrail.io/authn'] = e.actor.authn;
  const user: K8sAuditEvent['user'] = { username: e.actor?.username ?? 'system:anonymous' };
  if (e.actor?.uid !== undefined) user.uid = e.actor.uid;
  user.groups = e.actor?.groups ?? [];
  if (e.actor?.extra !== undefined && Object.keys(e.actor.extra).length > 0) user.extra = e.actor.extra;

  let verb: string;
  let uri: string;
  let level: AuditLevel = 'Metadata';
  let latencyMs = 0;
  let resp: K8sAuditEvent['responseStatus'];
  let requestObject: unknown;
  let sourceIPs: string[] | undefined;
  let userAgent: string | undefined;
  let stage: K8sAuditEvent['stage'] = 'ResponseComplete';
  switch (e.type) {
    case 'admission.review': {
      const b = (e as KubetrailEvent<'admission.review'>).body;
      verb = VERB_OF_OPERATION[b.operation] ?? b.operation.toLowerCase();
      // Create goes to the collection; the other verbs name the object.
      uri = resourcePath(e.target, b.operation !== 'CREATE');
      if (b.dryRun) uri += '?dryRun=All';
      latencyMs = b.latencyMs ?? 0;
      // Seen during admission: the response is not known (no responseStatus, no responseObject).
      stage = 'RequestReceived';
      if (b.object !== undefined && b.operation !== 'DELETE') {
        level = 'Request';
        requestObject = b.object;
      }
      annotations['kubetrail.io/webhook'] = b.webhook;
      annotations['kubetrail.io/decision'] = b.decision.allowed ? 'allow' : 'deny';
      if (b.decision.policy !== undefined) annotations['kubetrail.io/policy'] = b.decision.policy;
      break;
    }
    case 'api.request': {
      const b = (e as KubetrailEvent<'api.request'>).body;
      verb = b.verb;
      uri = b.path + (b.query !== undefined && b.query !== '' ? `?${b.query}` : '');
      latencyMs = b.latencyMs;
      resp = status(b.status, b.status < 400, b.decision?.message);
      if (b.requestBody !== undefined) {
        level = 'Request';
        requestObject = b.requestBody;
      }
      if (b.sourceIp !== undefined) sourceIPs = [b.sourceIp];
      if (b.userAgent !== undefined) userAgent = b.userAgent;
      if (b.decision !== undefined) annotations['kubetrail.io/decision'] = b.decision.allowed ? 'allow' : 'deny';
      break;
    }
    case 'session.start':
    case 'session.end': {
      const b = (e as KubetrailEvent<'session.start'>).body;
      verb = 'create';
      const q = new URLSearchParams();
      if (b.container !== undefined) q.append('container', b.container);
      for (const c of b.command ?? []) q.append('command', c);
      uri = `/api/v1/namespaces/${b.namespace}/pods/${b.pod}/${b.kind}${q.size > 0 ? `?${q.toString()}` : ''}`;
      latencyMs = b.durationMs ?? 0;
      const allowed = b.decision?.allowed ?? true;
      resp = status(allowed ? 101 : 403, allowed, b.decision?.message);
      if (b.exitCode !== undefined) annotations['kubetrail.io/exit-code'] = String(b.exitCode);
      if (b.outcome !== undefined) annotations['kubetrail.io/outcome'] = b.outcome;
      break;
    }
    default:
      return undefined;
  }
  const out: K8sAuditEvent = {
    kind: 'Event',
    apiVersion: 'audit.k8s.io/v1',
    level,
    auditID: e.correlation?.auditId ?? e.correlation?.stamp ?? e.id,
    stage,
    requestURI: uri,
    verb,
    user,
    requestReceivedTimestamp: micro(start),
    stageTimestamp: micro(start + Math.max(0, Math.round(latencyMs))),
    annotations,
  };
  if (sourceIPs !== undefined) out.sourceIPs = sourceIPs;
  if (userAgent !== undefined) out.userAgent = userAgent;
  const ref = e.type.startsWith('session.')
    ? { resource: 'pods', namespace: (e.body as { namespace: string }).namespace, name: (e.body as { pod: string }).pod, apiVersion: 'v1', subresource: (e.body as { kind: string }).kind }
    : objectRef(e.target);
  if (ref !== undefined) out.objectRef = ref;
  if (resp !== undefined) out.responseStatus = resp;
  if (requestObject !== undefined) out.requestObject = requestObject;
  return out;
}

/** The kind of the records on a k8s-audit topic that are not audit events. */
const NON_AUDIT_KIND = 'KubetrailEvent';

/**
 * The k8s-audit value of an event that is not an audit event: its native
 * line with `"kind":"KubetrailEvent"` in front (it already says
 * `"apiVersion":"kubetrail.io/v1"`), so a decoder that dispatches on
 * apiVersion/kind, as Kubernetes decoders do, skips it. Deterministic and
 * cheap (no second serialization of a session chunk); the native line stays
 * the record's `kubetrail_native` header as for every rendered record.
 */
export function markNonAudit(line: string): string {
  return `{"kind":"${NON_AUDIT_KIND}",${line.slice(1)}`;
}
