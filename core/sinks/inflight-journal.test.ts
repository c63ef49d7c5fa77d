import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { InflightJournal } from './inflight-journal.ts';

const line = (seq: number): string => JSON.stringify({ id: `e${seq}`, chain: { seq } });

test('in-flight journal: two batches handed over at once are both left over, in chain order, until each is cleared', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'kt-journal-'));
  try {
    const j = new InflightJournal(dir);
    const a = j.record([line(1), line(2)]);
    const b = j.record([line(3)]);
    await Promise.all([j.sync(a), j.sync(b)]);
    // A process killed now left both batches: the restart must re-send both, in order.
    assert.deepEqual(new InflightJournal(dir).leftover(), [line(1), line(2), line(3)]);
    assert.throws(() => j.record([line(4)]), /both slots/, 'a third batch while two are uncleared is refused');
    j.clear(a);
    assert.deepEqual(new InflightJournal(dir).leftover(), [line(3)]);
    const c = j.record([line(4), line(5)]);
    await j.sync(c);
    // The newer batch now sits in the first slot: order still comes from the chain.
    assert.deepEqual(new InflightJournal(dir).leftover(), [line(3), line(4), line(5)]);
    j.clear(b);
    j.clear(c);
    assert.deepEqual(new InflightJournal(dir).leftover(), []);
    await j.sync(j.record([line(6)]));
    j.clear();
    assert.deepEqual(new InflightJournal(dir).leftover(), [], 'clear() without a generation empties every slot');
    j.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
