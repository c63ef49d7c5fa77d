/**
 * Numbers an IEEE double cannot hold (issue 13 item 9c): `1e309` (JSON.parse
 * makes it Infinity, which the chain cannot hash) and integers past 2^53
 * (rounded: 9007199254740993 read back as ...992). The webhook records the
 * raw text of such numbers, says where (body.rawNumbers), and the event
 * seals and verifies like any other.
 */
import assert from 'node:assert/strict';
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
