/**
 * kafka.durability = local: an emit resolves once its event is on the local
 * spool (not after the broker's ack), and the spool is shipped to Kafka in
 * the background, in order, one chain across both — with Kafka up, and with
 * Kafka down and back.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { readdirSync, rmSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { Registry } from 'prom-client';
import { startKafka, type KafkaBroker } from '../harness/harness.ts';
import { createEventPipeline } from '../../core/pipeline.ts';
import type { KubetrailEvent } from '../../core/events/model.ts';
import { readRecords } from '../../core/events/reader.ts';
import { waitFor } from '../support/wait.ts';
import { apiRequestDraft, memoryLogger, pipelineConfig, tempDir, topics, verifySource } from './support.ts';

let broker: KafkaBroker;
const dir = tempDir('kt-durability-local-');

before(async () => {
  broker = await startKafka({ dir: path.join(dir, 'kafka') });
});

after(async () => {
  await broker?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function idsInKafka(settings: NonNullable<ReturnType<typeof pipelineConfig>['kafka']>): Promise<string[]> {
  const { log } = memoryLogger();
  const ids: string[] = [];
  for await (const r of readRecords({ source: { kind: 'kafka', settings, log } })) ids.push((JSON.parse(r.line) as KubetrailEvent).id);
  return ids;
}

for (const outage of [false, true]) {
  test(`durability local${outage ? ', with Kafka killed and restarted' : ''}: every emit resolves from the spool, and Kafka receives every event in chain order while the pipeline runs; verify is clean`, async () => {
    const dataDir = path.join(dir, `data-${outage}`);
    const { log } = memoryLogger();
    const config = pipelineConfig(dataDir, {
      kafka: { brokers: broker.brokers, topics: topics(), durability: 'local', ackDeadlineMs: 1500, connectTimeoutMs: 1000, requestTimeoutMs: 3000 },
      signing: { checkpointEvery: 200, checkpointIntervalMs: 60_000 },
    });
    const registry = new Registry();
    const pipeline = await createEventPipeline({ config, log, registry, component: 'webhook', instance: `local-${outage}` });
    const N = 2000;
    const emitted: Promise<KubetrailEvent>[] = [];
    for (let i = 0; i < N; i++) {
      if (outage && i === 500) await broker.kill('SIGKILL');
      emitted.push(pipeline.emit(apiRequestDraft(i)));
      if (emitted.length % 250 === 0) await Promise.all(emitted.slice(-250));
    }
    const events = await Promise.all(emitted);
    if (outage) await broker.restart();
    // Every emit was made durable by the spool, none by a Kafka ack.
    const durable = (await registry.getSingleMetric('kubetrail_events_durable_total')!.get()).values;
    const by = (sink: string): number => durable.filter((v) => v.labels['sink'] === sink).reduce((n, v) => n + v.value, 0);
    assert.ok(by('spool') >= N, `spool-durable ${by('spool')} < ${N}`);
    assert.equal(by('kafka'), 0, 'no emit waited for a Kafka ack');
    assert.ok(readdirSync(path.join(dataDir, 'spool', 'webhook')).some((f) => f.endsWith('.ndjson')), 'the spool holds segments');
    // Shipped in the background, while the pipeline is still open.
    const want = new Set(events.map((e) => e.id));
    await waitFor(async () => {
      const ids = new Set(await idsInKafka(config.kafka!));
      return [...want].every((id) => ids.has(id));
    }, 'every emitted event in Kafka', { timeoutMs: 60_000, intervalMs: 500 });
    await pipeline.close();
    const report = await verifySource({ kind: 'kafka', settings: config.kafka!, log }, path.join(dataDir, 'keys', 'dev-signing.pub.pem'));
    assert.deepEqual(report.issues, [], 'verify must find no missing seq, alteration or reordering');
  });
}
