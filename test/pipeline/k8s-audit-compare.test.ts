import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { test } from 'node:test';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { harness, kubectl } from '../support/env.ts';
import { MemorySink } from '../../core/sinks/memory-sink.ts';
import { admissionReview } from '../../core/events/builders.ts';
import { toK8sAudit, type K8sAuditEvent } from '../../core/events/formats/k8s-audit.ts';
import { registerWebhooks, startTestWebhook, uniqueId } from '../webhook/support.ts';

const schema = JSON.parse(readFileSync(new URL('../../core/schema/k8s-audit-event.schema.json', import.meta.url), 'utf8')) as object;
const validAudit = new Ajv2020({ strict: false, allErrors: true }).compile(schema);

async function findAuditEvent(file: string, match: (e: K8sAuditEvent) => boolean, timeoutMs = 20_000): Promise<K8sAuditEvent> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      if (!line.includes('"configmaps"')) continue;
      const e = JSON.parse(line) as K8sAuditEvent;
      if (match(e)) return e;
    }
    if (Date.now() > deadline) throw new Error('the API server did not write the audit event');
    await new Promise((r) => setTimeout(r, 200));
  }
}

test("the k8s-audit rendering of an admission.review matches the API server's own audit event for the same ConfigMap create, field by field", async () => {
  const env = harness();
  const ns = `kt-audit-${randomUUID().slice(0, 8)}`;
  assert.equal((await kubectl(env.ADMIN_KUBECONFIG, ['create', 'namespace', ns])).status, 0);
  try {
    const created = await kubectl(env.ADMIN_KUBECONFIG, ['-n', ns, 'create', 'configmap', 'cm', '--from-literal=k=v']);
    assert.equal(created.status, 0, created.stderr);
    const theirs = await findAuditEvent(env.APISERVER_AUDIT_LOG, (e) => e.verb === 'create' && e.stage === 'ResponseComplete' && e.objectRef?.namespace === ns && e.objectRef?.name === 'cm');

    // What the webhook records for this request: the AdmissionReview carries the
    // same user, the resource coordinates, the operation and the object.
    const sink = new MemorySink({ source: { component: 'webhook', instance: 'w-0', cluster: 'harness' } });
    const event = await sink.emit(
      admissionReview(
        {
          actor: { username: theirs.user.username, ...(theirs.user.uid !== undefined ? { uid: theirs.user.uid } : {}), groups: theirs.user.groups ?? [], authn: 'apiserver' },
          target: { group: '', version: 'v1', resource: 'configmaps', namespace: ns, name: 'cm' },
          correlation: { admissionUid: randomUUID() },
        },
        { operation: 'CREATE', dryRun: false, webhook: 'validate', object: theirs.requestObject, decision: { allowed: true } },
      ),
    );
    const ours = toK8sAudit(event);
    assert.ok(ours);

    assert.equal(validAudit(theirs), true, `the schema accepts the API server's own event: ${JSON.stringify(validAudit.errors)}`);
    assert.equal(validAudit(ours), true, `our event is a valid audit Event: ${JSON.stringify(validAudit.errors)}`);

    // Key sets: ours has nothing the API server's Event lacks; it lacks only what a
    // webhook cannot see: the client's address and agent, and the response (status
    // and stored object: admission runs before the write, and a later step can still fail it).
    const oursKeys = Object.keys(ours).sort();
    const theirKeys = Object.keys(theirs).sort();
    assert.deepEqual(oursKeys.filter((k) => !theirKeys.includes(k)), []);
    assert.deepEqual(theirKeys.filter((k) => !oursKeys.includes(k)).sort(), ['responseObject', 'responseStatus', 'sourceIPs', 'userAgent']);

    // Values that must match.
    assert.equal(ours.kind, theirs.kind);
    assert.equal(ours.apiVersion, theirs.apiVersion);
    assert.equal(theirs.level, 'RequestResponse', 'configmaps are logged at RequestResponse by the harness policy, with the object');
    assert.equal(ours.level, 'Request', 'the request object, and no response: the webhook never sees one');
    assert.equal(theirs.stage, 'ResponseComplete');
    assert.equal(ours.stage, 'RequestReceived', 'seen during admission, before the response');
    assert.equal(ours.verb, theirs.verb);
    assert.equal(ours.user.username, theirs.user.username);
    assert.equal(ours.user.uid, theirs.user.uid);
    assert.deepEqual([...(ours.user.groups ?? [])].sort(), [...(theirs.user.groups ?? [])].sort());
    const { uid: _uid, resourceVersion: _rv, ...theirRef } = theirs.objectRef as Record<string, string>;
    assert.deepEqual(ours.objectRef, theirRef, 'objectRef (the uid and resourceVersion exist only after the write)');
    assert.equal(ours.requestURI, theirs.requestURI.split('?')[0], 'requestURI without the client query string');
    assert.equal(ours.responseStatus, undefined, 'no invented response status');
    assert.deepEqual(ours.requestObject, theirs.requestObject);
    assert.match(ours.requestReceivedTimestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    assert.ok(Object.keys(ours.annotations).every((k) => k.startsWith('kubetrail.io/')));
  } finally {
    await kubectl(env.ADMIN_KUBECONFIG, ['delete', 'namespace', ns, '--wait=false']);
  }
});

/** One request to the API server as the harness admin (who may impersonate), with extra headers. */
function apiRequest(method: string, path: string, headers: Record<string, string>, body?: string): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  const env = harness();
  return new Promise((resolve, reject) => {
    const req = https.request(`${env.APISERVER_URL}${path}`, { method, ca: readFileSync(env.APISERVER_CA), headers: { authorization: `Bearer ${env.ADMIN_TOKEN}`, 'content-type': 'application/json', ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

test("one write is one request in k8s-audit: the webhook's events carry the API server's audit ID when the caller passed it on, else one shared correlation the API server's own event names", async (t) => {
  const env = harness();
  const id = uniqueId();
  const sink = new MemorySink({ source: { component: 'webhook', instance: 'w-1', cluster: 'harness' } });
  const w = await startTestWebhook(sink);
  t.after(() => w.close());
  const unregister = await registerWebhooks(env.ADMIN_KUBECONFIG, { id, url: w.url, caBundle: w.pki.caBundle }, () => sink.ofType('admission.review').some((e) => e.target?.name === `kt-probe-${id}`));
  t.after(unregister);
  t.after(async () => void (await kubectl(env.ADMIN_KUBECONFIG, ['-n', 'agents', 'delete', 'configmaps', '-l', `kubetrail-test=${id}`, '--ignore-not-found', '--wait=false'])));
  const audit = (name: string) => findAuditEvent(env.APISERVER_AUDIT_LOG, (e) => e.verb === 'create' && e.objectRef?.name === name);
  const rendered = (name: string) => sink.ofType('admission.review').filter((e) => e.target?.name === name).map((e) => toK8sAudit(e)!);

  // What the API server sends a webhook: no audit ID anywhere (no Audit-ID header, and request.uid is per call).
  const cm = (name: string) => JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, labels: { 'kubetrail-test': id } }, data: { k: 'v' } });
  const plain = `plain-${id}`;
  assert.equal((await kubectl(env.ADMIN_KUBECONFIG, ['-n', 'agents', 'create', '-f', '-'], cm(plain))).status, 0);
  const theirs = await audit(plain);
  const ours = rendered(plain);
  assert.equal(ours.length, 2, 'mutate and validate');
  assert.ok(ours.every((a) => a.auditID !== theirs.auditID && a.annotations['kubetrail.io/audit-id'] === 'correlation'));
  assert.equal(new Set(ours.map((a) => a.auditID)).size, 1, 'one request, one id: both events carry the stamp correlation');
  const admissionUids = new Set(ours.map((a) => a.annotations['kubetrail.io/admission-uid']));
  assert.equal(admissionUids.size, 2, 'request.uid differs per webhook call, and is not the audit ID');
  assert.ok(!admissionUids.has(theirs.auditID));
  assert.equal(theirs.annotations?.['objects.mutate.kubetrail.io/event'], ours[0]!.auditID, "the API server's own event names the correlation");

  // A caller that chooses the audit ID (the gateway) and passes it on in an impersonated extra: all share it.
  const chosen = randomUUID();
  const viaGateway = `gw-${id}`;
  const r = await apiRequest('POST', '/api/v1/namespaces/agents/configmaps', { 'audit-id': chosen, 'impersonate-user': 'admin', 'impersonate-group': 'system:masters', 'impersonate-extra-kubetrail.io%2faudit-id': chosen }, cm(viaGateway));
  assert.equal(r.status, 201, r.body);
  assert.equal(r.headers['audit-id'], chosen);
  assert.equal((await audit(viaGateway)).auditID, chosen, "the API server's audit ID");
  const known = rendered(viaGateway);
  assert.equal(known.length, 2);
  assert.ok(known.every((a) => a.auditID === chosen && a.annotations['kubetrail.io/audit-id'] === 'apiserver'));
});
