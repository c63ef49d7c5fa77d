import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { readdirSync, rmSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { after, before, test } from 'node:test';
import { startKafka, type KafkaBroker } from '../harness/harness.ts';
import type { KubetrailEvent } from '../../core/events/model.ts';
import { readRecords } from '../../core/events/reader.ts';
import { memoryLogger, pipelineConfig, tempDir, topics, verifySource } from './support.ts';

const EMITTER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'emitter.ts');
const KILL_HOOK = pathToFileURL(path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'kill-on-send-hook.ts')).href;
let broker: KafkaBroker;
const dir = tempDir('kt-spool-restart-');

before(async () => {
  broker = await startKafka({ dir: path.join(dir, 'kafka') });
});

after(async () => {
  await broker?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Starts the emitter; collects the ids it reports durable; resolves `until` when a line equals the marker. */
function emitter(doc: unknown, count: number, mode: 'close' | 'stay' | `kill-on-send:${number}`): { child: ChildProcess; durable: string[]; until: (marker: string | ((n: number) => boolean)) => Promise<void>; exited: Promise<number | null> } {
  const child = spawn(process.execPath, ['--import', KILL_HOOK, EMITTER, JSON.stringify(doc), String(count), mode], { stdio: ['ignore', 'pipe', 'pipe'] });
  const durable: string[] = [];
  const lines: string[] = [];
  const waiters: { test: (line: string) => boolean; resolve: () => void }[] = [];
  let buf = '';
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  child.stdout?.on('data', (c: Buffer) => {
    buf += c.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      lines.push(line);
      if (line.startsWith('durable ')) durable.push(line.slice(8));
      for (const w of waiters.splice(0)) if (!w.test(line)) waiters.push(w); else w.resolve();
    }
  });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return {
    child,
    durable,
    exited,
    until: (marker) =>
      new Promise<void>((resolve, reject) => {
        const test = typeof marker === 'string' ? (l: string) => l === marker : () => marker(durable.length);
        if (lines.some(test)) return resolve();
        waiters.push({ test, resolve });
        void exited.then((code) => reject(new Error(`emitter exited (${code}) before ${String(marker)}: ${stderr.slice(-2000)}`)));
      }),
  };
}

test('a process SIGKILLed while Kafka is down loses nothing: the restarted process drains its spool and continues the chain', async () => {
  const t = topics();
  const dataDir = path.join(dir, 'data');
  const doc = {
    cluster: 'test',
    dataDir,
    kafka: { brokers: broker.brokers, topics: t, ackDeadlineMs: 1000, connectTimeoutMs: 500, requestTimeoutMs: 2000 },
    signing: { checkpointEvery: 500, checkpointIntervalMs: 60_000 },
  };
  await broker.kill('SIGKILL');

  const first = emitter(doc, 1_000_000, 'stay');
  await first.until((n) => n >= 3000);
  first.child.kill('SIGKILL');
  await first.exited;
  const acknowledged = [...first.durable];
  assert.ok(acknowledged.length >= 3000);
  const spoolFiles = readdirSync(path.join(dataDir, 'spool', 'proxy')).filter((f) => f.endsWith('.ndjson'));
  assert.ok(spoolFiles.length > 0, 'the killed process left its events in the spool');

  await broker.restart();
  const second = emitter(doc, 200, 'close');
  await second.until('closed');
  assert.equal(await second.exited, 0);
  acknowledged.push(...second.durable);

  const { log } = memoryLogger();
  const settings = pipelineConfig(dataDir, { kafka: doc.kafka }).kafka!;
  const inKafka = new Set<string>();
  for await (const r of readRecords({ source: { kind: 'kafka', settings, log } })) inKafka.add((JSON.parse(r.line) as KubetrailEvent).id);
  const lost = acknowledged.filter((id) => !inKafka.has(id));
  assert.deepEqual(lost, [], 'every event acknowledged before the SIGKILL reached Kafka');

  const report = await verifySource({ kind: 'kafka', settings, log }, path.join(dataDir, 'keys', 'dev-signing.pub.pem'));
  assert.deepEqual(report.issues, [], 'the chain continues across the restart without gaps or forks');
  assert.equal(report.sources.length, 1);
  assert.equal(report.sources[0]?.firstSeq, 1);
});

test('a process SIGKILLed with a batch in flight to a live Kafka: the restart re-sends that batch and the chain does not fork', async () => {
  const t = topics();
  const dataDir = path.join(dir, 'data-live');
  const doc = {
    cluster: 'test',
    dataDir,
    kafka: { brokers: broker.brokers, topics: t, ackDeadlineMs: 5000 },
    signing: { checkpointEvery: 500, checkpointIntervalMs: 60_000 },
  };
  const acknowledged: string[] = [];
  // Twice: the emitter kills itself right after a produce request left it, before the ack.
  for (const n of [2000, 1500]) {
    const e = emitter(doc, 1_000_000, `kill-on-send:${n}`);
    assert.equal(await e.exited, null, 'killed by its signal');
    assert.ok(e.durable.length >= n);
    acknowledged.push(...e.durable);
  }
  const last = emitter(doc, 100, 'close');
  await last.until('closed');
  assert.equal(await last.exited, 0);
  acknowledged.push(...last.durable);

  const { log } = memoryLogger();
  const settings = pipelineConfig(dataDir, { kafka: doc.kafka }).kafka!;
  const inKafka = new Set<string>();
  for await (const r of readRecords({ source: { kind: 'kafka', settings, log } })) inKafka.add((JSON.parse(r.line) as KubetrailEvent).id);
  assert.deepEqual(acknowledged.filter((id) => !inKafka.has(id)), [], 'every acknowledged event is in Kafka');
  const report = await verifySource({ kind: 'kafka', settings, log }, path.join(dataDir, 'keys', 'dev-signing.pub.pem'));
  assert.deepEqual(report.issues, [], 'no seq is used by two different events, none is missing');
});
