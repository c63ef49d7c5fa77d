/**
 * The drain after SIGTERM (core/drain.ts) on the real webhook listener and
 * health listener, in process: /readyz turns to `not ready: shutting-down`,
 * a review on a kept-alive connection during the drain is answered with
 * `Connection: close` and that connection is then closed, new connections are
 * still served until the drain period is over, and only then does the
 * listener close. The drain period is ended by the test (an injected wait).
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import { test } from 'node:test';
import { DRAIN_CHECK, Drain } from '../../core/drain.ts';
import { createMetricsRegistry, startHealthServer } from '../../core/health-server.ts';
import { Shutdown } from '../../core/shutdown.ts';
import { MemorySink } from '../../core/sinks/memory-sink.ts';
import { waitFor } from '../support/wait.ts';
import { call, quietLogger, review, startTestWebhook } from './support.ts';

function get(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

test('after SIGTERM the webhook reports not ready, keeps serving with Connection: close for the drain period, then closes its listener', async (t) => {
  const log = quietLogger();
  let endDrain: () => void = () => undefined;
  let drainMs = -1;
  const drain = new Drain({ seconds: 10, log, wait: (ms) => ((drainMs = ms), new Promise<void>((r) => (endDrain = r))) });
  const w = await startTestWebhook(new MemorySink(), {}, { drain });
  const health = await startHealthServer('127.0.0.1:0', createMetricsRegistry());
  health.addCheck(DRAIN_CHECK, drain.ready);
  const shutdown = new Shutdown(log);
  shutdown.drainFirst(() => drain.run());
  shutdown.add('webhook', () => w.close());
  shutdown.add('health', () => health.close());
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: w.pki.ca.certPem });
  t.after(async () => {
    endDrain();
    agent.destroy();
    await shutdown.run().catch(() => undefined);
  });
  const readyz = `http://127.0.0.1:${health.port}/readyz`;
  const validate = `${w.url}/validate?timeout=10s`;
  const body = JSON.stringify(review());

  assert.deepEqual(await get(readyz), { status: 200, body: 'ok\n' });
  const before = await call(validate, w.pki.ca.certPem, body, { agent });
  assert.equal(before.status, 200);
  assert.equal(before.headers['connection'], 'keep-alive', 'kept alive before the drain');
  const kept = Object.values(agent.freeSockets).flat()[0];
  assert.ok(kept, 'one idle kept-alive connection in the agent');

  const stopped = shutdown.run();
  await waitFor(() => drain.draining, 'the drain to begin');
  assert.equal(drainMs, 10_000, 'the drain lasts shutdownDrainSeconds');
  assert.deepEqual(await get(readyz), { status: 503, body: 'not ready: shutting-down\n' });

  // The next review on the kept-alive connection is answered, and the answer tells the client to go.
  const closedKept = new Promise<void>((r) => kept.once('close', () => r()));
  const during = await call(validate, w.pki.ca.certPem, body, { agent });
  assert.equal(during.status, 200);
  assert.equal(during.json().response.allowed, true);
  assert.equal(during.headers['connection'], 'close');
  await closedKept;
  // A new connection in the drain window is served too (routing may still send one here).
  const fresh = await call(validate, w.pki.ca.certPem, body);
  assert.equal(fresh.status, 200);
  assert.equal(fresh.headers['connection'], 'close');

  endDrain();
  await stopped;
  await assert.rejects(call(validate, w.pki.ca.certPem, body), { code: 'ECONNREFUSED' });
});

test('shutdownDrainSeconds 0 skips the drain: the closers run at once', async () => {
  const log = quietLogger();
  let waited = false;
  const drain = new Drain({ seconds: 0, log, wait: async () => void (waited = true) });
  const shutdown = new Shutdown(log);
  const order: string[] = [];
  shutdown.drainFirst(async () => {
    await drain.run();
    order.push('drained');
  });
  shutdown.add('listener', () => void order.push('listener'));
  await shutdown.run();
  assert.equal(waited, false);
  assert.equal(drain.ready(), false, 'not ready once shutdown began');
  assert.deepEqual(order, ['drained', 'listener']);
});
