/**
 * The Helm chart end to end in the harness's real cluster (issue 16 item 5):
 * `helm install` of charts/kubetrail with the image built here and imported
 * into the node's containerd (as test/deploy/in-cluster.test.ts does, with its
 * support code), pods Ready, a denial and a stamp through the in-cluster
 * webhook, `helm upgrade` whose changed value rolls out, and `helm uninstall`
 * leaving no webhook configuration. The tests run in order on one release;
 * `after` deletes the webhook configurations first whatever happened.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { harness } from '../support/env.ts';
import { REPO, suffix } from './support.ts';
import {
  admin,
  adminTry,
  agentDeniedAndStamped,
  builtHelm,
  createLocalPvs,
  deleteLocalPvs,
  forceUninstall,
  helmRunner,
  importedImage,
  rolloutStatus,
  waitReady,
  webhookConfigurations,
  type NodeImage,
} from './in-cluster-support.ts';

const NS = 'kubetrail';
const CHART = path.join(REPO, 'charts', 'kubetrail');
const id = suffix();
const topics = { events: `kt-helm-${id}.events`, sessions: `kt-helm-${id}.sessions` };
const scratch = mkdtempSync(path.join(tmpdir(), 'kt-helm-incluster-'));
let img: NodeImage;
let helm: ReturnType<typeof helmRunner>;

before(async () => {
  const ns = await adminTry(['get', 'namespace', NS, '-o', 'name']);
  assert.notEqual(ns.status, 0, `namespace ${NS} exists already: not a first install`);
  if (!harness().KAFKA_NODE_BROKERS) throw new Error('the harness Kafka has no pod listener (KAFKA_NODE_BROKERS): restart the harness');
  img = await importedImage();
  await builtHelm();
  helm = helmRunner(harness().ADMIN_KUBECONFIG, scratch);
});

after(async () => {
  await helm?.(['uninstall', 'kubetrail', '-n', NS, '--wait=false']);
  await forceUninstall(NS);
  await adminTry(['-n', 'agents', 'delete', 'deployment,pod', '-l', `kubetrail.test/run=${id}`, '--ignore-not-found', '--wait=false']);
  await deleteLocalPvs();
  rmSync(scratch, { recursive: true, force: true });
});

/** The values a user sets for this cluster: the image, Kafka at the harness broker's pod listener. */
function values(): string[] {
  const h = harness();
  return [
    '--set', `image.repository=${img.name}`,
    '--set', `image.tag=${img.tag}`,
    '--set', 'cluster=harness',
    '--set-json', `kafka.brokers=${JSON.stringify([h.KAFKA_NODE_BROKERS])}`,
    '--set', `kafka.topics.events=${topics.events}`,
    '--set', `kafka.topics.sessions=${topics.sessions}`,
  ];
}

test('helm install: the pods become Ready with their probes and the leader writes the caBundle', async () => {
  await createLocalPvs(NS, ['webhook-0', 'webhook-1', 'proxy-0', 'proxy-1']);
  const r = await helm(['install', 'kubetrail', CHART, '-n', NS, '--create-namespace', ...values()]);
  assert.equal(r.status, 0, r.stderr);
  for (const c of ['webhook', 'proxy']) await waitReady(NS, c, 2, 240_000);
  const vwc = JSON.parse(await admin(['get', 'validatingwebhookconfiguration', 'kubetrail', '-o', 'json'])) as { webhooks: { clientConfig: { caBundle?: string } }[] };
  for (const w of vwc.webhooks) assert.ok(w.clientConfig.caBundle, 'the leader wrote the caBundle');
});

test('through the installed webhook an agent\'s privileged pod is denied and a Deployment is stamped, and both reach Kafka', async () => {
  const { denied, created } = await agentDeniedAndStamped(id, 'h', topics.events);
  assert.equal(denied.actor?.username, 'agent-ci');
  assert.notEqual(created.id, '');
});

test('helm upgrade with a changed value rolls it out to every pod', async () => {
  const env = [{ name: 'KUBETRAIL_LOG_LEVEL', value: 'debug' }];
  const r = await helm(['upgrade', 'kubetrail', CHART, '-n', NS, ...values(), '--set-json', `extraEnv=${JSON.stringify(env)}`]);
  assert.equal(r.status, 0, r.stderr);
  for (const sts of ['kubetrail-webhook', 'kubetrail-proxy']) {
    await rolloutStatus(NS, `statefulset/${sts}`, 300);
  }
  for (const c of ['webhook', 'proxy']) {
    const pods = JSON.parse(await admin(['-n', NS, 'get', 'pods', '-l', `app.kubernetes.io/component=${c}`, '-o', 'json'])) as { items: { spec: { containers: { env?: { name: string; value?: string }[] }[] } }[] };
    assert.equal(pods.items.length, 2, c);
    for (const p of pods.items) assert.equal(p.spec.containers[0]?.env?.find((e) => e.name === 'KUBETRAIL_LOG_LEVEL')?.value, 'debug', `${c} runs the upgraded values`);
  }
});

test('helm uninstall leaves no webhook configuration behind', async () => {
  const r = await helm(['uninstall', 'kubetrail', '-n', NS, '--wait', '--timeout=180s'], 200_000);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(await webhookConfigurations(), []);
  const w = await adminTry(['-n', 'agents', 'create', 'configmap', `hafter-${id}`, '-o', 'name']);
  assert.equal(w.status, 0, w.stderr);
  await adminTry(['-n', 'agents', 'delete', 'configmap', `hafter-${id}`]);
});
