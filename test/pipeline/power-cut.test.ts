import assert from 'node:assert/strict';
import path from 'node:path';
import { readdirSync, rmSync, writeFileSync } from 'node:fs';
import { after, test } from 'node:test';
import { Registry } from 'prom-client';
import { harness } from '../support/env.ts';
import { createEventPipeline, spoolDir } from '../../core/pipeline.ts';
import type { KubetrailEvent } from '../../core/events/model.ts';
import { readRecords } from '../../core/events/reader.ts';
import { apiRequestDraft, memoryLogger, pipelineConfig, tempDir, topics, verifySource } from './support.ts';
import { HeadStore } from '../../core/chain/head-store.ts';

const dir = tempDir('kt-power-cut-');
after(() => rmSync(dir, { recursive: true, force: true }));

/** Emits `n` events and closes; returns the sealed events. */
async function run(dataDir: string, t: ReturnType<typeof topics>, n: number, from: number, journalSync = false): Promise<{ events: KubetrailEvent[]; warnings: string[] }> {
  const { log, lines } = memoryLogger();
  const config = pipelineConfig(dataDir, { kafka: { brokers: harness().KAFKA_BROKERS.split(','), topics: t, journalSync }, signing: { checkpointEvery: 1000, checkpointIntervalMs: 60_000 } });
  const p = await createEventPipeline({ config, log, registry: new Registry(), component: 'proxy', instance: 'cut' });
  const events: KubetrailEvent[] = [];
  // Several produce requests' worth, so both journal slots have been used.
  for (let i = from; i < from + n; i += 50) events.push(...(await Promise.all(Array.from({ length: Math.min(50, from + n - i) }, (_, j) => p.emit(apiRequestDraft(i + j, 40))))));
  await p.close();
  return { events, warnings: lines().filter((l) => l['level'] === 40).map((l) => String(l['msg'])) };
}

async function topicEvents(dataDir: string, t: ReturnType<typeof topics>): Promise<KubetrailEvent[]> {
  const { log } = memoryLogger();
  const settings = pipelineConfig(dataDir, { kafka: { brokers: harness().KAFKA_BROKERS.split(','), topics: t } }).kafka!;
  const out: KubetrailEvent[] = [];
  for await (const r of readRecords({ source: { kind: 'kafka', settings, log } })) out.push(JSON.parse(r.line) as KubetrailEvent);
  return out;
}

test('with kafka.journalSync, a chain head file lost to a power cut (written without fsync) does not fork the chain: the restart continues after the newest link in the fdatasync\'d in-flight journal', async () => {
  const t = topics();
  const dataDir = path.join(dir, 'cut');
  const first = await run(dataDir, t, 300, 0, true);
  // What a power cut can leave: the head file's last writes never reached the disk.
  const chainDir = path.join(dataDir, 'chain');
  for (const f of readdirSync(chainDir)) writeFileSync(path.join(chainDir, f), '');
  const second = await run(dataDir, t, 100, 300, true);

  const lastSeq = Math.max(...first.events.map((e) => e.chain!.seq));
  assert.ok(second.events[0]!.chain!.seq > lastSeq, `the restarted chain continues after seq ${lastSeq}, not from 1 (got ${second.events[0]!.chain!.seq})`);
  assert.ok(second.warnings.some((w) => /re-sent from the spool/.test(w)), 'the journal\'s events the lost head no longer covered are re-sent');
  const inKafka = await topicEvents(dataDir, t);
  const ids = new Set(inKafka.map((e) => e.id));
  assert.deepEqual([...first.events, ...second.events].filter((e) => !ids.has(e.id)).map((e) => e.id), [], 'every acknowledged event is in Kafka');
  const report = await verifySource({ kind: 'kafka', settings: pipelineConfig(dataDir, { kafka: { brokers: harness().KAFKA_BROKERS.split(','), topics: t } }).kafka!, log: memoryLogger().log }, path.join(dataDir, 'keys', 'dev-signing.pub.pem'));
  assert.deepEqual(report.issues, [], 'no seq is used by two different events');
  // The spool drained what was re-sent.
  assert.deepEqual(readdirSync(spoolDir(dataDir, 'proxy')).filter((f) => f === 'rejected.ndjson'), []);
});

test('a clean restart re-sends nothing: the journal keeps acknowledged batches, and the head file covers them', async () => {
  const t = topics();
  const dataDir = path.join(dir, 'clean');
  const first = await run(dataDir, t, 200, 0);
  const second = await run(dataDir, t, 50, 200);
  assert.equal(second.events[0]!.chain!.seq, Math.max(...first.events.map((e) => e.chain!.seq)) + 2, 'continues after the first run\'s events and its closing checkpoint');
  assert.deepEqual(second.warnings.filter((w) => /re-sent/.test(w)), []);
  const inKafka = await topicEvents(dataDir, t);
  assert.equal(new Set(inKafka.map((e) => e.id)).size, inKafka.length, 'no duplicates');
});

test('close() puts the chain head on disk (fdatasync) after the last event is durable', async (t) => {
  const synced: number[] = [];
  const original = HeadStore.prototype.sync;
  t.after(() => void (HeadStore.prototype.sync = original));
  HeadStore.prototype.sync = function (this: HeadStore) {
    synced.push(this.head.seq);
    original.call(this);
  };
  const { events } = await run(path.join(dir, 'close-sync'), topics(), 20, 0);
  // The closing checkpoint is the last event: its seq is the one on disk.
  assert.deepEqual(synced, [Math.max(...events.map((e) => e.chain!.seq)) + 1]);
});
