/**
 * The commands as a user runs them: `kubetrail proxy --config F` as its own
 * process (event pipeline = the local log), `kubetrail kubeconfig` writing the
 * caller's kubeconfig, the machine's kubectl through it, and `kubetrail
 * events` reading the recorded api.request back after a graceful SIGTERM.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { createCA, issueCert } from '../../certs/generate.ts';
import { REPO_ROOT } from '../harness/harness.ts';
import { harness, kubectl, run } from '../support/env.ts';
import { createNamespace, serviceAccountWithToken, uniq } from './support.ts';

const CLI = path.join(REPO_ROOT, 'cli', 'main.ts');
// The commands read KUBETRAIL_* as configuration: give them only what a user would have set (here, nothing).
const CLEAN_ENV = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('KUBETRAIL_')));
const dir = mkdtempSync(path.join(tmpdir(), 'kubetrail-proxy-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('kubetrail kubeconfig refuses a usage error with a clear message', async () => {
  const r = await run(process.execPath, [CLI, 'kubeconfig', '--server', 'http://insecure:80', '--token-file', '/dev/null'], undefined, { env: CLEAN_ENV });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /--server must be an https:\/\/ URL/);
  const both = await run(process.execPath, [CLI, 'kubeconfig', '--server', 'https://x:1'], undefined, { env: CLEAN_ENV });
  assert.equal(both.status, 1);
  assert.match(both.stderr, /exactly one of --token-file or --exec-plugin/);
});

test('kubetrail proxy serves kubectl through a kubeconfig from kubetrail kubeconfig, and kubetrail events shows the requests', async (t) => {
  const env = harness();
  const ns = `gw-cli-${uniq()}`;
  const dropNs = await createNamespace(ns);
  t.after(dropNs);
  const token = await serviceAccountWithToken(ns, 'cli');
  const ca = createCA({ commonName: 'cli-test-ca' });
  const serving = issueCert(ca, { commonName: 'gateway', ips: ['127.0.0.1'] });
  writeFileSync(path.join(dir, 'ca.crt'), ca.certPem);
  writeFileSync(path.join(dir, 'tls.crt'), serving.certPem);
  writeFileSync(path.join(dir, 'tls.key'), serving.keyPem, { mode: 0o600 });
  writeFileSync(path.join(dir, 'token'), token, { mode: 0o600 });
  writeFileSync(
    path.join(dir, 'kubetrail.yaml'),
    `cluster: cli-test
instance: cli-test-proxy
dataDir: ${path.join(dir, 'data')}
policies: {dir: ${path.join(dir, 'no-policies')}}
proxy:
  listen: 127.0.0.1:0
  health: 127.0.0.1:0
  tls: {certFile: tls.crt, keyFile: tls.key}
  upstream: {kubeconfig: ${env.ADMIN_KUBECONFIG}}
`,
  );
  const child = spawn(process.execPath, [CLI, 'proxy', '--config', path.join(dir, 'kubetrail.yaml')], { stdio: ['ignore', 'pipe', 'pipe'], env: CLEAN_ENV });
  let out = '';
  let err = '';
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`proxy did not start: ${out} ${err}`)), 60_000);
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /"msg":"kubetrail proxy ready"/.test(out) ? /"url":"(https:\/\/[^"]+)"/.exec(out) : null;
      if (m) {
        clearTimeout(timer);
        resolve(m[1] as string);
      }
    });
    child.once('exit', (code) => reject(new Error(`proxy exited with ${code}: ${out} ${err}`)));
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  try {
    const kcFile = path.join(dir, 'agent.kubeconfig');
    const w = await run(process.execPath, [CLI, 'kubeconfig', '--server', url, '--ca-file', path.join(dir, 'ca.crt'), '--token-file', path.join(dir, 'token'), '--namespace', ns, '--out', kcFile], undefined, { env: CLEAN_ENV });
    assert.equal(w.status, 0, w.stderr);
    const cm = `via-cli-${uniq()}`;
    const created = await kubectl(kcFile, ['create', 'configmap', cm, '--from-literal=k=v']);
    assert.equal(created.status, 0, created.stderr);
    const got = await kubectl(kcFile, ['get', 'configmap', cm, '-o', 'name']);
    assert.equal(got.stdout.trim(), `configmap/${cm}`);
    assert.ok(!readFileSync(kcFile, 'utf8').includes(token), 'the kubeconfig points at the token file, it does not copy the token');
  } finally {
    child.kill('SIGTERM');
  }
  assert.equal(await exited, 0, `graceful shutdown; stderr: ${err}`);
  assert.ok(!out.includes(token), 'the token never appears in the logs');

  const ev = await run(process.execPath, [CLI, 'events', '--config', path.join(dir, 'kubetrail.yaml'), '--type', 'api.request', '-o', 'json'], undefined, { env: CLEAN_ENV });
  assert.equal(ev.status, 0, ev.stderr);
  const events = ev.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { actor?: { username: string }; body: { verb: string; status: number }; target?: { namespace?: string } });
  const creates = events.filter((e) => e.body.verb === 'create' && e.target?.namespace === ns);
  assert.equal(creates.length, 1, ev.stdout);
  assert.equal(creates[0]?.actor?.username, `system:serviceaccount:${ns}:cli`);
  assert.equal(creates[0]?.body.status, 201);
});
