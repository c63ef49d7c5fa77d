/**
 * Worker side of {@link ProducerThread} (kafka-producer.ts): runs the
 * idempotent kafkajs producer KafkaSink sends through, one request at a
 * time as the sink asks, and answers each with its outcome.
 */
import { parentPort, workerData } from 'node:worker_threads';
// The two changes to kafkajs in this thread, each with its figure and its guard (see the modules); reported below.
import { crc32cBackend } from './kafkajs-crc32c.ts';
import { encoderBackend } from './kafkajs-encoder.ts';
import { CompressionTypes, Partitioners } from 'kafkajs';
import type { Logger } from '../logger.ts';
import { createKafka, type KafkaSettings } from './kafka-client.ts';
import { toWire, type ProducerReply, type ProducerRequest } from './kafka-producer.ts';
import { decodeBatch } from './kafka-record.ts';

const port = parentPort;
if (port === null) throw new Error('kafka-producer-worker.ts runs as a worker thread');
const { settings } = workerData as { settings: KafkaSettings };
port.postMessage({ backends: { crc32c: crc32cBackend, encoder: encoderBackend } } satisfies ProducerReply);

const post = (m: ProducerReply): void => port.postMessage(m);
// kafkajs logs go to the sink's logger on the main thread (fields are broker/error, never credentials).
const forward = (level: 'error' | 'warn' | 'debug') => (fields: Record<string, unknown>, msg: string) => post({ log: level, fields, msg });
const logger = { error: forward('error'), warn: forward('warn'), debug: forward('debug'), info: forward('debug') } as unknown as Logger;

const kafka = createKafka(settings, logger);
// Idempotent producer: the broker de-duplicates retries by producer id +
// sequence, which with one request in flight also keeps order. Retries are
// unbounded (kafkajs requires that for idempotence); the sink's ack deadline,
// not the retry count, decides when events go to the spool.
const producer = kafka.producer({
  idempotent: true,
  maxInFlightRequests: 1,
  allowAutoTopicCreation: true,
  // kafkajs 2's default: murmur2 over the key like the Java client, so a
  // SIEM's Java/librdkafka tooling agrees on which partition a key is in.
  createPartitioner: Partitioners.DefaultPartitioner,
  retry: { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 100, maxRetryTime: 1000 },
});

type SendRequest = Extract<ProducerRequest, { op: 'send' }>;

// Produce requests run strictly one after the other, in the order received:
// kafkajs would otherwise let a later request take the broker lock while an
// earlier one waits to retry, reordering them. After a failure, requests
// queued behind it are answered "not sent" without being sent, so nothing
// reaches Kafka after a batch the sink is about to spool.
const queue: SendRequest[] = [];
let sending = false;

function notSent(m: SendRequest): void {
  post({ id: m.id, ok: false, error: { name: 'KubetrailNotSent', message: 'not sent: an earlier produce request failed or the sink cancelled it' } });
}

async function sendAll(): Promise<void> {
  if (sending) return;
  sending = true;
  try {
    for (let m = queue.shift(); m !== undefined; m = queue.shift()) {
      try {
        await producer.sendBatch({
          acks: -1,
          timeout: m.opts.timeout,
          compression: m.opts.compression === 'gzip' ? CompressionTypes.GZIP : CompressionTypes.None,
          topicMessages: decodeBatch(m.batch),
        });
        post({ id: m.id, ok: true });
      } catch (err) {
        post({ id: m.id, ok: false, error: toWire(err) });
        for (const q of queue.splice(0)) notSent(q);
      }
    }
  } finally {
    sending = false;
  }
}

port.on('message', (m: ProducerRequest) => {
  if (m.op === 'send') {
    queue.push(m);
    void sendAll();
    return;
  }
  if (m.op === 'cancel') {
    for (const q of queue.splice(0)) notSent(q);
    return;
  }
  (m.op === 'connect' ? producer.connect() : producer.disconnect()).then(
    () => post({ id: m.id, ok: true }),
    (err: unknown) => post({ id: m.id, ok: false, error: toWire(err) }),
  );
});
