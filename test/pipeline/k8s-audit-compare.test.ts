import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { harness, kubectl } from '../support/env.ts';
import { MemorySink } from '../../core/sinks/memory-sink.ts';
import { admissionReview } from '../../core/events/builders.ts';
import { toK8sAudit, type K8sAuditEvent } from '../../core/events/formats/k8s-audit.ts';

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
    // webhook cannot see: the client's address and agent, and the stored object
    // the API server answered with (admission runs before the write).
    const oursKeys = Object.keys(ours).sort();
    const theirKeys = Object.keys(theirs).sort();
    assert.deepEqual(oursKeys.filter((k) => !theirKeys.includes(k)), []);
    assert.deepEqual(theirKeys.filter((k) => !oursKeys.includes(k)).sort(), ['responseObject', 'sourceIPs', 'userAgent']);

    // Values that must match.
    assert.equal(ours.kind, theirs.kind);
    assert.equal(ours.apiVersion, theirs.apiVersion);
    assert.equal(ours.level, theirs.level, 'configmaps are logged at RequestResponse by the harness policy, with the object');
    assert.equal(ours.stage, theirs.stage);
    assert.equal(ours.verb, theirs.verb);
    assert.equal(ours.user.username, theirs.user.username);
    assert.equal(ours.user.uid, theirs.user.uid);
    assert.deepEqual([...(ours.user.groups ?? [])].sort(), [...(theirs.user.groups ?? [])].sort());
    const { uid: _uid, resourceVersion: _rv, ...theirRef } = theirs.objectRef as Record<string, string>;
    assert.deepEqual(ours.objectRef, theirRef, 'objectRef (the uid and resourceVersion exist only after the write)');
    assert.equal(ours.requestURI, theirs.requestURI.split('?')[0], 'requestURI without the client query string');
    assert.equal(ours.responseStatus?.code, theirs.responseStatus?.code);
    assert.deepEqual(ours.requestObject, theirs.requestObject);
    assert.match(ours.requestReceivedTimestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    assert.ok(Object.keys(ours.annotations).every((k) => k.startsWith('kubetrail.io/')));
  } finally {
    await kubectl(env.ADMIN_KUBECONFIG, ['delete', 'namespace', ns, '--wait=false']);
  }
});
