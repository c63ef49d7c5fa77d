import assert from 'node:assert/strict';
import { test } from 'node:test';
import { uuidv7 } from './ids.ts';

const V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

test('ids are RFC 9562 version 7 / variant 10 UUIDs carrying the millisecond timestamp', () => {
  const now = Date.UTC(2026, 10, 26, 10, 0, 0, 123);
  const id = uuidv7(now);
  assert.match(id, V7);
  assert.equal(parseInt(id.slice(0, 8) + id.slice(9, 13), 16), now);
});

test('ids generated in one millisecond, or after the clock stepped back, still sort in creation order and never repeat', () => {
  const t = Date.UTC(2027, 0, 1);
  const ids = [...Array.from({ length: 5000 }, () => uuidv7(t)), uuidv7(t - 5000), uuidv7(t + 1)];
  assert.deepEqual([...ids].sort(), ids);
  assert.equal(new Set(ids).size, ids.length);
  for (const id of ids) assert.match(id, V7);
});
