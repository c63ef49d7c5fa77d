import assert from 'node:assert/strict';
import { generateKeyPairSync, sign } from 'node:crypto';
import { cpSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Kafka, logLevel, Partitioners, type IHeaders } from 'kafkajs';
import { Registry } from 'prom-client';
import { harness, productEnv, run } from '../support/env.ts';
import { createEventPipeline, localLogDir } from '../../core/pipeline.ts';
import { canonicalJson } from '../../core/chain/canonical.ts';
import { sha256Hex } from '../../core/chain/hash.ts';
import type { KubetrailEvent } from '../../core/events/model.ts';
import type { VerifyReport } from '../../core/chain/verify.ts';
import { apiRequestDraft, memoryLogger, pipelineConfig, tempDir, topics } from './support.ts';

const CLI = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'cli', 'main.ts');
const dir = tempDir('kt-verify-');
after(() => rmSync(dir, { recursive: true, force: true }));

async function verifyCli(args: string[]): Promise<{ status: number | null; report: VerifyReport }> {
  const r = await run(process.execPath, [CLI, 'verify', '-o', 'json', ...args], undefined, { env: productEnv() });
  assert.ok(r.stdout.trim() !== '', `verify printed nothing: ${r.stderr}`);
  return { status: r.status, report: JSON.parse(r.stdout) as VerifyReport };
}

/** Re-seals a changed event so its own hash is consistent again (what a careful attacker would do). */
function reseal(e: KubetrailEvent): string {
  const c = e.chain!;
  const h = sha256Hex(canonicalJson({ ...e, chain: { ...c, hash: '' } }));
  return canonicalJson({ ...e, chain: { ...c, hash: h } });
}

type Tamper = (lines: string[]) => string[];
const TAMPERS: { name: string; tamper: Tamper; expect: string[] }[] = [
  { name: 'untouched', tamper: (l) => l, expect: [] },
  { name: 'a deleted event', tamper: (l) => l.filter((_, i) => i !== 50), expect: ['missing'] },
  {
    name: 'an altered event',
    tamper: (l) => l.map((x, i) => (i === 60 ? x.replace('"status":200', '"status":403') : x)),
    expect: ['altered'],
  },
  {
    name: 'an altered and re-hashed event',
    tamper: (l) =>
      l.map((x, i) => {
        if (i !== 70) return x;
        const e = JSON.parse(x) as KubetrailEvent<'api.request'>;
        e.body.verb = 'delete';
        return reseal(e);
      }),
    expect: ['broken-link'],
  },
  {
    // Re-chaining everything after the change keeps every link valid; only the signed checkpoints can tell.
    name: 'an altered event with the whole tail re-chained',
    tamper: (l) => {
      let prev = '';
      return l.map((x, i) => {
        if (i < 70) return x;
        const e = JSON.parse(x) as KubetrailEvent<'api.request'>;
        if (i === 70) e.body.verb = 'delete';
        else e.chain = { ...e.chain!, prev };
        const out = reseal(e);
        prev = (JSON.parse(out) as KubetrailEvent).chain!.hash;
        return out;
      });
    },
    expect: ['altered'],
  },
  {
    // A checkpoint re-signed with another key (and re-hashed so only the signature is wrong).
    name: 'a checkpoint signed with another key',
    tamper: (l) =>
      l.map((x) => {
        const e = JSON.parse(x) as KubetrailEvent<'chain.checkpoint'>;
        if (e.type !== 'chain.checkpoint' || e.chain!.seq > 150) return x;
        const other = generateKeyPairSync('ed25519').privateKey;
        e.body.signature = sign(null, Buffer.from(`${e.source.instance}\n${e.body.seq}\n${e.body.hash}`), other).toString('base64');
        return reseal(e);
      }),
    expect: ['bad-signature', 'broken-link'],
  },
  { name: 'two reordered events', tamper: (l) => l.map((x, i) => (i === 80 ? (l[81] as string) : i === 81 ? (l[80] as string) : x)), expect: ['reordered'] },
];

test('verify passes an untouched local log and catches deleted, altered, re-hashed, re-chained and reordered events and forged signatures in copies of it', async () => {
  const dataDir = path.join(dir, 'local');
  const { log } = memoryLogger();
  const config = pipelineConfig(dataDir, { signing: { checkpointEvery: 100, checkpointIntervalMs: 60_000 } });
  const p = await createEventPipeline({ config, log, registry: new Registry(), component: 'webhook', instance: 'verify-local' });
  await Promise.all(Array.from({ length: 300 }, (_, i) => p.emit(apiRequestDraft(i, 50))));
  await p.close();
  const logDir = localLogDir(dataDir, 'webhook');
  const pub = path.join(dataDir, 'keys', 'dev-signing.pub.pem');
  for (const t of TAMPERS) {
    const copy = path.join(dir, `copy-${t.name.replace(/\W+/g, '-')}`);
    cpSync(logDir, copy, { recursive: true });
    const seg = readdirSync(copy).filter((f) => f.endsWith('.ndjson'))[0] as string;
    const lines = readFileSync(path.join(copy, seg), 'utf8').trimEnd().split('\n');
    writeFileSync(path.join(copy, seg), t.tamper(lines).join('\n') + '\n');
    const { status, report } = await verifyCli(['--public-key', pub, '--log-dir', copy]);
    assert.deepEqual([...new Set(report.issues.map((i) => i.kind))].sort(), t.expect, `${t.name}: ${JSON.stringify(report.issues)}`);
    assert.equal(status, t.expect.length === 0 ? 0 : 1, `${t.name}: exit code`);
  }
  // The untouched log against someone else's public key: every checkpoint is refused.
  const otherKey = path.join(dir, 'other.pub.pem');
  writeFileSync(otherKey, generateKeyPairSync('ed25519').publicKey.export({ format: 'pem', type: 'spki' }).toString());
  const { status, report } = await verifyCli(['--public-key', otherKey, '--log-dir', logDir]);
  assert.equal(status, 1);
  assert.deepEqual([...new Set(report.issues.map((i) => i.kind))], ['bad-signature']);
  assert.equal(report.issues.length, report.sources[0]?.checkpoints);
});

