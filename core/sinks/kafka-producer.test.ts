import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfig } from '../config.ts';
import { createLogger } from '../logger.ts';
import { ProducerThread, type KafkajsBackends } from './kafka-producer.ts';

test('the producer thread reports, once at start, that its kafkajs runs with the native CRC-32C and the rope encoder', async () => {
  const settings = loadConfig({ document: { kafka: { brokers: ['127.0.0.1:9'] } } }).kafka;
  assert.ok(settings);
  let reported: (b: KafkajsBackends) => void = () => undefined;
  const backends = new Promise<KafkajsBackends>((resolve) => (reported = resolve));
  const thread = new ProducerThread(settings, createLogger({ level: 'silent' }), (b) => reported(b));
  try {
    assert.deepEqual(await backends, { crc32c: { backend: 'native' }, encoder: { backend: 'rope' } });
  } finally {
    await thread.disconnect(100);
  }
});
