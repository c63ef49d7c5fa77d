import assert from 'node:assert/strict';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Registry } from 'prom-client';
import { harness, productEnv, run } from '../support/env.ts';
import { createEventPipeline } from '../../core/pipeline.ts';
import type { KubetrailEvent } from '../../core/events/model.ts';
import { apiRequestDraft, memoryLogger, pipelineConfig, tempDir, topics } from './support.ts';

const CLI = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'cli', 'main.ts');
const BIN = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'kubetrail.mjs');
const dir = tempDir('kt-events-cli-');
const dataDir = path.join(dir, 'data');
after(() => rmSync(dir, { recursive: true, force: true }));

before(async () => {
  const { log } = memoryLogger();
  const p = await createEventPipeline({ config: pipelineConfig(dataDir), log, registry: new Registry(), component: 'proxy', instance: 'cli' });
  for (let i = 0; i < 6; i++) {
    const d = apiRequestDraft(i, 10);
    d.actor = { username: i % 2 === 0 ? 'alice' : 'bob', groups: [], authn: 'token' };
    d.target = { ...d.target, namespace: i < 3 ? 'team-a' : 'team-b' };
    await p.emit(d);
  }
  await p.close();
});

async function events(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return run(process.execPath, [CLI, 'events', '--log-dir', dataDir, ...args], undefined, { env: productEnv() });
}

const FILTERS: { args: string[]; users: string[] }[] = [
  { args: ['--user', 'alice'], users: ['alice', 'alice', 'alice'] },
  { args: ['--namespace', 'team-b'], users: ['bob', 'alice', 'bob'] },
  { args: ['--user', 'bob', '--namespace', 'team-a'], users: ['bob'] },
  { args: ['--type', 'api.request', '--since', '1h'], users: ['alice', 'bob', 'alice', 'bob', 'alice', 'bob'] },
  { args: ['--since', '2099-01-01T00:00:00Z'], users: [] },
];

for (const f of FILTERS) {
  test(`kubetrail events ${f.args.join(' ')} -o json prints the matching native events as NDJSON`, async () => {
    const r = await events([...f.args, '-o', 'json']);
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as KubetrailEvent);
    assert.deepEqual(lines.map((e) => e.actor?.username), f.users);
    assert.ok(lines.every((e) => e.apiVersion === 'kubetrail.io/v1' && e.chain !== undefined));
  });
}

test('kubetrail events --format ocsf -o json prints OCSF API Activity records; the table has a header and one row per event', async () => {
  const o = await events(['--format', 'ocsf', '--type', 'api.request', '-o', 'json']);
  assert.equal(o.status, 0, o.stderr);
  const recs = o.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { class_uid: number });
  assert.equal(recs.length, 6);
  assert.ok(recs.every((r) => r.class_uid === 6003));
  const t = await events(['--user', 'bob']);
  const rows = t.stdout.trimEnd().split('\n');
  assert.match(rows[0] ?? '', /^TIME\s+TYPE\s+USER\s+VERB\s+OBJECT\s+RESULT\s+SEQ$/);
  assert.equal(rows.length, 4);
});

test('bad flags exit 2 with the usage text', async () => {
  for (const args of [['--since', 'yesterday'], ['--format', 'xml'], ['--bogus']]) {
    const r = await events(args);
    assert.equal(r.status, 2, args.join(' '));
    assert.match(r.stderr, /usage: kubetrail events/);
  }
});

test('kubetrail events --brokers reads a Kafka topic pair', async () => {
  const env = harness();
  const t = topics();
  const { log } = memoryLogger();
  const p = await createEventPipeline({ config: pipelineConfig(path.join(dir, 'k'), { kafka: { brokers: env.KAFKA_BROKERS.split(','), topics: t } }), log, registry: new Registry(), component: 'webhook' });
  const sent = await Promise.all([0, 1, 2].map((i) => p.emit(apiRequestDraft(i, 10))));
  await p.close();
  // Through the installed entry point: kafkajs's harmless TimeoutNegativeWarning (docs/known-issues.md) is not printed.
  const r = await run(process.execPath, [BIN, 'events', '--brokers', env.KAFKA_BROKERS, '--topic', t.events, '--type', 'api.request', '-o', 'json'], undefined, { env: productEnv() });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(r.stdout.split('\n').filter(Boolean).map((l) => (JSON.parse(l) as KubetrailEvent).id), sent.map((e) => e.id));
  assert.doesNotMatch(r.stderr, /TimeoutNegativeWarning/);
});

test('kubetrail events --follow on Kafka prints events emitted after it started, and stops cleanly on SIGINT', async () => {
  const env = harness();
  const t = topics();
  const { log } = memoryLogger();
  const config = pipelineConfig(path.join(dir, 'follow'), { kafka: { brokers: env.KAFKA_BROKERS.split(','), topics: t } });
  const p = await createEventPipeline({ config, log, registry: new Registry(), component: 'webhook' });
  const before = await p.emit(apiRequestDraft(0, 10));
  const child = spawn(process.execPath, [CLI, 'events', '--brokers', env.KAFKA_BROKERS, '--topic', t.events, '--type', 'api.request', '--follow', '-o', 'json'], { env: productEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  const ids: string[] = [];
  let buf = '';
  const seen = new Promise<void>((resolve) => {
    child.stdout.on('data', (c: Buffer) => {
      buf += c.toString();
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      for (const l of lines) if (l) ids.push((JSON.parse(l) as KubetrailEvent).id);
      if (ids.length >= 3) resolve();
    });
  });
  // Wait until the follower has caught up with the first event before emitting more.
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  while (ids.length === 0) {
    assert.equal(child.exitCode, null, `the follower exited early: ${stderr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const later = await Promise.all([1, 2].map((i) => p.emit(apiRequestDraft(i, 10))));
  await seen;
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  child.kill('SIGINT');
  assert.equal(await exited, 0);
  await p.close();
  assert.deepEqual(ids, [before.id, ...later.map((e) => e.id)]);
});
