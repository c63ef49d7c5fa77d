import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Counter } from 'prom-client';
import { createMetricsRegistry, startHealthServer } from './health-server.ts';

test('healthz answers ok, readyz follows its checks, metrics serves the registry', async (t) => {
  const registry = createMetricsRegistry();
  const c = new Counter({ name: 'kubetrail_test_total', help: 'test', registers: [registry] });
  c.inc(3);
  const srv = await startHealthServer('127.0.0.1:0', registry);
  t.after(() => srv.close());
  const base = `http://127.0.0.1:${srv.port}`;
  assert.equal((await fetch(`${base}/healthz`)).status, 200);
  let ready = false;
  srv.addCheck('policies', () => ready);
  srv.addCheck('throws', () => {
    if (!ready) throw new Error('boom');
    return true;
  });
  const notReady = await fetch(`${base}/readyz`);
  assert.equal(notReady.status, 503);
  assert.match(await notReady.text(), /not ready: policies, throws/);
  ready = true;
  assert.equal((await fetch(`${base}/readyz`)).status, 200);
  const metrics = await (await fetch(`${base}/metrics`)).text();
  assert.match(metrics, /^kubetrail_test_total 3$/m);
  assert.match(metrics, /kubetrail_process_resident_memory_bytes/);
  assert.equal((await fetch(`${base}/nope`)).status, 404);
  assert.equal((await fetch(`${base}/healthz`, { method: 'POST' })).status, 405);
});
