import assert from 'node:assert/strict';
import { appendFileSync, constants, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { readLines, SegmentLog, listSegments } from './segment-log.ts';
import { Spool } from './spool.ts';

const root = mkdtempSync(path.join(tmpdir(), 'kt-seglog-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const fresh = (): string => path.join(root, `d${n++}`);

test('concurrent appends all become durable, in call order', async () => {
  const dir = fresh();
  const log = SegmentLog.open({ dir, segmentBytes: 1 << 20, groupCommitMs: 0 });
  await Promise.all(Array.from({ length: 500 }, (_, i) => log.append([`{"i":${i}}`])));
  await log.close();
  const lines = readFileSync(path.join(dir, '000000000001.ndjson'), 'utf8').trimEnd().split('\n');
  assert.deepEqual(lines, Array.from({ length: 500 }, (_, i) => `{"i":${i}}`));
});

test('a torn last line (a crash mid-write) is cut off on reopen, and appends continue at the end', async () => {
  const dir = fresh();
  const log = SegmentLog.open({ dir, segmentBytes: 1 << 20, groupCommitMs: 0 });
  await log.append(['{"a":1}', '{"a":2}']);
  await log.close();
  appendFileSync(path.join(dir, '000000000001.ndjson'), '{"a":3, "torn');
  const again = SegmentLog.open({ dir, segmentBytes: 1 << 20, groupCommitMs: 0 });
  assert.equal(again.lastLineAtOpen, '{"a":2}');
  await again.append(['{"a":4}']);
  await again.close();
  assert.equal(readFileSync(path.join(dir, '000000000001.ndjson'), 'utf8'), '{"a":1}\n{"a":2}\n{"a":4}\n');
});

test('segments roll at segmentBytes and size retention deletes the oldest', async () => {
  const dir = fresh();
  const log = SegmentLog.open({ dir, segmentBytes: 100, groupCommitMs: 0, retention: { bytes: 350, hours: 1000 } });
  for (let i = 0; i < 20; i++) await log.append([`{"line":${i},"pad":"${'x'.repeat(40)}"}`]);
  await log.close();
  const segs = listSegments(dir);
  assert.ok(segs.length >= 2, 'rolled');
  assert.notEqual(segs[0], '000000000001.ndjson', 'the oldest segments were deleted');
  const total = segs.reduce((s, f) => s + statSync(path.join(dir, f)).size, 0);
  assert.ok(total <= 350 + 100, `retention bound held (${total} bytes)`);
});

test('readLines returns whole lines within the byte budget and a position to resume from', async () => {
  const dir = fresh();
  const log = SegmentLog.open({ dir, segmentBytes: 1 << 20, groupCommitMs: 0 });
  await log.append(['aaaa', 'bbbb', 'cccc']);
  const first = readLines(dir, { segment: '', offset: 0 }, log.durableEnd, 10, 10);
  assert.deepEqual(first.lines, ['aaaa', 'bbbb']);
  const rest = readLines(dir, first.next, log.durableEnd, 10, 10);
  assert.deepEqual(rest.lines, ['cccc']);
  await log.close();
});

test('the spool drains in order across segments, deletes drained segments, and resumes from its cursor after a reopen', async () => {
  const dir = fresh();
  const spool = Spool.open({ dir, segmentBytes: 64, groupCommitMs: 0 });
  for (let i = 0; i < 10; i++) await spool.append([`{"n":${i},"p":"${'y'.repeat(20)}"}`]);
  const a = spool.peek(4, 1 << 20);
  assert.deepEqual(a.lines.map((l) => (JSON.parse(l) as { n: number }).n), [0, 1, 2, 3]);
  spool.ack(a.next);
  assert.equal(spool.empty, false);
  await spool.close();
  const again = Spool.open({ dir, segmentBytes: 64, groupCommitMs: 0 });
  const got: number[] = [];
  for (;;) {
    const b = again.peek(3, 1 << 20);
    if (b.lines.length === 0) {
      again.ack(b.next);
      break;
    }
    got.push(...b.lines.map((l) => (JSON.parse(l) as { n: number }).n));
    again.ack(b.next);
  }
  assert.deepEqual(got, [4, 5, 6, 7, 8, 9]);
  assert.equal(again.empty, true);
  assert.ok(readdirSync(dir).filter((f) => f.endsWith('.ndjson')).length <= 2, 'drained segments were deleted');
  await again.close();
});

test('time retention deletes closed segments older than retention hours, never the current one', async () => {
  const dir = fresh();
  let now = Date.now();
  const log = SegmentLog.open({ dir, segmentBytes: 50, groupCommitMs: 0, retention: { bytes: 1 << 30, hours: 1 }, now: () => now });
  for (let i = 0; i < 5; i++) await log.append([`{"line":${i},"pad":"${'z'.repeat(60)}"}`]);
  assert.ok(listSegments(dir).length >= 5);
  now += 2 * 3600_000;
  await log.append(['{"late":true}']);
  log.enforceRetention();
  await log.close();
  const left = listSegments(dir);
  assert.deepEqual(left.length, 1, `only the current segment is left: ${left.join(',')}`);
  assert.match(readFileSync(path.join(dir, left[0] as string), 'utf8'), /"late":true/);
});

/** open(2) flags of the descriptors this process holds on `file` (Linux /proc), as numbers. */
function openFlags(file: string): number[] {
  const out: number[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue;
    }
    if (target !== file) continue;
    const m = /^flags:\s+([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
    if (m) out.push(parseInt(m[1] as string, 8));
  }
  return out;
}

test('segments are written with O_DSYNC: an append resolves only once its data is on stable storage (no separate fdatasync)', { skip: process.platform !== 'linux' }, async () => {
  const dir = fresh();
  const log = SegmentLog.open({ dir, segmentBytes: 60, groupCommitMs: 0 });
  await log.append(['{"first":"segment, new file"}']);
  const first = path.join(dir, '000000000001.ndjson');
  assert.deepEqual(openFlags(first).map((f) => (f & constants.O_DSYNC) !== 0), [true]);
  // A roll opens the next segment the same way.
  await log.append(['{"second":"line, past segmentBytes, rolls"}', '{"x":1}']);
  const second = path.join(dir, '000000000002.ndjson');
  assert.deepEqual(openFlags(second).map((f) => (f & constants.O_DSYNC) !== 0), [true]);
  await log.close();
  // Reopening an existing segment, too.
  const again = SegmentLog.open({ dir, segmentBytes: 1 << 20, groupCommitMs: 0 });
  assert.deepEqual(openFlags(second).map((f) => (f & constants.O_DSYNC) !== 0), [true]);
  await again.append(['{"after":"reopen"}']);
  await again.close();
  assert.match(readFileSync(second, 'utf8'), /"after":"reopen"/);
});
