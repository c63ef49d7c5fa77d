/**
 * A no-op apply stays a no-op (issue 13 item 12): GitOps tools re-apply
 * every object on every sync, and a stamp that changes on each request
 * would turn each sync into a write (new resourceVersion, watch events,
 * records). The real API server and kubectl, server-side and client-side
 * apply, through the registered webhook.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { MemorySink } from '../../core/sinks/memory-sink.ts';
import { harness, kubectl } from '../support/env.ts';
import { registerWebhooks, startTestWebhook, uniqueId, type TestWebhook } from './support.ts';

const id = uniqueId();
const sink = new MemorySink();
let w: TestWebhook;
let unregister: (() => Promise<void>) | undefined;

before(async () => {
  const env = harness();
  w = await startTestWebhook(sink);
  unregister = await registerWebhooks(env.ADMIN_KUBECONFIG, { id, url: w.url, caBundle: w.pki.caBundle }, () => sink.ofType('admission.review').some((e) => e.target?.name === `kt-probe-${id}`));
});

after(async () => {
  const env = harness();
  await unregister?.();
  await kubectl(env.ADMIN_KUBECONFIG, ['-n', 'agents', 'delete', 'configmaps,deployments', '-l', `kubetrail-test=${id}`, '--ignore-not-found', '--wait=false']);
  await w?.close();
});

async function get(kind: string, name: string): Promise<any> {
  const r = await kubectl(harness().ADMIN_KUBECONFIG, ['-n', 'agents', 'get', kind, name, '-o', 'json']);
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

async function apply(doc: unknown, serverSide: boolean): Promise<string> {
  const r = await kubectl(harness().ADMIN_KUBECONFIG, ['-n', 'agents', 'apply', ...(serverSide ? ['--server-side', '--field-manager=gitops'] : []), '-f', '-'], JSON.stringify(doc));
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim();
}

const OBJECTS: { kind: string; doc: (name: string) => Record<string, any> }[] = [
  { kind: 'configmap', doc: (name) => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, labels: { 'kubetrail-test': id } }, data: { k: 'v' } }) },
  {
    kind: 'deployment',
    doc: (name) => ({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name, labels: { 'kubetrail-test': id } },
      spec: { replicas: 1, selector: { matchLabels: { app: name } }, template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'app', image: 'nginx:1.27' }] } } },
    }),
  },
];

for (const serverSide of [true, false]) {
  for (const o of OBJECTS) {
    test(`${serverSide ? 'server-side' : 'client-side'} apply of an unchanged ${o.kind} twice leaves its resourceVersion and stamp as they were; a change is stamped anew`, async () => {
      const name = `noop-${serverSide ? 'ssa' : 'csa'}-${o.kind}-${id}`;
      await apply(o.doc(name), serverSide);
      const first = await get(o.kind, name);
      const stamp = first.metadata.annotations?.['kubetrail.io/event'];
      assert.ok(stamp, 'the create is stamped');
      for (let i = 0; i < 2; i++) {
        await apply(o.doc(name), serverSide);
        const again = await get(o.kind, name);
        assert.equal(again.metadata.resourceVersion, first.metadata.resourceVersion, `apply #${i + 2} did not write`);
        assert.equal(again.metadata.annotations['kubetrail.io/event'], stamp);
      }
      const changed = o.doc(name);
      changed['metadata']['labels']['changed'] = 'yes';
      await apply(changed, serverSide);
      const after = await get(o.kind, name);
      assert.notEqual(after.metadata.resourceVersion, first.metadata.resourceVersion);
      const newStamp = after.metadata.annotations['kubetrail.io/event'];
      assert.notEqual(newStamp, stamp, 'a real change gets a new stamp');
      assert.ok(sink.ofType('admission.review').some((e) => e.id === newStamp && e.body.webhook === 'mutate'), 'naming its recorded mutate event');
    });
  }
}
