/**
 * The webhook over real HTTPS, in process, with an in-memory sink: request
 * validation, decisions, the mutation patch, dry-run, fail-closed, TLS reload
 * and graceful shutdown. (The API server and Kafka tests are in
 * apiserver.test.ts and kafka.test.ts.)
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import https from 'node:https';
import tls from 'node:tls';
import { test } from 'node:test';
import fjp from 'fast-json-patch';
import { MemorySink } from '../../core/sinks/memory-sink.ts';
import { SinkError } from '../../core/sinks/errors.ts';
import type { EventDraft, EventType, KubetrailEvent } from '../../core/events/model.ts';
import type { EventSink } from '../../core/sinks/sink.ts';
import { MASK } from '../../core/masking/object.ts';
import { createCA, issueCert } from '../../certs/generate.ts';
import { waitFor } from '../support/wait.ts';
import { call, pod, review, startTestWebhook } from './support.ts';

const { applyPatch } = fjp;

test('every malformed request gets a 4xx with a clear message, never a 5xx', async (t) => {
  const sink = new MemorySink();
  const w = await startTestWebhook(sink, { webhook: { maxBodyBytes: 64 * 1024 } });
  t.after(() => w.close());
  const ca = w.pki.ca.certPem;
  const valid = review();
  const withRequest = (patch: Record<string, unknown>): string => JSON.stringify({ ...valid, request: { ...(valid['request'] as object), ...patch } });
  type Case = [name: string, pathName: string, body: string | Buffer, opts: { method?: string; contentType?: string | null }, status: number, message: RegExp];
  const cases: Case[] = [
    ['unknown path', '/admit', JSON.stringify(valid), {}, 404, /POST \/validate and POST \/mutate/],
    ['GET', '/validate', '', { method: 'GET' }, 400, /use POST/],
    ['PUT', '/mutate', JSON.stringify(valid), { method: 'PUT' }, 400, /use POST/],
    ['text/plain', '/validate', JSON.stringify(valid), { contentType: 'text/plain' }, 400, /content-type must be application\/json/],
    ['no content type', '/validate', JSON.stringify(valid), { contentType: null }, 400, /content-type/],
    ['invalid JSON', '/validate', '{"apiVersion": "admission.k8s.io/v1", ', {}, 400, /not valid JSON/],
    ['empty body', '/validate', '', {}, 400, /not valid JSON/],
    ['a JSON array', '/validate', '[]', {}, 400, /JSON object/],
    ['v1beta1', '/validate', JSON.stringify({ ...valid, apiVersion: 'admission.k8s.io/v1beta1' }), {}, 400, /apiVersion must be admission.k8s.io\/v1/],
    ['wrong kind', '/validate', JSON.stringify({ ...valid, kind: 'ConversionReview' }), {}, 400, /kind must be AdmissionReview/],
    ['no request', '/validate', JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }), {}, 400, /request is required/],
    ['no uid', '/validate', withRequest({ uid: undefined }), {}, 400, /request\.uid is required/],
    ['empty uid', '/mutate', withRequest({ uid: '' }), {}, 400, /request\.uid must not be empty/],
    ['numeric uid', '/validate', withRequest({ uid: 7 }), {}, 400, /request\.uid must be a string/],
    ['bad operation', '/validate', withRequest({ operation: 'PATCH' }), {}, 400, /request\.operation/],
    ['no userInfo', '/validate', withRequest({ userInfo: undefined }), {}, 400, /request\.userInfo/],
    ['groups not strings', '/validate', withRequest({ userInfo: { username: 'x', groups: [1] } }), {}, 400, /groups/],
    ['no resource', '/validate', withRequest({ resource: undefined }), {}, 400, /request\.resource is required/],
    ['object is a string', '/validate', withRequest({ object: 'x' }), {}, 400, /request\.object must be an object/],
    ['CREATE without object', '/validate', withRequest({ object: null }), {}, 400, /request\.object is required for CREATE/],
    ['too deep', '/validate', withRequest({ object: JSON.parse('{"a":'.repeat(300) + '1' + '}'.repeat(300)) }), {}, 400, /nested deeper/],
    ['too large', '/validate', withRequest({ object: { ...pod(), pad: 'x'.repeat(70 * 1024) } }), {}, 413, /exceeds 65536 bytes/],
  ];
  for (const [name, p, body, opts, status, message] of cases) {
    const r = await call(`${w.url}${p}`, ca, body, opts);
    assert.equal(r.status, status, `${name}: ${r.body}`);
    assert.match(r.json().message, message, name);
    assert.equal(r.json().kind, 'Status', name);
  }
  // A chunked body (no Content-Length) is cut off at the limit while it streams in.
  const chunked = await new Promise<number>((resolve, reject) => {
    const req = https.request(`${w.url}/validate`, { method: 'POST', ca, agent: false, headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    let sent = 0;
    const pump = (): void => {
      while (sent < 200 * 1024) {
        sent += 16 * 1024;
        if (!req.write('x'.repeat(16 * 1024))) return void req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
  assert.equal(chunked, 413);
  assert.equal(sink.events.length, 0, 'nothing malformed is recorded');
});

test('a privileged pod by an agent is denied with the policy message, echoing the uid, recorded with masked env and the decision', async (t) => {
  const sink = new MemorySink();
  const w = await startTestWebhook(sink);
  t.after(() => w.close());
  const rv = review({ object: pod({ securityContext: { privileged: true } }) });
  const uid = (rv['request'] as { uid: string }).uid;
  const r = await call(`${w.url}/validate?timeout=10s`, w.pki.ca.certPem, JSON.stringify(rv));
  assert.equal(r.status, 200);
  const res = r.json();
  assert.equal(res.apiVersion, 'admission.k8s.io/v1');
  assert.equal(res.kind, 'AdmissionReview');
  assert.equal(res.response.uid, uid);
  assert.equal(res.response.allowed, false);
  assert.equal(res.response.status.code, 403);
  assert.match(res.response.status.message, /privileged containers are not allowed for agents \(container app\)/);
  assert.equal(res.response.patch, undefined, 'a validating answer never carries a patch');
  const reviews = sink.ofType('admission.review');
  assert.equal(reviews.length, 1);
  const ev = reviews[0] as KubetrailEvent<'admission.review'>;
  assert.equal(res.response.auditAnnotations.event, ev.id);
  assert.equal(res.response.auditAnnotations.policy, 'agents-pod-security');
  assert.equal(ev.body.webhook, 'validate');
  assert.equal(ev.body.decision.allowed, false);
  assert.equal(ev.body.decision.policy, 'agents-pod-security');
  assert.deepEqual(ev.body.matchedPolicies, ['agents-pod-security']);
  assert.equal(ev.correlation?.admissionUid, uid);
  assert.equal(ev.correlation?.session, 'sess-123');
  assert.deepEqual(ev.actor?.extra, { 'kubetrail.io/session': ['sess-123'] });
  assert.equal(ev.target?.namespace, 'agents');
  const env = (ev.body.object as any).spec.containers[0].env;
  assert.deepEqual(env, [
    { name: 'DB_PASSWORD', value: MASK },
    { name: 'MODE', value: 'prod' },
  ]);
  assert.ok(typeof ev.body.latencyMs === 'number');
  const decisions = sink.ofType('guardrail.decision');
  assert.equal(decisions.length, 1);
  assert.equal(decisions[0]?.body.rule, 'no-privileged');
  assert.equal(decisions[0]?.correlation?.admissionUid, uid);
});

test('mutate stamps who, session and event with a minimal patch that applies, and never touches CONNECT or DELETE', async (t) => {
  const sink = new MemorySink();
  const w = await startTestWebhook(sink);
  t.after(() => w.close());
  const cases: [string, Record<string, unknown>][] = [
    ['no annotations yet', pod()],
    ['existing annotations', { ...pod(), metadata: { name: 'web', annotations: { 'team/owner': 'a', 'kubetrail.io/event': 'stale' } } }],
  ];
  for (const [name, obj] of cases) {
    const rv = review({ object: obj });
    const r = await call(`${w.url}/mutate`, w.pki.ca.certPem, JSON.stringify(rv));
    const res = r.json().response;
    assert.equal(res.allowed, true, name);
    assert.equal(res.patchType, 'JSONPatch', name);
    const patch = JSON.parse(Buffer.from(res.patch, 'base64').toString('utf8'));
    for (const op of patch) assert.match(op.path, /^\/metadata\/annotations/, `${name}: only annotations change`);
    if (name === 'existing annotations') {
      assert.ok(patch.some((op: { path: string }) => op.path === '/metadata/annotations/kubetrail.io~1last-modified-by'), 'keys with / are escaped as ~1');
    }
    const patched = applyPatch(structuredClone(obj), patch, true, false).newDocument as any;
    const ev = sink.ofType('admission.review').at(-1) as KubetrailEvent<'admission.review'>;
    assert.deepEqual(
      { ...patched.metadata.annotations },
      { ...((obj['metadata'] as any).annotations ?? {}), 'kubetrail.io/last-modified-by': 'agent-ci', 'kubetrail.io/session': 'sess-123', 'kubetrail.io/event': ev.id },
      name,
    );
    assert.equal(res.auditAnnotations.event, ev.id);
    assert.equal(ev.body.webhook, 'mutate');
    assert.deepEqual(ev.body.patch, patch);
  }
  const before = sink.events.length;
  for (const op of [
    { operation: 'CONNECT', subResource: 'exec', kind: { group: '', version: 'v1', kind: 'PodExecOptions' }, object: { kind: 'PodExecOptions', command: ['sh'] } },
    { operation: 'DELETE', object: null, oldObject: pod() },
    { operation: 'UPDATE', subResource: 'status', object: pod(), oldObject: pod() },
    // Review objects are never stored; the API server refuses them with non-empty metadata.
    { resource: { group: 'authorization.k8s.io', version: 'v1', resource: 'subjectaccessreviews' }, kind: { group: 'authorization.k8s.io', version: 'v1', kind: 'SubjectAccessReview' }, namespace: '', object: { kind: 'SubjectAccessReview', apiVersion: 'authorization.k8s.io/v1', metadata: {}, spec: { user: 'x' } } },
    { resource: { group: 'authentication.k8s.io', version: 'v1', resource: 'tokenreviews' }, kind: { group: 'authentication.k8s.io', version: 'v1', kind: 'TokenReview' }, namespace: '', object: { kind: 'TokenReview', apiVersion: 'authentication.k8s.io/v1', metadata: {}, spec: { token: 'x' } } },
  ]) {
    const res = (await call(`${w.url}/mutate`, w.pki.ca.certPem, JSON.stringify(review(op)))).json().response;
    assert.equal(res.allowed, true);
    assert.equal(res.patch, undefined, `${op.operation} ${JSON.stringify(op.resource ?? op.subResource ?? '')}`);
  }
  assert.equal(sink.events.length, before, 'nothing to patch, nothing recorded by mutate');
});

test('a MutationPolicy adds labels, annotations and defaults without overwriting what the caller set', async (t) => {
  const sink = new MemorySink();
  const w = await startTestWebhook(sink);
  t.after(() => w.close());
  writeFileSync(
    path.join(w.policies, 'mutation.yaml'),
    `apiVersion: kubetrail.io/v1alpha1
kind: MutationPolicy
metadata: {name: agent-defaults}
spec:
  match:
    resourceRules: [{apiGroups: [""], resources: [pods]}]
    subjects: {groups: [agents]}
  labels: {kubetrail.io/agent: "true"}
  defaults:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 5
`,
  );
  await w.webhook.policies.reload();
  const obj = { ...pod(), spec: { ...(pod()['spec'] as object), restartPolicy: 'Always' } };
  const res = (await call(`${w.url}/mutate`, w.pki.ca.certPem, JSON.stringify(review({ object: obj })))).json().response;
  const patch = JSON.parse(Buffer.from(res.patch, 'base64').toString('utf8'));
  const patched = applyPatch(structuredClone(obj), patch, true, false).newDocument as any;
  assert.equal(patched.metadata.labels['kubetrail.io/agent'], 'true');
  assert.equal(patched.metadata.labels.app, 'web');
  assert.equal(patched.spec.restartPolicy, 'Always', 'a default never overwrites');
  assert.equal(patched.spec.terminationGracePeriodSeconds, 5);
  assert.deepEqual((sink.ofType('admission.review').at(-1) as KubetrailEvent<'admission.review'>).body.matchedPolicies, ['agent-defaults']);
});

test('dry-run is evaluated and answered but not recorded, and stamps no event id', async (t) => {
  const sink = new MemorySink();
  const w = await startTestWebhook(sink);
  t.after(() => w.close());
  const denied = (await call(`${w.url}/validate`, w.pki.ca.certPem, JSON.stringify(review({ dryRun: true, object: pod({ securityContext: { privileged: true } }) })))).json().response;
  assert.equal(denied.allowed, false);
  assert.equal(denied.auditAnnotations, undefined);
  const mutated = (await call(`${w.url}/mutate`, w.pki.ca.certPem, JSON.stringify(review({ dryRun: true })))).json().response;
  const patch = JSON.parse(Buffer.from(mutated.patch, 'base64').toString('utf8'));
  const annotations = (applyPatch(pod(), patch, true, false).newDocument as any).metadata.annotations;
  assert.equal(annotations['kubetrail.io/last-modified-by'], 'agent-ci');
  assert.equal(annotations['kubetrail.io/event'], undefined);
  assert.equal(sink.events.length, 0);
});

/** A sink whose emits wait for `release()` (or reject with `fail`). */
class GatedSink implements EventSink {
  readonly inner = new MemorySink();
  #gate: Promise<void>;
  release!: () => void;
  emitted = 0;
  constructor() {
    this.#gate = new Promise((r) => (this.release = r));
  }
  async emit<T extends EventType>(draft: EventDraft<T>): Promise<KubetrailEvent<T>> {
    this.emitted++;
    await this.#gate;
    return this.inner.emit(draft);
  }
  flush(): Promise<void> {
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

test('when the event cannot be made durable: guardrailed requests are denied (failClosed), others admitted with a warning and no event id; failClosed=false admits', async (t) => {
  const failing = new MemorySink({ failWith: new SinkError('SINK_ERR_SPOOL_FULL', 'spool full') });
  const w = await startTestWebhook(failing);
  t.after(() => w.close());
  const guarded = (await call(`${w.url}/validate`, w.pki.ca.certPem, JSON.stringify(review()))).json().response;
  assert.equal(guarded.allowed, false, 'a pod by an agent is guardrailed (agents-pod-security)');
  assert.match(guarded.status.message, /could not record this request durably/);
  const guardedMutate = (await call(`${w.url}/mutate`, w.pki.ca.certPem, JSON.stringify(review()))).json().response;
  assert.equal(guardedMutate.allowed, false);
  const human = { userInfo: { username: 'alice', groups: ['devs'] } };
  const open = (await call(`${w.url}/validate`, w.pki.ca.certPem, JSON.stringify(review(human)))).json().response;
  assert.equal(open.allowed, true);
  assert.deepEqual(open.warnings, ['kubetrail could not record this request']);
  assert.equal(open.auditAnnotations, undefined);
  const openMutate = (await call(`${w.url}/mutate`, w.pki.ca.certPem, JSON.stringify(review(human)))).json().response;
  const annotations = (applyPatch(pod(), JSON.parse(Buffer.from(openMutate.patch, 'base64').toString('utf8')), true, false).newDocument as any).metadata.annotations;
  assert.equal(annotations['kubetrail.io/event'], undefined, 'no id of an event that does not exist');
  assert.equal(annotations['kubetrail.io/last-modified-by'], 'alice');

  const w2 = await startTestWebhook(failing, { webhook: { failClosed: false } });
  t.after(() => w2.close());
  const admitted = (await call(`${w2.url}/validate`, w2.pki.ca.certPem, JSON.stringify(review()))).json().response;
  assert.equal(admitted.allowed, true);
});

test('the ?timeout= deadline is honoured: a sink slower than the deadline gets a fail-closed answer before the API server would give up', async (t) => {
  const slow = new GatedSink();
  const w = await startTestWebhook(slow);
  t.after(async () => {
    slow.release();
    await w.close();
  });
  const r = await call(`${w.url}/validate?timeout=1s`, w.pki.ca.certPem, JSON.stringify(review()));
  assert.equal(r.status, 200);
  assert.equal(r.json().response.allowed, false);
  assert.match(r.json().response.status.message, /could not record/);
  assert.equal(slow.inner.events.length, 0, 'the answer came while the event was still pending');
});

test('SIGTERM-style shutdown answers the review in flight before the listener closes', async (t) => {
  const gated = new GatedSink();
  const w = await startTestWebhook(gated);
  t.after(() => w.close());
  const pending = call(`${w.url}/validate`, w.pki.ca.certPem, JSON.stringify(review({ userInfo: { username: 'alice', groups: [] } })));
  await waitFor(() => gated.emitted > 0, 'the review to reach the sink');
  assert.equal(w.webhook.server.inFlight(), 1);
  let closed = false;
  const closing = w.webhook.close().then(() => (closed = true));
  // Once new connections are refused, close() has stopped the listener and is waiting for the review in flight.
  await waitFor(() => call(`${w.url}/validate`, w.pki.ca.certPem, JSON.stringify(review())).then(() => false, () => true), 'the listener to refuse new connections');
  assert.equal(closed, false, 'close waits for the review in flight');
  gated.release();
  const r = await pending;
  assert.equal(r.status, 200);
  assert.equal(r.json().response.allowed, true);
  assert.ok(r.json().response.auditAnnotations.event);
  await closing;
  assert.equal(closed, true);
  await assert.rejects(call(`${w.url}/validate`, w.pki.ca.certPem, JSON.stringify(review())), 'no new connections after close');
});

function peerFingerprint(port: number, caPems: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, ca: caPems, servername: 'localhost' }, () => {
      const fp = s.getPeerCertificate().fingerprint256;
      s.end();
      resolve(fp);
    });
    s.on('error', reject);
  });
}

