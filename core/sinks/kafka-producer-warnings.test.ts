import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';

/** A worker that does what kafkajs does on every broker connection (a negative setTimeout) and emits another warning. */
const script = (withProducerFlags: boolean): string => `
import { Worker } from 'node:worker_threads';
import { once } from 'node:events';
import { PRODUCER_THREAD_EXEC_ARGV } from ${JSON.stringify(new URL('./kafka-producer.ts', import.meta.url).href)};
const body = "setTimeout(() => {}, -1795714036151); process.emitWarning('still printed', 'SomeOtherWarning'); setTimeout(() => {}, 20);";
const w = new Worker(body, { eval: true${withProducerFlags ? ', execArgv: [...PRODUCER_THREAD_EXEC_ARGV]' : ''} });
await once(w, 'exit');
`;

function stderrOf(withProducerFlags: boolean): string {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script(withProducerFlags)], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stderr;
}

test('the producer thread drops only the TimeoutNegativeWarning kafkajs causes; its other warnings still print', () => {
  const plain = stderrOf(false);
  assert.match(plain, /TimeoutNegativeWarning/, 'without the flag Node prints it (the test would prove nothing otherwise)');
  assert.match(plain, /SomeOtherWarning: still printed/);
  const producer = stderrOf(true);
  assert.doesNotMatch(producer, /TimeoutNegativeWarning/);
  assert.match(producer, /SomeOtherWarning: still printed/);
});
