/**
 * `npm run bench:sink`: throughput and latency of the event pipeline's Kafka
 * path, against baselines measured in the same run on the same broker:
 *
 * 1. KafkaSink: 1 KiB events (native canonical line), chained, acks=all,
 *    idempotent, emit() resolved only when durable. Its kafkajs producer
 *    runs in a worker thread (core/sinks/kafka-producer.ts) while the
 *    emitting thread seals and journals; the CPU per event of all threads
 *    is printed beside the bare producer's, so the extra thread is visible.
 * 2. Bare kafkajs: the same producer settings, the same record size and
 *    headers, the same records per request (the floor KafkaSink sits on).
 * 3. kcat (librdkafka) when installed: acks=all, idempotent, the same 1 KiB
 *    records, as the outside reference. Absent: said so, not failed.
 * 4. emit-to-durable latency p50/p99 at a paced 5,000 events/s.
 *
 * Brokers: --brokers B, else $KAFKA_BROKERS, else the running harness env.
 * Sizes: --events N per round (default 15000), --rounds R (default 3),
 * interleaved, medians reported. Keep runs short: the machine is shared.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { randomUUID } from 'node:crypto';
import { Kafka, logLevel, Partitioners, type IHeaders } from 'kafkajs';
import { Registry } from 'prom-client';
import { loadConfig } from '../../core/config.ts';
import { createLogger } from '../../core/logger.ts';
import { createEventPipeline } from '../../core/pipeline.ts';
import type { EventDraft, KubetrailEvent } from '../../core/events/model.ts';
import { readEnvFile } from '../harness/harness.ts';
import { dropBenchTopics } from './topics.ts';

const { values } = parseArgs({ options: { brokers: { type: 'string' }, events: { type: 'string' }, rounds: { type: 'string' } } });
const brokers = (values.brokers ?? process.env['KAFKA_BROKERS'] ?? readEnvFile()?.KAFKA_BROKERS ?? '').split(',').filter(Boolean);
if (brokers.length === 0) {
  process.stderr.write('bench:sink needs a broker: --brokers HOST:PORT, $KAFKA_BROKERS, or a running harness (npm run harness -- up)\n');
  process.exit(2);
}
const N = Number(values.events ?? 15000);
const ROUNDS = Number(values.rounds ?? 3);
const run = randomUUID().slice(0, 8);
const log = createLogger({ level: 'error', destination: process.stderr });
const dataDir = mkdtempSync(path.join(tmpdir(), 'kt-bench-sink-'));

/** A draft whose canonical sealed line is about 1 KiB. */
function draft(i: number, pad: number): EventDraft<'api.request'> {
  return {
    type: 'api.request',
    actor: { username: 'agent-ci', groups: ['agents'], authn: 'token' },
    target: { version: 'v1', resource: 'configmaps', namespace: 'agents', name: `cm-${i % 64}` },
    body: { verb: 'get', method: 'GET', path: `/api/v1/namespaces/agents/configmaps/cm-${i % 64}`, status: 200, latencyMs: 2, bytesIn: 0, bytesOut: 700, userAgent: 'x'.repeat(pad) },
  };
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

interface SinkBench {
  lineBytes: number;
  recordsPerRequest: number;
  round: (n: number) => Promise<{ rate: number; cpuUs: number }>;
  paced: () => Promise<{ p50: number; p99: number; rate: number }>;
  close: () => Promise<void>;
}

async function kafkaSink(): Promise<SinkBench> {
  const config = loadConfig({
    document: { cluster: 'bench', dataDir, kafka: { brokers, topics: { events: `bench-${run}.events`, sessions: `bench-${run}.sessions` } } },
  });
  const p = await createEventPipeline({ config, log, registry: new Registry(), component: 'webhook', instance: 'bench' });
  // Size the padding so the sealed line is 1024 bytes.
  const probe = await p.emit(draft(0, 0));
  const pad = Math.max(0, 1024 - JSON.stringify(probe).length);
  const first = await p.emit(draft(1, pad));
  const lineBytes = JSON.stringify(first).length;
  const round = async (n: number): Promise<{ rate: number; cpuUs: number }> => {
    // A sliding window of outstanding emits, refilled in slices of 500, like many
    // concurrent callers each waiting on their own event: sealing and kafkajs's
    // encoding share this one thread, so emits must yield for sends to progress.
    const window = 4000;
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const inflight: Promise<KubetrailEvent>[] = [];
    for (let i = 0; i < n; i++) {
      inflight.push(p.emit(draft(i, pad)));
      if (inflight.length >= window) await Promise.all(inflight.splice(0, 500));
    }
    await Promise.all(inflight);
    const rate = n / ((performance.now() - t0) / 1000);
    const c = process.cpuUsage(c0);
    return { rate, cpuUs: (c.user + c.system) / n };
  };
  const paced = async (): Promise<{ p50: number; p99: number; rate: number }> => {
    // Paced 5,000 events/s for 4 s: 25 events every 5 ms, latency per event.
    const lat: number[] = [];
    const pending: Promise<void>[] = [];
    const perTick = 25;
    const tickMs = 5;
    const ticks = 800;
    const start = performance.now();
    for (let t = 0; t < ticks; t++) {
      const due = start + t * tickMs;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      for (let j = 0; j < perTick; j++) {
        const s = performance.now();
        pending.push(p.emit(draft(j, pad)).then(() => void lat.push(performance.now() - s)));
      }
    }
    await Promise.all(pending);
    const rate = (ticks * perTick) / ((performance.now() - start) / 1000);
    lat.sort((a, b) => a - b);
    return { p50: pct(lat, 50), p99: pct(lat, 99), rate };
  };
  const recordsPerRequest = Math.max(1, Math.min(config.kafka!.batchMaxEvents, Math.floor(config.kafka!.batchMaxBytes / (lineBytes + 320))));
  return { lineBytes, recordsPerRequest, round, paced, close: () => p.close() };
}

interface BareBench {
  round: (n: number) => Promise<{ rate: number; requestMs: number[]; cpuUs: number }>;
  close: () => Promise<void>;
}

async function bareKafkajs(recordsPerRequest: number, valueBytes: number, idempotent: boolean): Promise<BareBench> {
  const kafka = new Kafka({ clientId: 'bench-bare', brokers, logLevel: logLevel.NOTHING });
  const producer = kafka.producer(
    idempotent
      ? { idempotent: true, maxInFlightRequests: 1, createPartitioner: Partitioners.DefaultPartitioner }
      : { idempotent: false, maxInFlightRequests: 5, createPartitioner: Partitioners.DefaultPartitioner },
  );
  await producer.connect();
  const topic = `bench-${run}.bare-${idempotent ? 'idem' : 'plain'}`;
  // The value as bytes, as KafkaSink hands them to kafkajs (slices of the
  // journaled batch): kafkajs copies a Buffer instead of UTF-8-encoding a
  // string, so this is the floor at its fastest, not a string-encoding one.
  const value = Buffer.from('v'.repeat(valueBytes));
  const headers = (i: number): IHeaders => ({
    ce_specversion: '1.0',
    ce_id: randomUUID(),
    ce_type: 'io.kubetrail.v1.api.request',
    ce_source: '/kubetrail/bench/webhook/bench',
    ce_time: new Date().toISOString(),
    ce_subject: `agents/cm-${i % 64}`,
    'content-type': 'application/json',
    kubetrail_format: 'native',
  });
  // Idempotent: one request at a time (kafkajs serializes idempotent requests per
  // broker anyway). Non-idempotent: up to 5 requests in flight, to show what the
  // idempotence lock costs.
  const depth = idempotent ? 1 : 5;
  const round = async (count: number): Promise<{ rate: number; requestMs: number[]; cpuUs: number }> => {
    const requestMs: number[] = [];
    const inflight = new Set<Promise<void>>();
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    for (let i = 0; i < count; i += recordsPerRequest) {
      const messages = [];
      for (let j = i; j < Math.min(count, i + recordsPerRequest); j++) messages.push({ key: `agents/cm-${j % 64}`, value, headers: headers(j) });
      const s = performance.now();
      const p: Promise<void> = producer.sendBatch({ acks: -1, topicMessages: [{ topic, messages }] }).then(() => {
        requestMs.push(performance.now() - s);
        inflight.delete(p);
      });
      inflight.add(p);
      if (inflight.size >= depth) await Promise.race(inflight);
    }
    await Promise.all(inflight);
    const rate = count / ((performance.now() - t0) / 1000);
    const c = process.cpuUsage(c0);
    return { rate, requestMs, cpuUs: (c.user + c.system) / count };
  };
  return { round, close: () => producer.disconnect() };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

async function kcat(valueBytes: number): Promise<number | string> {
  if (spawnSync('kcat', ['-V'], { encoding: 'utf8' }).status !== 0) return 'not installed (Debian: apt-get install kcat); skipped';
  const file = path.join(dataDir, 'kcat-input');
  const line = 'k'.repeat(valueBytes) + '\n';
  writeFileSync(file, line.repeat(N));
  const topic = `bench-${run}.kcat`;
  const args = ['-P', '-b', brokers.join(','), '-t', topic, '-X', 'acks=all', '-X', 'enable.idempotence=true', '-X', 'linger.ms=5', '-l', file];
  // One small run first so the topic exists (auto-create) and is not part of the timing.
  spawnSync('kcat', ['-P', '-b', brokers.join(','), '-t', topic, '-X', 'acks=all'], { input: 'warm\n' });
  const t0 = performance.now();
  const code = await new Promise<number | null>((resolve) => spawn('kcat', args, { stdio: 'ignore' }).on('exit', resolve));
  if (code !== 0) return `kcat exited ${code}`;
  return N / ((performance.now() - t0) / 1000);
}

try {
  process.stdout.write(`bench:sink  brokers=${brokers.join(',')}  events=${N} per round, ${ROUNDS} rounds interleaved  node=${process.version}\n`);
  const sink = await kafkaSink();
  const bare = await bareKafkajs(sink.recordsPerRequest, sink.lineBytes, true);
  const plain = await bareKafkajs(sink.recordsPerRequest, sink.lineBytes, false);
  // Warm-up (JIT, connections, topic creation), then interleaved rounds: the
  // machine is shared, so alternating spreads load changes over all three.
  await sink.round(3000);
  await bare.round(3000);
  await plain.round(3000);
  const sinkRates: number[] = [];
  const bareRates: number[] = [];
  const plainRates: number[] = [];
  const requestMs: number[] = [];
  const sinkCpu: number[] = [];
  const bareCpu: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const k = await sink.round(N);
    sinkRates.push(k.rate);
    sinkCpu.push(k.cpuUs);
    const b = await bare.round(N);
    bareRates.push(b.rate);
    bareCpu.push(b.cpuUs);
    requestMs.push(...b.requestMs);
    plainRates.push((await plain.round(N)).rate);
  }
  const lat = await sink.paced();
  await sink.close();
  await bare.close();
  await plain.close();
  const kc = await kcat(sink.lineBytes);
  requestMs.sort((a, b) => a - b);
  const s = median(sinkRates);
  const b = median(bareRates);
  const pl = median(plainRates);
  const rows: [string, string, string][] = [
    ['KafkaSink (chained, acks=all, durable)', `${fmt(s)} events/s`, `${(s / b).toFixed(2)} × bare kafkajs   rounds: ${sinkRates.map(fmt).join(' ')}`],
    ['bare kafkajs idempotent (same records/req)', `${fmt(b)} events/s`, `1.00 (floor)          rounds: ${bareRates.map(fmt).join(' ')}; request p50 ${pct(requestMs, 50).toFixed(1)} ms p99 ${pct(requestMs, 99).toFixed(1)} ms`],
    ['bare kafkajs NOT idempotent, 5 in flight', `${fmt(pl)} events/s`, `${(pl / b).toFixed(2)} × floor (no order/dedup guarantee; reference only)`],
    ['kcat / librdkafka (acks=all, idempotent)', typeof kc === 'number' ? `${fmt(kc)} events/s` : kc, typeof kc === 'number' ? `KafkaSink = ${(s / kc).toFixed(2)} × kcat (one run)` : ''],
  ];
  for (const [a, bb, c] of rows) process.stdout.write(`  ${a.padEnd(44)} ${bb.padEnd(20)} ${c}\n`);
  process.stdout.write(
    `  CPU per event (all threads of this process, median): KafkaSink ${median(sinkCpu).toFixed(1)} µs (emitting thread + producer thread), bare kafkajs ${median(bareCpu).toFixed(1)} µs\n`,
  );
  process.stdout.write(`  record: ${sink.lineBytes} B value, ${sink.recordsPerRequest} records/request (kafka.batchMaxBytes); rates are medians\n`);
  process.stdout.write(`  emit-to-durable at ${fmt(lat.rate)} events/s (target 5,000): p50 ${lat.p50.toFixed(2)} ms, p99 ${lat.p99.toFixed(2)} ms\n`);
} finally {
  rmSync(dataDir, { recursive: true, force: true });
  await dropBenchTopics(brokers, new RegExp(`^bench-${run}\\.`));
}
