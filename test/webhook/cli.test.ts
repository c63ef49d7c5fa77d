/**
 * `kubetrail webhook` as a process: serves reviews, health, readiness and
 * metrics on their own listener, records into the local log (no Kafka
 * configured), exits 0 on SIGTERM, and refuses to start on a bad policy set.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { freePort } from '../harness/harness.ts';
import { run } from '../support/env.ts';
import { call, policiesDir, review, testPki } from './support.ts';

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'cli', 'main.ts');

function get(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

async function setup(): Promise<{ dir: string; config: string; port: number; health: number; pki: ReturnType<typeof testPki>; policies: string }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'kt-webhook-cli-'));
  const pki = testPki();
  const policies = policiesDir();
  const port = await freePort();
  const health = await freePort();
  const config = path.join(dir, 'kubetrail.yaml');
  writeFileSync(
    config,
    `cluster: cli-test
dataDir: ${JSON.stringify(path.join(dir, 'data'))}
log: {level: warn}
policies: {dir: ${JSON.stringify(policies)}}
webhook:
  listen: 127.0.0.1:${port}
  health: 127.0.0.1:${health}
  tls: {certFile: ${JSON.stringify(pki.certFile)}, keyFile: ${JSON.stringify(pki.keyFile)}}
`,
  );
  return { dir, config, port, health, pki, policies };
}

test('kubetrail webhook serves reviews, health, readiness and metrics, records to the local log, and exits 0 on SIGTERM', async (t) => {
  const s = await setup();
  t.after(() => {
    rmSync(s.dir, { recursive: true, force: true });
    rmSync(s.pki.dir, { recursive: true, force: true });
    rmSync(s.policies, { recursive: true, force: true });
  });
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('KUBETRAIL_')));
  const child = spawn(process.execPath, [MAIN, 'webhook', '--config', s.config], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  child.stdout.resume();
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.after(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let ready = { status: 0, body: '' };
  for (let i = 0; i < 200 && ready.status !== 200; i++) {
    await new Promise((r) => setTimeout(r, 100));
    ready = await get(`http://127.0.0.1:${s.health}/readyz`).catch(() => ({ status: 0, body: '' }));
    assert.equal(child.exitCode, null, `the webhook exited early: ${stderr}`);
  }
  assert.equal(ready.status, 200, ready.body);
  assert.equal((await get(`http://127.0.0.1:${s.health}/healthz`)).status, 200);

  const r = await call(`https://127.0.0.1:${s.port}/validate?timeout=10s`, s.pki.ca.certPem, JSON.stringify(review({ userInfo: { username: 'alice', groups: ['devs'] } })));
  assert.equal(r.status, 200);
  const eventId = r.json().response.auditAnnotations.event as string;
  assert.ok(eventId);
  const metrics = (await get(`http://127.0.0.1:${s.health}/metrics`)).body;
  assert.match(metrics, /kubetrail_webhook_reviews_total\{webhook="validate",operation="CREATE",allowed="true"\} 1/);
  assert.match(metrics, /kubetrail_policy_generation 1/);

  child.kill('SIGTERM');
  assert.equal(await exited, 0, stderr);
  const logDir = path.join(s.dir, 'data', 'log', 'webhook');
  const text = readdirSync(logDir)
    .filter((f) => f.endsWith('.ndjson'))
    .map((f) => readFileSync(path.join(logDir, f), 'utf8'))
    .join('');
  assert.ok(text.includes(eventId), 'the event is in the local log');
});

test('kubetrail webhook refuses to start on an invalid policy set, naming the file, document and field', async (t) => {
  const s = await setup();
  t.after(() => {
    rmSync(s.dir, { recursive: true, force: true });
    rmSync(s.pki.dir, { recursive: true, force: true });
    rmSync(s.policies, { recursive: true, force: true });
  });
  writeFileSync(path.join(s.policies, 'zz-bad.yaml'), 'apiVersion: kubetrail.io/v1alpha1\nkind: GuardrailPolicy\nmetadata: {name: bad}\nspec:\n  validations: [{expression: "object.spec.("}]\n');
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('KUBETRAIL_')));
  const r = await run(process.execPath, [MAIN, 'webhook', '--config', s.config], undefined, { env, timeoutMs: 30_000 });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /zz-bad\.yaml#0: spec\.validations\.0\.expression: does not parse/);
});

test('kubetrail webhook refuses a config without TLS or with a bad webhook.name before opening anything', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'kt-webhook-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const config = path.join(dir, 'kubetrail.yaml');
  writeFileSync(config, `dataDir: ${JSON.stringify(path.join(dir, 'data'))}\nwebhook: {name: "Not A Prefix"}\n`);
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('KUBETRAIL_')));
  const r = await run(process.execPath, [MAIN, 'webhook', '--config', config], undefined, { env, timeoutMs: 30_000 });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /webhook\.tls: certFile and keyFile are required/);
  assert.match(r.stderr, /webhook\.name: must be a DNS subdomain/);
  assert.deepEqual(readdirSync(dir), ['kubetrail.yaml'], 'no data dir was created');
});