test('replacing the certificate and key files makes new connections see the new certificate, without a restart', async (t) => {
  const w = await startTestWebhook(new MemorySink());
  t.after(() => w.close());
  const before = await peerFingerprint(w.webhook.port, [w.pki.ca.certPem]);
  const ca2 = createCA({ commonName: 'second-ca' });
  const next = issueCert(ca2, { commonName: 'kubetrail-webhook-2', ips: ['127.0.0.1'], dnsNames: ['localhost'] });
  // Write both to temp names, then rename into place, as cert-manager and editors do.
  writeFileSync(`${w.pki.keyFile}.tmp`, next.keyPem);
  writeFileSync(`${w.pki.certFile}.tmp`, next.certPem);
  const { renameSync } = await import('node:fs');
  renameSync(`${w.pki.keyFile}.tmp`, w.pki.keyFile);
  renameSync(`${w.pki.certFile}.tmp`, w.pki.certFile);
  let after = before;
  for (let i = 0; i < 200 && after === before; i++) {
    await new Promise((r) => setTimeout(r, 25));
    after = await peerFingerprint(w.webhook.port, [w.pki.ca.certPem, ca2.certPem]);
  }
  assert.notEqual(after, before);
  const expected = new (await import('node:crypto')).X509Certificate(next.certPem).fingerprint256;
  assert.equal(after, expected);
  // A broken pair is refused and the current one stays.
  writeFileSync(w.pki.keyFile, 'not a key');
  assert.equal(w.webhook.server.reloadTls(), false);
  assert.equal(await peerFingerprint(w.webhook.port, [ca2.certPem]), expected);
});

