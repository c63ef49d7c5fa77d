import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { createLogger } from './logger.ts';
import { Shutdown } from './shutdown.ts';

const quiet = createLogger({ destination: new Writable({ write: (_c, _e, cb) => cb() }) });

test('closers run once, last registered first, and a failing one does not stop the rest', async () => {
  const order: string[] = [];
  const s = new Shutdown(quiet);
  s.add('sink', async () => void order.push('sink'));
  s.add('broken', () => {
    order.push('broken');
    throw new Error('x');
  });
  s.add('listener', () => void order.push('listener'));
  await assert.rejects(s.run(), /shutdown incomplete/);
  await assert.rejects(s.run());
  assert.deepEqual(order, ['listener', 'broken', 'sink']);
});
