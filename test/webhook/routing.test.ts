/**
 * What express's routing and body parsing must keep exactly as the
 * hand-written listener had it: exact paths, the 400 for a method, refused
 * encoded bodies, and the health listener's 404/405.
 */
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import https from 'node:https';
import { test } from 'node:test';
import { createMetricsRegistry, startHealthServer } from '../../core/health-server.ts';
import { MemorySink } from '../../core/sinks/memory-sink.ts';
import { call, review, startTestWebhook } from './support.ts';

test('only the exact paths /validate and /mutate are served: a trailing slash or other case is a 404, HEAD a 400 with Allow: POST', async (t) => {
  const sink = new MemorySink();
  const w = await startTestWebhook(sink);
  t.after(() => w.close());
  const body = JSON.stringify(review());
  for (const p of ['/validate/', '/Validate', '/MUTATE', '/validate/x', '/']) {
    const r = await call(`${w.url}${p}`, w.pki.ca.certPem, body);
    assert.equal(r.status, 404, p);
    assert.equal(r.json().reason, 'ADM_ERR_NOT_FOUND', p);
  }
  const head = await call(`${w.url}/validate`, w.pki.ca.certPem, '', { method: 'HEAD' });
  assert.equal(head.status, 400);
  assert.equal(head.headers['allow'], 'POST');
  assert.equal(sink.events.length, 0);
});

test('a gzip-encoded body is refused with a 400 Status, not inflated', async (t) => {
  const sink = new MemorySink();
  const w = await startTestWebhook(sink);
  t.after(() => w.close());
  const gz = gzipSync(JSON.stringify(review()));
  const r = await new Promise<{ status: number; json: { reason: string; message: string } }>((resolve, reject) => {
    const req = https.request(`${w.url}/validate`, { method: 'POST', ca: w.pki.ca.certPem, agent: false, headers: { 'content-type': 'application/json', 'content-encoding': 'gzip', 'content-length': gz.length } }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) as { reason: string; message: string } }));
    });
    req.on('error', reject);
    req.end(gz);
  });
  assert.equal(r.status, 400);
  assert.equal(r.json.reason, 'ADM_ERR_READ');
  assert.equal(r.json.message, 'content-encoding is not supported: send the review uncompressed');
  assert.equal(sink.events.length, 0);
});

test('the health listener answers 404 for unknown paths (trailing slash included) and 405 with Allow for other methods', async (t) => {
  const srv = await startHealthServer('127.0.0.1:0', createMetricsRegistry());
  t.after(() => srv.close());
  const base = `http://127.0.0.1:${srv.port}`;
  assert.equal((await fetch(`${base}/healthz/`)).status, 404);
  assert.equal((await fetch(`${base}/HEALTHZ`)).status, 404);
  assert.equal((await fetch(`${base}/healthz?x=1`)).status, 200);
  const put = await fetch(`${base}/metrics`, { method: 'PUT' });
  assert.equal(put.status, 405);
  assert.equal(put.headers.get('allow'), 'GET, HEAD');
  assert.equal((await fetch(`${base}/readyz`, { method: 'HEAD' })).status, 200);
});
