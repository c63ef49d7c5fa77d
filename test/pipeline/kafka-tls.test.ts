/**
 * KafkaSink over TLS against the real broker: a dedicated Kafka 4.1.1 with an
 * SSL listener that requires a client certificate (mutual TLS) and a SASL_SSL
 * listener (server-authenticated TLS, then SCRAM). Events are read back from
 * the topic over TLS so "delivered" means "on the broker", and each way of
 * getting TLS wrong fails at start with SINK_ERR_KAFKA_TLS naming kafka.ssl.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { rmSync, writeFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { Registry } from 'prom-client';
import { Kafka, logLevel } from 'kafkajs';
import { startKafka, type KafkaBroker } from '../harness/harness.ts';
import { createCA, issueCert, type CertKeyPair } from '../../certs/generate.ts';
import { createEventPipeline } from '../../core/pipeline.ts';
import { SinkError } from '../../core/sinks/errors.ts';
import type { KafkaSink } from '../../core/sinks/kafka-sink.ts';
import type { ConfigInput } from '../../core/config.ts';
import { apiRequestDraft, memoryLogger, pipelineConfig, tempDir, topics } from './support.ts';

const dir = tempDir('kt-kafka-tls-');
const PASSWORD = 'tls-and-scram-pass';
let broker: KafkaBroker;
let ca: CertKeyPair;
let files: { ca: string; otherCa: string; cert: string; key: string; strangerCert: string; strangerKey: string };

function write(name: string, pem: string): string {
  const f = path.join(dir, name);
  writeFileSync(f, pem, { mode: 0o600 });
  return f;
}

before(async () => {
  ca = createCA({ commonName: 'kafka-test-ca' });
  const otherCa = createCA({ commonName: 'some-other-ca' });
  const server = issueCert(ca, { commonName: 'kafka', ips: ['127.0.0.1'], dnsNames: ['localhost'] });
  const client = issueCert(ca, { commonName: 'kubetrail', usages: ['clientAuth'] });
  const stranger = issueCert(otherCa, { commonName: 'stranger', usages: ['clientAuth'] });
  files = {
    ca: write('ca.pem', ca.certPem),
    otherCa: write('other-ca.pem', otherCa.certPem),
    cert: write('client.pem', client.certPem),
    key: write('client-key.pem', client.keyPem),
    strangerCert: write('stranger.pem', stranger.certPem),
    strangerKey: write('stranger-key.pem', stranger.keyPem),
  };
  broker = await startKafka({ dir: path.join(dir, 'kafka'), tls: { ...server, clientCaPem: ca.certPem }, saslUsers: { alice: PASSWORD } });
});
after(async () => {
  await broker?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function start(name: string, kafka: ConfigInput['kafka']): Promise<KafkaSink> {
  const { log } = memoryLogger();
  const config = pipelineConfig(path.join(dir, name), { kafka });
  return (await createEventPipeline({ config, log, registry: new Registry(), component: 'proxy', instance: name })) as KafkaSink;
}

async function startError(name: string, kafka: ConfigInput['kafka']): Promise<SinkError> {
  try {
    const p = await start(name, kafka);
    await p.close();
  } catch (err) {
    assert.ok(err instanceof SinkError, `expected a SinkError, got ${String(err)}`);
    return err;
  }
  assert.fail('the pipeline started');
}

/** Reads every record of `topic` over the mutual-TLS listener; returns their event ids. */
async function readIds(topic: string, want: number): Promise<string[]> {
  const reader = issueCert(ca, { commonName: 'reader', usages: ['clientAuth'] });
  const k = new Kafka({ clientId: 'tls-reader', brokers: broker.sslBrokers!, ssl: { ca: [ca.certPem], cert: reader.certPem, key: reader.keyPem }, logLevel: logLevel.NOTHING });
  const consumer = k.consumer({ groupId: `tls-reader-${topic}` });
  const ids: string[] = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`read ${ids.length} of ${want} records from ${topic}`)), 30_000);
      void consumer.run({
        eachMessage: async ({ message }) => {
          ids.push((JSON.parse(message.value!.toString()) as { id: string }).id);
          if (ids.length >= want) {
            clearTimeout(timer);
            resolve();
          }
        },
      });
    });
  } finally {
    await consumer.disconnect();
  }
  return ids;
}

