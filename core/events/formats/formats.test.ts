import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { MemorySink } from '../../sinks/memory-sink.ts';
import { admissionReview, apiRequest, guardrailDecision, approvalEvent, sessionData, sessionEnd, sessionStart } from '../builders.ts';
import type { EventDraft, KubetrailEvent } from '../model.ts';
import { toK8sAudit } from './k8s-audit.ts';
import { activityOf, toOcsf } from './ocsf.ts';
import { render } from './index.ts';

const schema = (name: string): object => JSON.parse(readFileSync(new URL(`../../schema/${name}`, import.meta.url), 'utf8')) as object;
const ajv = new Ajv2020({ strict: false, allErrors: true });
(addFormats as unknown as (a: Ajv2020) => void)(ajv);
const validNative = ajv.compile(schema('event.schema.json'));
const validAudit = ajv.compile(schema('k8s-audit-event.schema.json'));
const validOcsf = ajv.compile(schema('ocsf-api-activity.schema.json'));

const actor = { username: 'agent-ci', uid: 'agent-ci-uid', groups: ['agents', 'system:authenticated'], authn: 'token' as const };
const target = { group: 'apps', version: 'v1', resource: 'deployments', namespace: 'agents', name: 'web', uid: '5c1b' };
const session = { session: 'sess-1' };

const DRAFTS: { name: string; draft: EventDraft; audit: boolean; ocsf: boolean }[] = [
  {
    name: 'admission.review create',
    draft: admissionReview({ actor, target, correlation: { admissionUid: 'adm-1' } }, { operation: 'CREATE', dryRun: false, webhook: 'validate', object: { metadata: { name: 'web' } }, decision: { allowed: true } }),
    audit: true,
    ocsf: true,
  },
  {
    name: 'admission.review denied delete',
    draft: admissionReview({ actor, target }, { operation: 'DELETE', dryRun: true, webhook: 'validate', decision: { allowed: false, message: 'protected', policy: 'p' } }),
    audit: true,
    ocsf: true,
  },
  {
    name: 'api.request',
    draft: apiRequest({ actor, target }, { verb: 'list', method: 'GET', path: '/apis/apps/v1/namespaces/agents/deployments', query: 'limit=500', status: 200, latencyMs: 4, bytesIn: 0, bytesOut: 900, userAgent: 'kubectl/v1.32.4', sourceIp: '10.0.0.7' }),
    audit: true,
    ocsf: true,
  },
  {
    name: 'session.start',
    draft: sessionStart({ actor, correlation: session }, { kind: 'exec', pod: 'web-0', namespace: 'agents', container: 'app', command: ['sh', '-c', 'ls'], tty: false, decision: { allowed: true } }),
    audit: true,
    ocsf: true,
  },
  {
    name: 'session.end',
    draft: sessionEnd({ actor, correlation: session }, { kind: 'exec', pod: 'web-0', namespace: 'agents', exitCode: 2, durationMs: 1500, outcome: 'completed' }),
    audit: true,
    ocsf: true,
  },
  { name: 'session.data', draft: sessionData({ actor, correlation: session }, { chunk: 0, stream: 'stdout', offset: 0, t: 12, data: 'aGVsbG8K' }), audit: false, ocsf: false },
  { name: 'guardrail.decision', draft: guardrailDecision({ actor, target }, { policy: 'no-privileged', rule: 'r1', action: 'deny', message: 'privileged pods are refused' }), audit: false, ocsf: true },
  {
    name: 'approval.requested',
    draft: approvalEvent('approval.requested', { actor, target, correlation: { admissionUid: 'adm-2', session: 's-1' } }, { name: 'ar-0123456789-abc', namespace: 'agents', phase: 'Pending', policy: 'p', rule: 'r', verb: 'create', requestSha256: 'a'.repeat(64), expiresAt: '2026-12-07T13:00:00.000Z', minApprovals: 1, approvers: { users: [], groups: ['sre'] } }),
    audit: false,
    ocsf: true,
  },
  {
    name: 'approval.decided',
    draft: approvalEvent('approval.decided', { actor, target }, { name: 'ar-0123456789-abc', namespace: 'agents', phase: 'Approved', policy: 'p', rule: 'r', verb: 'create', decision: { user: 'alice', groups: ['sre'], decision: 'approve', time: '2026-12-07T12:01:00.000Z' } }),
    audit: false,
    ocsf: true,
  },
];

test('every event type, sealed, validates against the published native JSON Schema', async () => {
  const sink = new MemorySink({ source: { component: 'webhook', instance: 'i-1', cluster: 'dev' } });
  for (const d of DRAFTS) {
    const e = await sink.emit(d.draft);
    assert.equal(validNative(e), true, `${d.name}: ${JSON.stringify(validNative.errors)}`);
  }
});

test('the native schema rejects an event without a chain-shaped hash or with an unknown type', () => {
  assert.equal(validNative({ apiVersion: 'kubetrail.io/v1', id: 'x', time: 'now', type: 'nope', source: {}, body: {} }), false);
});

test('k8s-audit renderings are valid audit.k8s.io/v1 Events; the other types are marked kind KubetrailEvent', async () => {
  const sink = new MemorySink({ source: { component: 'proxy', instance: 'i-1', cluster: 'dev' } });
  for (const d of DRAFTS) {
    const e = await sink.emit(d.draft);
    const a = toK8sAudit(e);
    assert.equal(a !== undefined, d.audit, d.name);
    if (a === undefined) {
      const line = sink.lines.at(-1) as string;
      const r = render(e, line, 'k8s-audit');
      const v = JSON.parse(r.value);
      // A strict audit decoder skips it by apiVersion/kind alone; the rest is the native event.
      assert.deepEqual([v.apiVersion, v.kind], ['kubetrail.io/v1', 'KubetrailEvent']);
      const { kind: _k, ...native } = v;
      assert.deepEqual(native, JSON.parse(line));
      continue;
    }
    assert.equal(validAudit(a), true, `${d.name}: ${JSON.stringify(validAudit.errors)}`);
    assert.equal(a.annotations['kubetrail.io/event-id'], e.id);
    assert.equal(a.annotations['kubetrail.io/chain-seq'], String(e.chain?.seq));
  }
});

