/**
 * The `ocsf` wire format: OCSF API Activity (class_uid 6003, category_uid 6
 * "Application Activity"), targeting OCSF schema 1.3.0.
 *
 * What is filled, from the 1.3.0 class and object definitions as published on
 * schema.ocsf.io (checked by hand, not against the machine-readable schema,
 * which is not available offline here; the JSON Schema in
 * core/schema/ocsf-api-activity.schema.json encodes exactly these checks):
 * - required: activity_id, category_uid, class_uid, type_uid (= 600300 +
 *   activity_id), time (ms since epoch), severity_id, metadata {product,
 *   version}, actor, api {operation}, src_endpoint;
 * - recommended: activity_name, category_name, class_name, type_name,
 *   severity, status_id, status, status_code, message, resources[],
 *   api.request.uid, api.response.code;
 * - everything kubetrail knows with no OCSF attribute goes to `unmapped`.
 *
 * src_endpoint is required by the class but the webhook never sees the
 * client's address: it then carries `{name: "unknown"}` rather than a guess.
 * Mapped types: admission.review, api.request, session.start/end,
 * guardrail.decision; session.data and chain.checkpoint stay native.
 */
import type { Decision, KubetrailEvent } from '../model.ts';

/** The OCSF schema version this mapping targets. */
const OCSF_VERSION = '1.3.0';

/** OCSF API Activity record (the attributes kubetrail fills). */
export interface OcsfApiActivity {
  activity_id: 1 | 2 | 3 | 4 | 99;
  activity_name: string;
  category_uid: 6;
  category_name: 'Application Activity';
  class_uid: 6003;
  class_name: 'API Activity';
  type_uid: number;
  type_name: string;
  time: number;
  severity_id: 1 | 3;
  severity: 'Informational' | 'Medium';
  status_id: 1 | 2;
  status: 'Success' | 'Failure';
  status_code?: string;
  message?: string;
  metadata: {
    version: string;
    uid: string;
    product: { name: 'kubetrail'; vendor_name: 'kubetrail'; version: string };
    log_name: string;
    correlation_uid?: string;
    original_time: string;
    sequence?: number;
  };
  actor: { user: { name: string; uid?: string; type_id: 0 | 1 | 3 | 99; groups: { name: string }[] }; session?: { uid: string } };
  api: { operation: string; service: { name: 'kubernetes' }; request: { uid: string }; response?: { code: number; message?: string }; version?: string };
  resources: { uid?: string; name?: string; type?: string; namespace?: string; group?: { name: string } }[];
  src_endpoint: { ip?: string; name?: string };
  http_request?: { user_agent: string };
  unmapped: Record<string, unknown>;
}

const PRODUCT_VERSION = '0.1.0';

const ACTIVITY_NAMES: Record<number, string> = { 1: 'Create', 2: 'Read', 3: 'Update', 4: 'Delete', 99: 'Other' };

/** OCSF API Activity activity_id for a Kubernetes verb. */
export function activityOf(verb: string): 1 | 2 | 3 | 4 | 99 {
  switch (verb.toLowerCase()) {
    case 'create':
      return 1;
    case 'get':
    case 'list':
    case 'watch':
      return 2;
    case 'update':
    case 'patch':
      return 3;
    case 'delete':
    case 'deletecollection':
      return 4;
    default:
      return 99;
  }
}

