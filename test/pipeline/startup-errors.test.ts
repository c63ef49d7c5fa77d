import assert from 'node:assert/strict';
import path from 'node:path';
import { mkdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { Registry } from 'prom-client';
import { startKafka, freePort, type KafkaBroker } from '../harness/harness.ts';
import { createEventPipeline } from '../../core/pipeline.ts';
import { SinkError } from '../../core/sinks/errors.ts';
import type { KafkaSink } from '../../core/sinks/kafka-sink.ts';
import type { ConfigInput } from '../../core/config.ts';
import { apiRequestDraft, memoryLogger, pipelineConfig, tempDir, topics } from './support.ts';

const dir = tempDir('kt-startup-errors-');
let broker: KafkaBroker;
const PASSWORD = 'correct-horse-battery';

before(async () => {
  broker = await startKafka({ dir: path.join(dir, 'kafka'), saslUsers: { alice: PASSWORD } });
});
after(async () => {
  await broker?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function start(name: string, extra: ConfigInput): Promise<KafkaSink> {
  const { log } = memoryLogger();
  const config = pipelineConfig(path.join(dir, name), extra);
  return (await createEventPipeline({ config, log, registry: new Registry(), component: 'proxy', instance: name })) as KafkaSink;
}

async function startError(name: string, extra: ConfigInput): Promise<SinkError> {
  try {
    const p = await start(name, extra);
    await p.close();
  } catch (err) {
    assert.ok(err instanceof SinkError, `expected a SinkError, got ${String(err)}`);
    return err;
  }
  assert.fail('the pipeline started');
}

test('unreachable brokers with onUnreachableAtStart=fail: SINK_ERR_KAFKA_UNREACHABLE naming kafka.brokers', async () => {
  const dead = `127.0.0.1:${await freePort()}`;
  const err = await startError('unreachable', { kafka: { brokers: [dead], topics: topics(), connectTimeoutMs: 300, onUnreachableAtStart: 'fail' } });
  assert.equal(err.code, 'SINK_ERR_KAFKA_UNREACHABLE');
  assert.equal(err.setting, 'kafka.brokers');
  assert.match(err.message, /^kafka\.brokers: cannot reach 127\.0\.0\.1:\d+/);
});

test('unreachable brokers with the default onUnreachableAtStart=spool: starts spooling and warns naming kafka.brokers', async () => {
  const dead = `127.0.0.1:${await freePort()}`;
  const { log, lines } = memoryLogger();
  const config = pipelineConfig(path.join(dir, 'unreachable-spool'), { kafka: { brokers: [dead], topics: topics(), connectTimeoutMs: 300 } });
  const p = (await createEventPipeline({ config, log, registry: new Registry(), component: 'proxy', instance: 'u2' })) as KafkaSink;
  try {
    assert.equal(p.spooling, true);
    const e = await p.emit(apiRequestDraft(1));
    assert.equal(e.chain?.seq, 1, 'the event was made durable in the spool');
    const warn = lines().find((l) => l['setting'] === 'kafka.brokers');
    assert.ok(warn, 'a warning names kafka.brokers');
  } finally {
    await p.close();
  }
});

const SASL_CASES = [
  { mechanism: 'plain', password: 'wrong', ok: false },
  { mechanism: 'scram-sha-256', password: 'wrong', ok: false },
  { mechanism: 'scram-sha-512', password: 'wrong', ok: false },
  { mechanism: 'plain', password: PASSWORD, ok: true },
  { mechanism: 'scram-sha-512', password: PASSWORD, ok: true },
] as const;

for (const c of SASL_CASES) {
  test(`SASL ${c.mechanism} with ${c.ok ? 'the right' : 'a wrong'} password ${c.ok ? 'delivers events' : 'fails with SINK_ERR_KAFKA_AUTH naming kafka.sasl and not the password'}`, async () => {
    const name = `sasl-${c.mechanism}-${c.ok}`;
    const kafka = { brokers: broker.saslBrokers!, topics: topics(), connectTimeoutMs: 2000, sasl: { mechanism: c.mechanism, username: 'alice', password: c.password } };
    if (!c.ok) {
      const err = await startError(name, { kafka });
      assert.equal(err.code, 'SINK_ERR_KAFKA_AUTH');
      assert.equal(err.setting, 'kafka.sasl');
      assert.match(err.message, /^kafka\.sasl: /);
      assert.ok(!err.message.includes(c.password), 'the message never carries the password');
      return;
    }
    const p = await start(name, { kafka });
    try {
      assert.equal(p.spooling, false);
      const e = await p.emit(apiRequestDraft(1));
      assert.equal(e.chain?.seq, 1);
    } finally {
      await p.close();
    }
  });
}

test('a data dir that cannot be created: SINK_ERR_DATA_DIR naming dataDir', async () => {
  const file = path.join(dir, 'a-file');
  writeFileSync(file, 'not a directory');
  const { log } = memoryLogger();
  const config = pipelineConfig(path.join(file, 'data'));
  await assert.rejects(createEventPipeline({ config, log, registry: new Registry(), component: 'webhook' }), (err: unknown) => {
    assert.ok(err instanceof SinkError);
    assert.equal(err.code, 'SINK_ERR_DATA_DIR');
    assert.equal(err.setting, 'dataDir');
    assert.match(err.message, /^dataDir: .*a-file\/data is not a writable directory \(ENOTDIR\)/);
    return true;
  });
});

test('a second process on the same data dir and component is refused with SINK_ERR_LOCKED', async () => {
  const { log } = memoryLogger();
  const config = pipelineConfig(path.join(dir, 'locked'));
  const first = await createEventPipeline({ config, log, registry: new Registry(), component: 'webhook' });
  try {
    await assert.rejects(createEventPipeline({ config, log, registry: new Registry(), component: 'webhook' }), (err: unknown) => err instanceof SinkError && err.code === 'SINK_ERR_LOCKED');
  } finally {
    await first.close();
  }
});

test('a lock left by a previous container (pid 1 of another pid namespace, or our pid with another nonce) is taken over; a live one is not', async () => {
  const { log } = memoryLogger();
  for (const [name, content] of [
    ['other-pidns', '1 0b5e2c1e-previous-container pid:[1]'],
    ['same-pid', `${process.pid} 0b5e2c1e-previous-process ${readlinkSync('/proc/self/ns/pid')}`],
  ] as const) {
    const d = path.join(dir, `stale-${name}`);
    mkdirSync(path.join(d, 'locks'), { recursive: true });
    writeFileSync(path.join(d, 'locks', 'webhook.lock'), `${content}\n`);
    const p = await createEventPipeline({ config: pipelineConfig(d), log, registry: new Registry(), component: 'webhook' });
    await p.close();
  }
  // pid 1 of our own namespace (init, alive) with its nonce: still held.
  const d = path.join(dir, 'live-init');
  mkdirSync(path.join(d, 'locks'), { recursive: true });
  writeFileSync(path.join(d, 'locks', 'webhook.lock'), `1 other ${readlinkSync('/proc/self/ns/pid')}\n`);
  await assert.rejects(createEventPipeline({ config: pipelineConfig(d), log, registry: new Registry(), component: 'webhook' }), (err: unknown) => err instanceof SinkError && err.code === 'SINK_ERR_LOCKED');
});

const FILE_SETTINGS = [
  { name: 'kafka.ssl.caFile', kafka: { ssl: { caFile: '/nonexistent/ca.pem' } }, code: 'SINK_ERR_KAFKA_TLS' },
  { name: 'kafka.ssl.certFile', kafka: { ssl: { certFile: '/nonexistent/tls.crt', keyFile: '/nonexistent/tls.key' } }, code: 'SINK_ERR_KAFKA_TLS' },
  { name: 'kafka.sasl.passwordFile', kafka: { sasl: { mechanism: 'scram-sha-256', username: 'alice', passwordFile: '/nonexistent/password' } }, code: 'SINK_ERR_KAFKA_AUTH' },
] as const;

for (const f of FILE_SETTINGS) {
  test(`an unreadable ${f.name} fails with ${f.code} naming it`, async () => {
    const err = await startError(`file-${f.name}`, { kafka: { brokers: broker.brokers, topics: topics(), connectTimeoutMs: 500, ...f.kafka } });
    assert.equal(err.code, f.code);
    assert.equal(err.setting, f.name);
    assert.match(err.message, new RegExp(`^${f.name.replace(/\./g, '\\.')}: cannot read /nonexistent/`));
  });
}
