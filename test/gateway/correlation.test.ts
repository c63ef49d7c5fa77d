/**
 * Correlation end to end on the real API server: a write through the
 * gateway reaches kubetrail's admission webhook as the impersonated caller,
 * and the webhook's admission.review event names the gateway's session — the
 * same id as the gateway's api.request event.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { MemorySink } from '../../core/sinks/memory-sink.ts';
import { harness, kubectl } from '../support/env.ts';
import { registerWebhooks, startTestWebhook, type TestWebhook } from '../webhook/support.ts';
import { createNamespace, serviceAccountWithToken, startTestGateway, uniq, type TestGateway } from './support.ts';

const id = `gwc${uniq()}`;
const ns = `gw-corr-${uniq()}`;
const webhookSink = new MemorySink({ source: { component: 'webhook', instance: 'test', cluster: 'test' } });
let w: TestWebhook;
let t: TestGateway;
let dropNs: () => Promise<void>;
let unregister: (() => Promise<void>) | undefined;
let kc: string;

before(async () => {
  const env = harness();
  dropNs = await createNamespace(ns);
  w = await startTestWebhook(webhookSink);
  unregister = await registerWebhooks(env.ADMIN_KUBECONFIG, { id, url: w.url, caBundle: w.pki.caBundle, namespaces: [ns] }, () =>
    webhookSink.ofType('admission.review').some((e) => e.target?.name === `kt-probe-${id}`),
  );
  t = await startTestGateway();
  kc = t.kubeconfigFor(await serviceAccountWithToken(ns, 'corr'), ns);
});
after(async () => {
  await unregister?.();
  await t?.close();
  await w?.close();
  await dropNs?.();
});

test("the webhook's admission event names the gateway session of the request that caused it", async () => {
  const name = `corr-${uniq()}`;
  const r = await kubectl(kc, ['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, labels: { 'kubetrail-test': id } }, data: { a: 'b' } }));
  assert.equal(r.status, 0, r.stderr);
  const gatewayEvent = t.sink.ofType('api.request').find((e) => e.body.method === 'POST' && e.target?.namespace === ns && e.body.status === 201);
  assert.ok(gatewayEvent?.correlation?.session, 'gateway recorded the create with a session');
  const reviews = webhookSink.ofType('admission.review').filter((e) => e.target?.name === name && e.body.operation === 'CREATE');
  assert.ok(reviews.length >= 1, 'the webhook reviewed the create');
  for (const review of reviews) {
    assert.equal(review.correlation?.session, gatewayEvent.correlation.session);
    assert.equal(review.actor?.username, `system:serviceaccount:${ns}:corr`);
  }
});
