import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { EventIndex, type IndexQuery } from '../../core/index/event-index.ts';
import { feedIndex } from '../../core/index/feed.ts';
import { indexedFields } from '../../core/index/fields.ts';
import { readEvents } from '../../core/events/reader.ts';
import type { KubetrailEvent } from '../../core/events/model.ts';
import { writeTrail } from '../support/trail.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'kt-index-'));
const dataDir = path.join(dir, 'data');
const N = 3000;
const START = Date.parse('2026-12-01T00:00:00Z');
let all: KubetrailEvent[] = [];
let index: EventIndex;

before(async () => {
  writeTrail(dataDir, N, START, { users: 7, namespaces: 11 }, 1000);
  for await (const e of readEvents({ source: { kind: 'local', dir: dataDir } })) all.push(e);
  index = new EventIndex(path.join(dir, 'index.sqlite'));
  const r = await feedIndex({ index, source: { kind: 'local', dir: dataDir }, batchSize: 700 });
  assert.equal(r.added, N);
});
after(() => {
  index.close();
  rmSync(dir, { recursive: true, force: true });
});

const f = indexedFields;
const CASES: { name: string; q: IndexQuery; keep: (e: KubetrailEvent) => boolean }[] = [
  { name: 'user', q: { user: 'u3' }, keep: (e) => e.actor?.username === 'u3' },
  { name: 'group', q: { group: 'team-2' }, keep: (e) => e.actor?.groups.includes('team-2') === true },
  { name: 'namespace and user', q: { namespace: 'ns4', user: 'u1' }, keep: (e) => f(e).namespace === 'ns4' && e.actor?.username === 'u1' },
  { name: 'resource', q: { resource: 'secrets' }, keep: (e) => e.target?.resource === 'secrets' },
  { name: 'resource/subresource', q: { resource: 'pods/exec' }, keep: (e) => e.target?.resource === 'pods' && e.target.subresource === 'exec' },
  { name: 'verb', q: { verb: 'delete' }, keep: (e) => f(e).verb === 'delete' },
  { name: 'exec command words', q: { command: 'cat /etc/hostname' }, keep: (e) => f(e).command === 'cat /etc/hostname' },
  { name: 'typed line words', q: { line: 'curl' }, keep: (e) => f(e).lines.includes('curl') },
  { name: 'decision deny', q: { decision: 'deny' }, keep: (e) => f(e).decision === 'deny' },
  { name: 'policy', q: { policy: 'no-scale-down' }, keep: (e) => f(e).policy === 'no-scale-down' },
  { name: 'approval state', q: { approval: 'required' }, keep: (e) => f(e).approval === 'required' },
  { name: 'type prefix', q: { type: 'session' }, keep: (e) => e.type.startsWith('session.') },
  { name: 'time range', q: { since: new Date(START + 1000), until: new Date(START + 1500) }, keep: (e) => f(e).t >= START + 1000 && f(e).t < START + 1500 && e.type !== 'session.data' },
  { name: 'free text', q: { text: 'replicas below' }, keep: (e) => f(e).text.includes('replicas below 2') },
  { name: 'visibility', q: { namespaces: ['ns1', 'ns2'] }, keep: (e) => (f(e).namespace === 'ns1' || f(e).namespace === 'ns2') && e.type !== 'session.data' },
];

for (const c of CASES) {
  test(`a query by ${c.name} returns exactly the events a scan keeps, newest first`, () => {
    const want = all.filter((e) => c.keep(e) && (c.q.type !== undefined || c.q.line !== undefined || e.type !== 'session.data'));
    assert.ok(want.length > 0, 'the fixture has matching events');
    const got = index.query({ ...c.q, limit: 10_000 }).events;
    assert.deepEqual(got.map((e) => e.id), want.map((e) => e.id).reverse());
  });
}

test('pages follow each other without gaps or repeats', () => {
  const seen: string[] = [];
  let after: string | undefined;
  for (;;) {
    const p = index.query({ user: 'u2', limit: 37, ...(after ? { after } : {}) });
    seen.push(...p.events.map((e) => e.id));
    if (p.next === undefined) break;
    after = p.next;
  }
  assert.deepEqual(seen, index.query({ user: 'u2', limit: 10_000 }).events.map((e) => e.id));
});

test('FTS syntax in user text is searched as words, never parsed', () => {
  for (const t of ['"', 'a OR b', 'NEAR(x y)', '*', 'command:']) assert.doesNotThrow(() => index.query({ text: t }));
});

test('feeding again reads only what is new; a rebuild from the trail gives the same index', async () => {
  const again = await feedIndex({ index, source: { kind: 'local', dir: dataDir } });
  assert.deepEqual(again, { read: 0, added: 0 });
  const before = index.query({ limit: 10_000 }).events.map((e) => e.id);
  index.clear();
  assert.equal(index.count(), 0);
  await feedIndex({ index, source: { kind: 'local', dir: dataDir } });
  assert.equal(index.count(), N);
  assert.deepEqual(index.query({ limit: 10_000 }).events.map((e) => e.id), before);
});

test('a followed log is indexed while the feed waits for more, and the follow ends on abort', async () => {
  const d2 = path.join(dir, 'grow');
  writeTrail(d2, 10, START);
  const idx = new EventIndex(':memory:');
  const ac = new AbortController();
  let batches = 0;
  const done = feedIndex({ index: idx, source: { kind: 'local', dir: d2 }, follow: true, signal: ac.signal, pollMs: 20, flushMs: 5, onBatch: () => void batches++ });
  while (idx.count() < 10) await new Promise((r) => setTimeout(r, 10));
  ac.abort();
  await done;
  assert.ok(batches >= 1);
  idx.close();
});
