import assert from 'node:assert/strict';
import path from 'node:path';
import { rmSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { Registry } from 'prom-client';
import { startKafka, type KafkaBroker } from '../harness/harness.ts';
import { createEventPipeline } from '../../core/pipeline.ts';
import type { KafkaSink } from '../../core/sinks/kafka-sink.ts';
import type { KubetrailEvent } from '../../core/events/model.ts';
import { readRecords } from '../../core/events/reader.ts';
import { apiRequestDraft, memoryLogger, pipelineConfig, tempDir, topics, verifySource } from './support.ts';

let broker: KafkaBroker;
const dir = tempDir('kt-broker-kill-');

before(async () => {
  broker = await startKafka({ dir: path.join(dir, 'kafka') });
});

after(async () => {
  await broker?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function waitUntil(what: string, cond: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('20,000 events emitted while the broker is SIGKILLed and restarted all arrive, gap-free, duplicates only as the same id', async () => {
  const t = topics();
  const dataDir = path.join(dir, 'data');
  const { log } = memoryLogger();
  const config = pipelineConfig(dataDir, {
    kafka: { brokers: broker.brokers, topics: t, ackDeadlineMs: 1500, connectTimeoutMs: 1000, requestTimeoutMs: 3000 },
    signing: { checkpointEvery: 1000, checkpointIntervalMs: 60_000 },
  });
  const pipeline = await createEventPipeline({ config, log, registry: new Registry(), component: 'webhook', instance: 'kill-test' });
  const sink = pipeline as KafkaSink;
  const N = 20_000;
  const emitted: Promise<KubetrailEvent>[] = [];
  let restart: Promise<void> | undefined;
  let sawSpooling = false;
  for (let i = 0; i < N; i++) {
    if (i === 4000) await broker.kill('SIGKILL');
    if (i === 9000) restart = broker.restart();
    emitted.push(pipeline.emit(apiRequestDraft(i)));
    if (sink.spooling) sawSpooling = true;
    // Keep a bounded number in flight, like real callers waiting on their requests.
    if (emitted.length % 500 === 0) await Promise.all(emitted.slice(-500));
  }
  const events = await Promise.all(emitted);
  assert.equal(sawSpooling, true, 'the pipeline never switched to the spool although the broker was killed');
  await restart;
  await waitUntil('the spool to drain', () => !sink.spooling, 60_000);
  await pipeline.close();

  const ids = new Set(events.map((e) => e.id));
  const seqs = events.map((e) => e.chain?.seq ?? 0);
  assert.deepEqual(seqs.filter((s, i) => i > 0 && s <= (seqs[i - 1] as number)), [], 'emit order must follow chain order');

  const seen = new Map<string, number>();
  for await (const r of readRecords({ source: { kind: 'kafka', settings: config.kafka!, log } })) {
    const e = JSON.parse(r.line) as KubetrailEvent;
    seen.set(e.id, (seen.get(e.id) ?? 0) + 1);
  }
  const missing = [...ids].filter((id) => !seen.has(id));
  assert.equal(missing.length, 0, `${missing.length} acknowledged events are not in Kafka`);

  const report = await verifySource({ kind: 'kafka', settings: config.kafka!, log }, path.join(dataDir, 'keys', 'dev-signing.pub.pem'));
  assert.deepEqual(report.issues, [], 'verify must find no missing seq, alteration or reordering');
  const src = report.sources.find((s) => s.source === 'test/webhook/kill-test');
  assert.ok(src, 'the source is in the report');
  assert.equal(src.firstSeq, 1);
  assert.equal(src.events, src.lastSeq, 'every seq from 1 to the last is present exactly once (after de-duplication)');
  assert.ok(src.lastSeq >= N, 'all events plus checkpoints');
});
