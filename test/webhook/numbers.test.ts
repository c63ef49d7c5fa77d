/**
 * Numbers an IEEE double cannot hold (issue 13 item 9c): `1e309` (JSON.parse
 * makes it Infinity, which the chain cannot hash) and integers past 2^53
 * (rounded: 9007199254740993 read back as ...992). The webhook records the
 * raw text of such numbers, says where (body.rawNumbers), and the event
 * seals and verifies like any other.
 */
import assert from 'node:assert/strict';
import { waitFor } from '../support/wait.ts';
import { test } from 'node:test';
import { MemorySink } from '../../core/sinks/memory-sink.ts';
import { canonicalJsonByWriter } from '../../core/chain/canonical.ts';
import { compileObjectMasking } from '../../core/masking/object.ts';
import type { PolicySet } from '../../core/policy/store.ts';
import { AdmissionHandler } from '../../webhook/handler.ts';
import { parseAdmissionReview } from '../../webhook/review.ts';
import { quietLogger, review } from './support.ts';

const BIG = '9007199254740993';
const EMPTY: PolicySet = { generation: 0, loadedAt: '', files: [], digest: '', of: () => [], entries: () => [] };
const emptyPolicySet = (): PolicySet => EMPTY;
const CASES: { name: string; json: string; path: string; raw: string }[] = [
  { name: 'a number too large for a double', json: '1e309', path: '/object/spec/huge', raw: '1e309' },
  { name: 'a negative one', json: '-1.5E+400', path: '/object/spec/huge', raw: '-1.5E+400' },
  { name: 'an integer above 2^53', json: BIG, path: '/object/spec/huge', raw: BIG },
  { name: 'an integer below -2^53', json: `-${BIG}`, path: '/object/spec/huge', raw: `-${BIG}` },
  { name: 'a number that underflows to 0', json: '1e-400', path: '/object/spec/huge', raw: '1e-400' },
];

function reviewText(json: string): string {
  const r = review();
  (r['request'] as any).object.spec.huge = '__N__';
  (r['request'] as any).object.spec.list = [1, 2.5, 9007199254740991, '1e309'];
  return JSON.stringify(r).replace('"__N__"', json);
}

for (const c of CASES) {
  test(`${c.name} (${c.json}) is recorded as its raw text, listed in rawNumbers, and the event seals and verifies`, async () => {
    const req = parseAdmissionReview(reviewText(c.json));
    const sink = new MemorySink();
    const h = new AdmissionHandler({ sink, policies: () => emptyPolicySet(), masking: compileObjectMasking(), log: quietLogger(), failClosed: true });
    const res = await h.validate(req, performance.now() + 5000);
    assert.equal(res.allowed, true);
    assert.ok(res.auditAnnotations?.['event'], 'recorded');
    const ev = sink.ofType('admission.review')[0]!;
    const obj = ev.body.object as any;
    assert.equal(obj.spec.huge, c.raw);
    assert.deepEqual(obj.spec.list, [1, 2.5, 9007199254740991, '1e309'], 'ordinary numbers and strings are untouched');
    assert.deepEqual(ev.body.rawNumbers, [c.path]);
    // The line hashed is canonical and re-reads to the same event: verify recomputes the same hash.
    const line = sink.lines[0] as string;
    assert.equal(canonicalJsonByWriter(JSON.parse(line)), line);
  });
}

test('a review without such numbers has no rawNumbers', async () => {
  const req = parseAdmissionReview(reviewText('12345'));
  const sink = new MemorySink();
  const h = new AdmissionHandler({ sink, policies: () => emptyPolicySet(), masking: compileObjectMasking(), log: quietLogger(), failClosed: true });
  await h.validate(req, performance.now() + 5000);
  const ev = sink.ofType('admission.review')[0]!;
  assert.equal((ev.body.object as any).spec.huge, 12345);
  assert.equal(ev.body.rawNumbers, undefined);
});

test('the slower faithful parse still refuses nesting past the limit with a 400, never a stack overflow', () => {
  const deep = reviewText('1e309').replace('"list":[', `"list":[${'['.repeat(5000)}1e309${']'.repeat(5000)},`);
  assert.throws(() => parseAdmissionReview(deep), (err: any) => err.status === 400 && /^ADM_ERR_INVALID_(REVIEW|JSON)$/.test(err.code));
});