test('mutual TLS: with the CA, a client certificate and key, events are delivered over the SSL listener and read back', async () => {
  const t = topics();
  const p = await start('mtls', { brokers: broker.sslBrokers!, topics: t, connectTimeoutMs: 5000, ssl: { caFile: files.ca, certFile: files.cert, keyFile: files.key } });
  const sent: string[] = [];
  try {
    assert.equal(p.spooling, false, 'connected to Kafka, not spooling');
    for (let i = 1; i <= 5; i++) sent.push((await p.emit(apiRequestDraft(i))).id);
  } finally {
    await p.close();
  }
  assert.deepEqual(await readIds(t.events, 5), sent);
});

test('SASL_SSL: server-authenticated TLS plus SCRAM-SHA-512 delivers events', async () => {
  const t = topics();
  const p = await start('sasl-ssl', {
    brokers: broker.saslSslBrokers!,
    topics: t,
    connectTimeoutMs: 5000,
    ssl: { caFile: files.ca },
    sasl: { mechanism: 'scram-sha-512', username: 'alice', password: PASSWORD },
  });
  try {
    assert.equal(p.spooling, false);
    assert.equal((await p.emit(apiRequestDraft(1))).chain?.seq, 1);
  } finally {
    await p.close();
  }
});

test('a broker certificate from a CA we do not trust: SINK_ERR_KAFKA_TLS naming kafka.ssl', async () => {
  const err = await startError('wrong-ca', { brokers: broker.sslBrokers!, topics: topics(), connectTimeoutMs: 3000, onUnreachableAtStart: 'fail', ssl: { caFile: files.otherCa, certFile: files.cert, keyFile: files.key } });
  assert.equal(err.code, 'SINK_ERR_KAFKA_TLS');
  assert.equal(err.setting, 'kafka.ssl');
  assert.match(err.message, /^kafka\.ssl: TLS handshake with kafka\.brokers failed \(/);
});

test('a missing CA file: SINK_ERR_KAFKA_TLS naming kafka.ssl.caFile before any connection', async () => {
  const err = await startError('no-ca-file', { brokers: broker.sslBrokers!, topics: topics(), ssl: { caFile: path.join(dir, 'nope.pem') } });
  assert.equal(err.code, 'SINK_ERR_KAFKA_TLS');
  assert.equal(err.setting, 'kafka.ssl.caFile');
  assert.match(err.message, /nope\.pem \(ENOENT\)/);
});

for (const c of [
  { name: 'no client certificate', ssl: (): Record<string, string> => ({ caFile: files.ca }) },
  { name: 'a client certificate from another CA', ssl: (): Record<string, string> => ({ caFile: files.ca, certFile: files.strangerCert, keyFile: files.strangerKey }) },
]) {
  test(`mutual TLS with ${c.name}: the broker refuses the handshake: SINK_ERR_KAFKA_TLS naming kafka.ssl`, async () => {
    const err = await startError(`mtls-${c.name.replace(/\W+/g, '-')}`, { brokers: broker.sslBrokers!, topics: topics(), connectTimeoutMs: 3000, onUnreachableAtStart: 'fail', ssl: c.ssl() });
    assert.equal(err.code, 'SINK_ERR_KAFKA_TLS', err.message);
    assert.equal(err.setting, 'kafka.ssl');
    assert.match(err.message, /^kafka\.ssl: TLS handshake with kafka\.brokers failed \(ERR_SSL_SSL\/TLS_ALERT_(BAD_CERTIFICATE|CERTIFICATE_UNKNOWN|CERTIFICATE_REQUIRED)\)/);
  });
}
