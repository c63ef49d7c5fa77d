import assert from 'node:assert/strict';
import path from 'node:path';
import { readFileSync, rmSync } from 'node:fs';
import { after, test } from 'node:test';
import { Registry } from 'prom-client';
import { harness } from '../support/env.ts';
import { createEventPipeline, spoolDir } from '../../core/pipeline.ts';
import type { KafkaSink } from '../../core/sinks/kafka-sink.ts';
import type { KubetrailEvent } from '../../core/events/model.ts';
import { readRecords } from '../../core/events/reader.ts';
import { apiRequestDraft, memoryLogger, pipelineConfig, tempDir, topics, verifySource } from './support.ts';

const dir = tempDir('kt-refused-');
after(() => rmSync(dir, { recursive: true, force: true }));

test('an event the broker refuses (over message.max.bytes) is kept in rejected.ndjson, counted and logged, and does not block the events around it', async () => {
  const env = harness();
  const t = topics();
  const dataDir = path.join(dir, 'data');
  const { log, lines } = memoryLogger();
  const registry = new Registry();
  const config = pipelineConfig(dataDir, { kafka: { brokers: env.KAFKA_BROKERS.split(','), topics: t } });
  const p = (await createEventPipeline({ config, log, registry, component: 'webhook', instance: 'refused' })) as KafkaSink;
  const small = (i: number) => p.emit(apiRequestDraft(i, 20));
  const before = await Promise.all(Array.from({ length: 50 }, (_, i) => small(i)));
  // 2 MiB: twice the broker's default message.max.bytes.
  const huge = await p.emit(apiRequestDraft(999, 2 * 1024 * 1024));
  const later = await Promise.all(Array.from({ length: 50 }, (_, i) => small(100 + i)));
  while (p.spooling) await new Promise((r) => setTimeout(r, 100));
  await p.close();

  const inKafka = new Set<string>();
  for await (const r of readRecords({ source: { kind: 'kafka', settings: config.kafka!, log } })) inKafka.add((JSON.parse(r.line) as KubetrailEvent).id);
  assert.deepEqual([...before, ...later].filter((e) => !inKafka.has(e.id)), [], 'every other event reached Kafka');
  assert.equal(inKafka.has(huge.id), false);

  const rejected = readFileSync(path.join(spoolDir(dataDir, 'webhook'), 'rejected.ndjson'), 'utf8').trimEnd().split('\n');
  assert.deepEqual(rejected.map((l) => (JSON.parse(l) as KubetrailEvent).id), [huge.id], 'kept whole beside the spool');
  const metric = (await registry.getSingleMetricAsString('kubetrail_events_rejected_total')).split('\n').find((l) => l.startsWith('kubetrail_events_rejected_total{'));
  assert.equal(metric?.split(' ').at(-1), '1');
  const logged = lines().find((l) => l['msg'] === 'kafka refused an event; it is kept in the spool dir and missing from the topic');
  assert.equal(logged?.['kafkaError'], 'MESSAGE_TOO_LARGE');
  assert.equal(logged?.['id'], huge.id);

  // Verify on the topic tells the truth: exactly that event's seq is missing.
  const report = await verifySource({ kind: 'kafka', settings: config.kafka!, log }, path.join(dataDir, 'keys', 'dev-signing.pub.pem'));
  assert.deepEqual(report.issues.map((i) => [i.kind, i.seq, i.toSeq]), [['missing', huge.chain?.seq, huge.chain?.seq]]);
});
