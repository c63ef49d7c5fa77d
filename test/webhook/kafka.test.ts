/**
 * The webhook with the real event pipeline: events of writes made through
 * the real API server arrive in the real Kafka (harness) and match what was
 * admitted; with Kafka unreachable and no room to spool, the webhook fails
 * closed as configured.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { Kafka, logLevel } from 'kafkajs';
import { loadConfig } from '../../core/config.ts';
import { createMetricsRegistry } from '../../core/health-server.ts';
import { createEventPipeline } from '../../core/pipeline.ts';
import type { KubetrailEvent } from '../../core/events/model.ts';
import { freePort } from '../harness/harness.ts';
import { harness, kubectl } from '../support/env.ts';
import { call, grantAgent, quietLogger, registerWebhooks, review, startTestWebhook, uniqueId } from './support.ts';

test('events of an admitted Deployment arrive in the real Kafka and match what was admitted', async (t) => {
  const env = harness();
  const id = uniqueId();
  const topic = `kt-webhook-test-${id}`;
  const dataDir = mkdtempSync(path.join(tmpdir(), 'kt-webhook-data-'));
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  const config = loadConfig({ document: { dataDir, kafka: { brokers: env.KAFKA_BROKERS.split(','), topics: { events: topic, sessions: `${topic}-sessions` } } } });
  const log = quietLogger();
  const pipeline = await createEventPipeline({ config, log, registry: createMetricsRegistry(), component: 'webhook', instance: `test-${id}` });
  t.after(() => pipeline.close());
  let probed = false;
  const w = await startTestWebhook({
    emit: (d) => {
      if (d.target?.name === `kt-probe-${id}`) probed = true;
      return pipeline.emit(d);
    },
    flush: () => pipeline.flush(),
    close: () => Promise.resolve(),
  });
  t.after(() => w.close());
  const revoke = await grantAgent(env.ADMIN_KUBECONFIG, env.AGENT_KUBECONFIG, 'agents', `kt-whk-${id}`, [{ apiGroups: ['apps'], resources: ['deployments'], verbs: ['create', 'get', 'patch', 'update', 'delete'] }]);
  t.after(revoke);
  const unregister = await registerWebhooks(env.ADMIN_KUBECONFIG, { id, url: w.url, caBundle: w.pki.caBundle }, () => probed);
  t.after(unregister);

  const name = `kafka-web-${id}`;
  const deploy = {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, labels: { 'kubetrail-test': id, app: name } },
    spec: {
      replicas: 2,
      selector: { matchLabels: { app: name } },
      template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'app', image: 'nginx:1.27', env: [{ name: 'DB_PASSWORD', value: 'pw-in-clear' }] }] } },
    },
  };
  const applied = await kubectl(env.AGENT_KUBECONFIG, ['-n', 'agents', 'apply', '-f', '-'], JSON.stringify(deploy));
  assert.equal(applied.status, 0, applied.stderr);
  t.after(async () => void (await kubectl(env.ADMIN_KUBECONFIG, ['-n', 'agents', 'delete', 'deployment', name, '--ignore-not-found', '--wait=false'])));
  const admitted = JSON.parse((await kubectl(env.ADMIN_KUBECONFIG, ['-n', 'agents', 'get', 'deployment', name, '-o', 'json'])).stdout);

  // Read the topic from the beginning until both events of this Deployment are there.
  const kafka = new Kafka({ clientId: `kt-webhook-test-${id}`, brokers: env.KAFKA_BROKERS.split(','), logLevel: logLevel.NOTHING });
  const consumer = kafka.consumer({ groupId: `kt-webhook-test-${id}` });
  await consumer.connect();
  t.after(() => consumer.disconnect());
  await consumer.subscribe({ topic, fromBeginning: true });
  const events: { event: KubetrailEvent; key: string | undefined; headers: Record<string, string> }[] = [];
  const found = new Promise<void>((resolve) => {
    void consumer.run({
      eachMessage: async ({ message }) => {
        const event = JSON.parse(message.value?.toString('utf8') ?? '{}') as KubetrailEvent;
        const headers = Object.fromEntries(Object.entries(message.headers ?? {}).map(([k, v]) => [k, String(v)]));
        events.push({ event, key: message.key?.toString(), headers });
        const mine = events.filter((e) => e.event.type === 'admission.review' && e.event.target?.name === name);
        if (mine.some((e) => (e.event as KubetrailEvent<'admission.review'>).body.webhook === 'mutate') && mine.some((e) => (e.event as KubetrailEvent<'admission.review'>).body.webhook === 'validate')) resolve();
      },
    });
  });
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([found, new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`events not in Kafka after 60 s; saw ${events.length}`)), 60_000)))]);
  clearTimeout(timer);

  const mine = events.filter((e) => e.event.type === 'admission.review' && e.event.target?.name === name);
  const mutate = mine.find((e) => (e.event as KubetrailEvent<'admission.review'>).body.webhook === 'mutate')!.event as KubetrailEvent<'admission.review'>;
  const validate = mine.find((e) => (e.event as KubetrailEvent<'admission.review'>).body.webhook === 'validate')!.event as KubetrailEvent<'admission.review'>;
  // The stamp on the admitted object names the mutate event that is in Kafka.
  assert.equal(admitted.metadata.annotations['kubetrail.io/event'], mutate.id);
  assert.equal(admitted.metadata.annotations['kubetrail.io/last-modified-by'], 'agent-ci');
  // The validate event holds the object as admitted (masked): same name, labels, stamp, replicas, images.
  const seen = validate.body.object as any;
  assert.equal(seen.metadata.name, admitted.metadata.name);
  assert.deepEqual(seen.metadata.labels, admitted.metadata.labels);
  assert.equal(seen.metadata.annotations['kubetrail.io/event'], mutate.id);
  assert.equal(seen.spec.replicas, admitted.spec.replicas);
  assert.deepEqual(
    seen.spec.template.spec.containers.map((c: { image: string }) => c.image),
    admitted.spec.template.spec.containers.map((c: { image: string }) => c.image),
  );
  assert.equal(seen.spec.template.spec.containers[0].env[0].value, '***MASKED***');
  assert.equal(admitted.spec.template.spec.containers[0].env[0].value, 'pw-in-clear');
  assert.doesNotMatch(JSON.stringify(mine.map((e) => e.event)), /pw-in-clear/);
  assert.equal(validate.body.decision.allowed, true);
  assert.equal(validate.actor?.username, 'agent-ci');
  assert.equal(validate.source.component, 'webhook');
  assert.equal(validate.source.instance, `test-${id}`);
  assert.ok(validate.chain && validate.chain.seq > 0, 'events are chained');
  // Kafka record: key namespace/name, CloudEvents headers.
  const rec = mine.find((e) => e.event.id === validate.id)!;
  assert.equal(rec.key, `agents/${name}`);
  assert.equal(rec.headers['ce_id'], validate.id);
  assert.match(rec.headers['ce_type'] ?? '', /admission\.review$/);
});

test('with Kafka unreachable and the spool full, the real pipeline refuses the event and the webhook fails closed as configured', async (t) => {
  const id = uniqueId();
  const dataDir = mkdtempSync(path.join(tmpdir(), 'kt-webhook-data-'));
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  const deadBroker = `127.0.0.1:${await freePort()}`;
  const config = loadConfig({
    document: {
      dataDir,
      kafka: { brokers: [deadBroker], topics: { events: `kt-dead-${id}`, sessions: `kt-dead-${id}-s` }, connectTimeoutMs: 300, requestTimeoutMs: 500 },
      // Room for nothing: every event must spool (Kafka is down) and the spool refuses it.
      spool: { maxBytes: 1, overflow: 'fail-closed' },
    },
  });
  const pipeline = await createEventPipeline({ config, log: quietLogger(), registry: createMetricsRegistry(), component: 'webhook', instance: `dead-${id}` });
  t.after(() => pipeline.close());
  for (const failClosed of [true, false]) {
    const w = await startTestWebhook(pipeline, { webhook: { failClosed } });
    try {
      const res = (await call(`${w.url}/validate?timeout=5s`, w.pki.ca.certPem, JSON.stringify(review()))).json().response;
      assert.equal(res.allowed, !failClosed, `failClosed=${failClosed}`);
      if (failClosed) assert.match(res.status.message, /could not record this request durably/);
      else assert.deepEqual(res.warnings, ['kubetrail could not record this request']);
    } finally {
      await w.close();
    }
  }
});