/** Renders an event as OCSF API Activity, or undefined for types without a mapping. Deterministic. */
export function toOcsf(e: KubetrailEvent): OcsfApiActivity | undefined {
  let verb: string;
  let decision: Decision | undefined;
  let code: number | undefined;
  let sourceIp: string | undefined;
  let userAgent: string | undefined;
  const unmapped: Record<string, unknown> = { kubetrail_type: e.type, source: e.source };
  if (e.chain !== undefined) unmapped['chain'] = e.chain;
  if (e.correlation !== undefined) unmapped['correlation'] = e.correlation;
  switch (e.type) {
    case 'admission.review': {
      const b = (e as KubetrailEvent<'admission.review'>).body;
      verb = b.operation === 'CONNECT' ? 'connect' : b.operation.toLowerCase();
      decision = b.decision;
      code = b.decision.allowed ? 200 : 403;
      unmapped['admission'] = { operation: b.operation, dryRun: b.dryRun, webhook: b.webhook, kind: b.kind, patch: b.patch, object: b.object, oldObject: b.oldObject, matchedPolicies: b.matchedPolicies };
      break;
    }
    case 'api.request': {
      const b = (e as KubetrailEvent<'api.request'>).body;
      verb = b.verb;
      decision = b.decision;
      code = b.status;
      sourceIp = b.sourceIp;
      userAgent = b.userAgent;
      unmapped['request'] = { method: b.method, path: b.path, query: b.query, latencyMs: b.latencyMs, bytesIn: b.bytesIn, bytesOut: b.bytesOut, requestBody: b.requestBody, sampled: b.sampled };
      break;
    }
    case 'session.start':
    case 'session.end': {
      const b = (e as KubetrailEvent<'session.start'>).body;
      verb = b.kind;
      decision = b.decision;
      unmapped['session'] = { ...b };
      break;
    }
    case 'guardrail.decision': {
      const b = (e as KubetrailEvent<'guardrail.decision'>).body;
      verb = 'guardrail';
      decision = { allowed: b.action !== 'deny', action: b.action, policy: b.policy, rule: b.rule, message: b.message };
      unmapped['guardrail'] = { ...b };
      break;
    }
    case 'approval.requested':
    case 'approval.decided':
    case 'approval.expired':
    case 'approval.used': {
      // Human approval (issue 17): an API Activity about the approved request, verb `approval.<step>`.
      const b = (e as KubetrailEvent<'approval.requested'>).body;
      verb = e.type;
      decision = { allowed: b.phase !== 'Denied' && b.phase !== 'Expired', action: 'requireApproval', policy: b.policy, rule: b.rule, message: `ApprovalRequest ${b.namespace}/${b.name} ${b.phase}` };
      unmapped['approval'] = { ...b };
      break;
    }
    default:
      return undefined;
  }
  const activity = activityOf(verb);
  const failed = decision !== undefined ? !decision.allowed : code !== undefined && code >= 400;
  const out: OcsfApiActivity = {
    activity_id: activity,
    activity_name: ACTIVITY_NAMES[activity] as string,
    category_uid: 6,
    category_name: 'Application Activity',
    class_uid: 6003,
    class_name: 'API Activity',
    type_uid: 600300 + activity,
    type_name: `API Activity: ${ACTIVITY_NAMES[activity] as string}`,
    time: Date.parse(e.time),
    severity_id: failed ? 3 : 1,
    severity: failed ? 'Medium' : 'Informational',
    status_id: failed ? 2 : 1,
    status: failed ? 'Failure' : 'Success',
    metadata: {
      version: OCSF_VERSION,
      uid: e.id,
      product: { name: 'kubetrail', vendor_name: 'kubetrail', version: PRODUCT_VERSION },
      log_name: e.type,
      original_time: e.time,
    },
    actor: {
      user: {
        name: e.actor?.username ?? 'system:anonymous',
        // OCSF user.type_id: 1 User, 3 System (service accounts), 0 Unknown.
        type_id: e.actor === undefined ? 0 : e.actor.authn === 'serviceaccount' || e.actor.username.startsWith('system:serviceaccount:') ? 3 : 1,
        groups: (e.actor?.groups ?? []).map((name) => ({ name })),
      },
    },
    api: { operation: verb, service: { name: 'kubernetes' }, request: { uid: e.correlation?.auditId ?? e.correlation?.stamp ?? e.correlation?.request ?? e.id } },
    resources: [],
    src_endpoint: sourceIp !== undefined ? { ip: sourceIp } : { name: 'unknown' },
    unmapped,
  };
  if (e.chain !== undefined) out.metadata.sequence = e.chain.seq;
  if (e.correlation?.session !== undefined) {
    out.metadata.correlation_uid = e.correlation.session;
    out.actor.session = { uid: e.correlation.session };
  }
  if (e.actor?.uid !== undefined) out.actor.user.uid = e.actor.uid;
  if (code !== undefined) {
    out.api.response = { code };
    out.status_code = String(code);
  }
  if (decision?.message !== undefined) {
    out.message = decision.message;
    if (out.api.response !== undefined) out.api.response.message = decision.message;
  }
  if (e.target?.version !== undefined) out.api.version = e.target.group ? `${e.target.group}/${e.target.version}` : e.target.version;
  const t = e.target;
  if (t !== undefined) {
    const r: OcsfApiActivity['resources'][number] = {};
    if (t.uid !== undefined) r.uid = t.uid;
    if (t.name !== undefined) r.name = t.name;
    if (t.resource !== undefined) r.type = t.subresource ? `${t.resource}/${t.subresource}` : t.resource;
    if (t.namespace !== undefined) r.namespace = t.namespace;
    if (t.group !== undefined && t.group !== '') r.group = { name: t.group };
    out.resources.push(r);
  }
  if (userAgent !== undefined) out.http_request = { user_agent: userAgent };
  return out;
}