const AUDIT_FIELDS: { name: string; check: (a: NonNullable<ReturnType<typeof toK8sAudit>>) => void }[] = [
  // Admission events: the request as seen during admission; the response is not known, so none is invented.
  { name: 'admission.review create', check: (a) => (assert.equal(a.verb, 'create'), assert.equal(a.requestURI, '/apis/apps/v1/namespaces/agents/deployments'), assert.equal(a.level, 'Request'), assert.equal(a.stage, 'RequestReceived'), assert.equal(a.responseStatus, undefined)) },
  { name: 'admission.review denied delete', check: (a) => (assert.equal(a.verb, 'delete'), assert.equal(a.requestURI, '/apis/apps/v1/namespaces/agents/deployments/web?dryRun=All'), assert.equal(a.stage, 'RequestReceived'), assert.equal(a.responseStatus, undefined), assert.equal(a.annotations['kubetrail.io/decision'], 'deny')) },
  { name: 'api.request', check: (a) => (assert.equal(a.requestURI, '/apis/apps/v1/namespaces/agents/deployments?limit=500'), assert.deepEqual(a.sourceIPs, ['10.0.0.7']), assert.equal(a.userAgent, 'kubectl/v1.32.4')) },
  { name: 'session.start', check: (a) => (assert.equal(a.requestURI, '/api/v1/namespaces/agents/pods/web-0/exec?container=app&command=sh&command=-c&command=ls'), assert.deepEqual(a.objectRef, { resource: 'pods', namespace: 'agents', name: 'web-0', apiVersion: 'v1', subresource: 'exec' })) },
];

test('k8s-audit field values: verb, requestURI, level and response status per type', async () => {
  const sink = new MemorySink();
  for (const c of AUDIT_FIELDS) {
    const d = DRAFTS.find((x) => x.name === c.name)!;
    c.check(toK8sAudit(await sink.emit(d.draft))!);
  }
});

test('k8s-audit auditID: the API server audit ID when known, else the stamp correlation shared by a write\'s mutate and validate events, and says which', async () => {
  const sink = new MemorySink();
  const body = { operation: 'CREATE' as const, dryRun: false, decision: { allowed: true } };
  const known = toK8sAudit(await sink.emit(admissionReview({ actor, target, correlation: { auditId: 'a-1', stamp: 'm-1' } }, { ...body, webhook: 'validate' })))!;
  assert.deepEqual([known.auditID, known.annotations['kubetrail.io/audit-id']], ['a-1', 'apiserver']);
  const mutate = toK8sAudit(await sink.emit(admissionReview({ actor, target, correlation: { stamp: 'm-2' } }, { ...body, webhook: 'mutate' })))!;
  const validate = toK8sAudit(await sink.emit(admissionReview({ actor, target, correlation: { stamp: 'm-2' } }, { ...body, webhook: 'validate' })))!;
  assert.deepEqual([mutate.auditID, validate.auditID, validate.annotations['kubetrail.io/audit-id']], ['m-2', 'm-2', 'correlation']);
  const alone = await sink.emit(admissionReview({ actor, target }, { ...body, operation: 'DELETE', webhook: 'validate' }));
  assert.equal(toK8sAudit(alone)!.auditID, alone.id);
  const viaGateway = toK8sAudit(await sink.emit(apiRequest({ actor, target, correlation: { auditId: 'a-3' } }, { verb: 'create', method: 'POST', path: '/x', status: 201, latencyMs: 1, bytesIn: 1, bytesOut: 1 })))!;
  assert.deepEqual([viaGateway.auditID, viaGateway.stage, viaGateway.responseStatus?.code], ['a-3', 'ResponseComplete', 201]);
});

test('OCSF renderings are valid API Activity records with type_uid = 600300 + activity_id', async () => {
  const sink = new MemorySink();
  for (const d of DRAFTS) {
    const e: KubetrailEvent = await sink.emit(d.draft);
    const o = toOcsf(e);
    assert.equal(o !== undefined, d.ocsf, d.name);
    if (o === undefined) continue;
    assert.equal(validOcsf(o), true, `${d.name}: ${JSON.stringify(validOcsf.errors)}`);
    assert.equal(o.type_uid, 600300 + o.activity_id);
    assert.equal(o.time, Date.parse(e.time));
    assert.equal(o.metadata.uid, e.id);
  }
});

const ACTIVITIES: [string, number][] = [
  ['create', 1],
  ['get', 2],
  ['list', 2],
  ['watch', 2],
  ['update', 3],
  ['patch', 3],
  ['delete', 4],
  ['deletecollection', 4],
  ['exec', 99],
  ['connect', 99],
];

test('OCSF activity_id follows the verb: create 1, read 2, update 3, delete 4, other 99', () => {
  for (const [verb, id] of ACTIVITIES) assert.equal(activityOf(verb), id, verb);
});

test('a denied admission is an OCSF failure with medium severity and the policy message', async () => {
  const sink = new MemorySink();
  const o = toOcsf(await sink.emit(DRAFTS[1]!.draft))!;
  assert.deepEqual([o.status_id, o.severity_id, o.message, o.api.response?.code], [2, 3, 'protected', 403]);
});