test('MaskingPolicy patterns mask secret-shaped strings in captured objects, including a CONNECT command', async (t) => {
  const sink = new MemorySink();
  const w = await startTestWebhook(sink);
  t.after(() => w.close());
  writeFileSync(
    path.join(w.policies, 'masking.yaml'),
    `apiVersion: kubetrail.io/v1alpha1
kind: MaskingPolicy
metadata: {name: secrets-everywhere}
spec:
  builtins: [jwt, aws-access-key]
  patterns:
    - {name: db-url-password, regex: "(?<=postgres://[a-z]+:)[^@]+", maxLength: 128}
`,
  );
  assert.equal(await w.webhook.policies.reload(), true, w.webhook.policies.lastError()?.message);
  const jwt = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhZ2VudCJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ';
  const cm = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'cfg' }, data: { db: 'postgres://app:s3cr3t-pw@db:5432/app', token: jwt, aws: 'AKIAABCDEFGHIJKLMNOP' } };
  const human = { userInfo: { username: 'alice', groups: ['devs'] } };
  await call(`${w.url}/validate`, w.pki.ca.certPem, JSON.stringify(review({ ...human, kind: { group: '', version: 'v1', kind: 'ConfigMap' }, resource: { group: '', version: 'v1', resource: 'configmaps' }, object: cm })));
  await call(
    `${w.url}/validate`,
    w.pki.ca.certPem,
    JSON.stringify(review({ ...human, operation: 'CONNECT', subResource: 'exec', kind: { group: '', version: 'v1', kind: 'PodExecOptions' }, object: { kind: 'PodExecOptions', command: ['curl', '-H', `Authorization: Bearer ${jwt}`, 'http://x'] } })),
  );
  const [cmEv, execEv] = sink.ofType('admission.review');
  assert.deepEqual((cmEv?.body.object as any).data, { db: 'postgres://app:[masked:db-url-password]@db:5432/app', token: '[masked:jwt]', aws: '[masked:aws-access-key]' });
  assert.deepEqual((execEv?.body.object as any).command, ['curl', '-H', 'Authorization: Bearer [masked:jwt]', 'http://x']);
  assert.doesNotMatch(JSON.stringify(sink.events), /s3cr3t-pw|eyJhbGci|AKIAABCDEFGHIJKLMNOP/);
});

test('webhook.name sets the prefix of the stamp annotations', async (t) => {
  const sink = new MemorySink();
  const w = await startTestWebhook(sink, { webhook: { name: 'audit.example.com' } });
  t.after(() => w.close());
  const res = (await call(`${w.url}/mutate`, w.pki.ca.certPem, JSON.stringify(review()))).json().response;
  const annotations = (applyPatch(pod(), JSON.parse(Buffer.from(res.patch, 'base64').toString('utf8')), true, false).newDocument as any).metadata.annotations;
  assert.deepEqual(Object.keys(annotations).sort(), ['audit.example.com/event', 'audit.example.com/last-modified-by', 'audit.example.com/session']);
  assert.equal(annotations['audit.example.com/event'], sink.events[0]?.id);
  await assert.rejects(startTestWebhook(sink, { webhook: { name: 'Not/A Prefix' } }), (err: Error) => /webhook\.name: must be a DNS subdomain/.test(err.message));
});