test('verify passes an untouched copy of a k8s-audit topic and catches a deleted, an altered and a reordered record, and an altered value', async () => {
  const env = harness();
  const brokers = env.KAFKA_BROKERS.split(',');
  const t = topics();
  const dataDir = path.join(dir, 'kafka');
  const { log } = memoryLogger();
  const config = pipelineConfig(dataDir, { kafka: { brokers, topics: t, format: 'k8s-audit' }, signing: { checkpointEvery: 100, checkpointIntervalMs: 60_000 } });
  const p = await createEventPipeline({ config, log, registry: new Registry(), component: 'proxy', instance: 'verify-kafka' });
  await Promise.all(Array.from({ length: 300 }, (_, i) => p.emit(apiRequestDraft(i, 50))));
  await p.close();

  const kafka = new Kafka({ clientId: 'verify-test', brokers, logLevel: logLevel.NOTHING });
  // Read the original topic raw (value + headers), in order.
  const records: { key: string; value: string; headers: IHeaders }[] = [];
  const consumer = kafka.consumer({ groupId: `verify-test-${t.events}` });
  await consumer.connect();
  await consumer.subscribe({ topic: t.events, fromBeginning: true });
  await new Promise<void>((resolve) => {
    void consumer.run({
      eachMessage: async ({ message }) => {
        records.push({ key: message.key?.toString() ?? '', value: message.value?.toString() ?? '', headers: message.headers ?? {} });
        if (records.length === 303) resolve();
      },
    });
  });
  await consumer.disconnect();
  assert.equal(records.length, 303, '300 events and 3 checkpoints');

  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  const pub = path.join(dataDir, 'keys', 'dev-signing.pub.pem');
  const cases: { name: string; edit: (r: typeof records) => typeof records; expect: string[] }[] = [
    { name: 'untouched', edit: (r) => r, expect: [] },
    { name: 'deleted', edit: (r) => r.filter((_, i) => i !== 40), expect: ['missing'] },
    {
      name: 'altered-native',
      edit: (r) => r.map((x, i) => (i === 50 ? { ...x, headers: { ...x.headers, kubetrail_native: String(x.headers['kubetrail_native']).replace('"status":200', '"status":500') } } : x)),
      expect: ['altered'],
    },
    { name: 'altered-value', edit: (r) => r.map((x, i) => (i === 60 ? { ...x, value: x.value.replace('"verb":"get"', '"verb":"list"') } : x)), expect: ['altered'] },
    { name: 'reordered', edit: (r) => r.map((x, i) => (i === 70 ? (r[71] as (typeof r)[number]) : i === 71 ? (r[70] as (typeof r)[number]) : x)), expect: ['reordered'] },
  ];
  for (const c of cases) {
    const topic = `${t.events}.copy-${c.name}`;
    await producer.send({ topic, acks: -1, messages: c.edit(records).map((r) => ({ key: r.key, value: r.value, headers: r.headers })) });
    const { status, report } = await verifyCli(['--public-key', pub, '--brokers', env.KAFKA_BROKERS, '--topic', topic]);
    assert.deepEqual([...new Set(report.issues.map((i) => i.kind))].sort(), c.expect, `${c.name}: ${JSON.stringify(report.issues)}`);
    assert.equal(status, c.expect.length === 0 ? 0 : 1, `${c.name}: exit code`);
  }
  await producer.disconnect();
});

test('on a topic with 3 partitions events spread by key, and verify checks order per partition without false alarms', async () => {
  const env = harness();
  const brokers = env.KAFKA_BROKERS.split(',');
  const t = topics();
  const kafka = new Kafka({ clientId: 'verify-partitions', brokers, logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic: t.events, numPartitions: 3 }], waitForLeaders: true });
  await admin.disconnect();
  const dataDir = path.join(dir, 'partitions');
  const { log } = memoryLogger();
  const config = pipelineConfig(dataDir, { kafka: { brokers, topics: t }, signing: { checkpointEvery: 50, checkpointIntervalMs: 60_000 } });
  const p = await createEventPipeline({ config, log, registry: new Registry(), component: 'webhook', instance: 'partitions' });
  await Promise.all(Array.from({ length: 300 }, (_, i) => p.emit(apiRequestDraft(i, 20))));
  await p.close();
  const { status, report } = await verifyCli(['--public-key', path.join(dataDir, 'keys', 'dev-signing.pub.pem'), '--brokers', env.KAFKA_BROKERS, '--topic', t.events]);
  assert.deepEqual(report.issues, []);
  assert.equal(status, 0);
  assert.equal(report.records, 306, '300 events and 6 checkpoints');
});