test('with the real API server: an integer above 2^53 in a custom resource reaches the webhook as written and is recorded as its text; 1e309 never gets past the API server', async (t) => {
  const { harness, kubectl } = await import('../support/env.ts');
  const { startTestWebhook, uniqueId } = await import('./support.ts');
  const env = harness();
  const id = uniqueId();
  const group = `n${id}.kubetrail.io`;
  const crd = { apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition', metadata: { name: `nums.${group}` }, spec: { group, scope: 'Namespaced', names: { plural: 'nums', singular: 'num', kind: 'Num' }, versions: [{ name: 'v1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } } }] } };
  assert.equal((await kubectl(env.ADMIN_KUBECONFIG, ['apply', '-f', '-'], JSON.stringify(crd))).status, 0);
  t.after(async () => void (await kubectl(env.ADMIN_KUBECONFIG, ['delete', 'crd', `nums.${group}`, '--wait=false'])));
  const sink = new MemorySink();
  const w = await startTestWebhook(sink);
  t.after(() => w.close());
  const cfg = { apiVersion: 'admissionregistration.k8s.io/v1', kind: 'ValidatingWebhookConfiguration', metadata: { name: `kt-nums-${id}` }, webhooks: [{ name: 'nums.validate.kubetrail.io', admissionReviewVersions: ['v1'], sideEffects: 'None', failurePolicy: 'Fail', clientConfig: { url: `${w.url}/validate`, caBundle: w.pki.caBundle }, rules: [{ operations: ['CREATE'], apiGroups: [group], apiVersions: ['*'], resources: ['nums'] }] }] };
  assert.equal((await kubectl(env.ADMIN_KUBECONFIG, ['apply', '-f', '-'], JSON.stringify(cfg))).status, 0);
  t.after(async () => void (await kubectl(env.ADMIN_KUBECONFIG, ['delete', 'validatingwebhookconfiguration', `kt-nums-${id}`, '--ignore-not-found'])));
  // The CRD and the registration are picked up asynchronously: retry the create until the webhook has seen it.
  const text = (name: string, n: string) => `{"apiVersion":"${group}/v1","kind":"Num","metadata":{"name":"${name}"},"spec":{"n":${n},"small":7}}`;
  const seen = (): boolean => sink.ofType('admission.review').some((e) => e.target?.name?.startsWith('big'));
  let i = 0;
  await waitFor(async () => seen() || (await kubectl(env.ADMIN_KUBECONFIG, ['-n', 'default', 'create', '-f', '-'], text(`big-${i++}`, BIG)), seen()), 'the webhook to be called for a create', { timeoutMs: 60_000, intervalMs: 200 });
  const ev = sink.ofType('admission.review').find((e) => e.target?.name?.startsWith('big'))!;
  assert.deepEqual([(ev.body.object as any).spec.n, (ev.body.object as any).spec.small, ev.body.rawNumbers], [BIG, 7, ['/object/spec/n']]);
  const stored = await kubectl(env.ADMIN_KUBECONFIG, ['-n', 'default', 'get', 'nums', ev.target!.name!, '-o', 'json']);
  assert.match(stored.stdout, new RegExp(`"n": ${BIG}\\b`), 'the API server stored it exactly');
  // kubectl itself refuses to decode 1e309; sent raw, the API server answers 400 before admission.
  const { request } = await import('node:https');
  const { readFileSync } = await import('node:fs');
  const huge = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request(`${env.APISERVER_URL}/apis/${group}/v1/namespaces/default/nums`, { method: 'POST', ca: readFileSync(env.APISERVER_CA), headers: { authorization: `Bearer ${env.ADMIN_TOKEN}`, 'content-type': 'application/json' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end(text('huge', '1e309'));
  });
  assert.equal(huge.status, 400);
  assert.match(huge.body, /cannot unmarshal number 1e309/);
  assert.ok(!sink.ofType('admission.review').some((e) => e.target?.name === 'huge'));
});
