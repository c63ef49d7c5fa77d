import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { Kafka, logLevel } from 'kafkajs';
import { harness } from '../support/env.ts';

test('kafkajs 2.2.4 produces and consumes a record on the real Kafka 4 broker', async () => {
  const env = harness();
  const kafka = new Kafka({ clientId: 'smoke', brokers: env.KAFKA_BROKERS.split(','), logLevel: logLevel.NOTHING });
  const topic = `smoke-${randomUUID()}`;
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
  await admin.disconnect();

  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const value = `hello ${randomUUID()}`;
  const [meta] = await producer.send({ topic, acks: -1, messages: [{ key: 'k', value, headers: { ce_type: 'smoke' } }] });
  await producer.disconnect();
  assert.equal(meta?.errorCode, 0);

  const consumer = kafka.consumer({ groupId: `g-${randomUUID()}` });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const got = await new Promise<{ value: string; header: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no record consumed within 30 s')), 30_000);
    void consumer.run({
      eachMessage: async ({ message }) => {
        clearTimeout(timer);
        resolve({ value: message.value?.toString() ?? '', header: message.headers?.['ce_type']?.toString() ?? '' });
      },
    });
  });
  await consumer.disconnect();
  assert.deepEqual(got, { value, header: 'smoke' });
});
