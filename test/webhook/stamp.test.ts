import assert from 'node:assert/strict';
import { test } from 'node:test';
import fastJsonPatch, { type Operation } from 'fast-json-patch';
import { restoreStampOps, withoutStamp } from '../../webhook/stamp.ts';

const KEYS = ['kubetrail.io/last-modified-by', 'kubetrail.io/session', 'kubetrail.io/event'];
const old = { metadata: { name: 'x', resourceVersion: '5', annotations: { keep: '1', 'kubetrail.io/last-modified-by': 'alice', 'kubetrail.io/event': 'e-1' } }, data: { k: 'v' } };

const CASES: { name: string; object: Record<string, any> }[] = [
  { name: 'a server-side apply that dropped the stamp', object: { metadata: { name: 'x', annotations: { keep: '1' }, managedFields: [{ manager: 'gitops' }] }, data: { k: 'v' } } },
  { name: 'an update carrying a stamp of its own', object: { metadata: { name: 'x', resourceVersion: '5', annotations: { keep: '1', 'kubetrail.io/last-modified-by': 'bob', 'kubetrail.io/session': 's', 'kubetrail.io/event': 'forged' } }, data: { k: 'v' } } },
];

for (const c of CASES) {
  test(`a no-op update (${c.name}) is patched back to the old stamp exactly`, () => {
    assert.deepEqual(withoutStamp(c.object, KEYS), withoutStamp(old, KEYS));
    const patched = fastJsonPatch.applyPatch(structuredClone(c.object), restoreStampOps(c.object, old, KEYS) as Operation[]).newDocument as any;
    for (const k of KEYS) assert.equal(patched.metadata.annotations?.[k], (old.metadata.annotations as Record<string, string>)[k], k);
  });
}

test('a real change is not a no-op, and a stamp the old object lacked is removed', () => {
  assert.notDeepEqual(withoutStamp({ ...old, data: { k: 'w' } }, KEYS), withoutStamp(old, KEYS));
  const bare = { metadata: { name: 'x' } };
  const ops = restoreStampOps({ metadata: { name: 'x', annotations: { 'kubetrail.io/event': 'forged' } } }, bare, KEYS);
  assert.deepEqual(ops, [{ op: 'remove', path: '/metadata/annotations' }], 'the whole map, which the old object did not have');
  const withOther = restoreStampOps({ metadata: { annotations: { a: '1', 'kubetrail.io/event': 'forged' } } }, { metadata: { annotations: { a: '1' } } }, KEYS);
  assert.deepEqual(withOther, [{ op: 'remove', path: '/metadata/annotations/kubetrail.io~1event' }]);
});
