import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { connect as tlsConnect } from 'node:tls';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { createCA, issueCert } from '../../certs/generate.ts';
import { CERT_FILES } from '../../certs/rotation.ts';
import { REPO_ROOT } from '../harness/harness.ts';
import { harness, kubectl, productEnv, run } from '../support/env.ts';

/**
 * Ends a `kubetrail start` left running by a failed test: SIGTERM first, so it stops the local control plane
 * it started (SIGKILL would orphan etcd and kube-apiserver), SIGKILL only if it has not exited in 30 s.
 */
async function stopStart(child: ReturnType<typeof spawn>, exited: Promise<unknown>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  await exited;
  clearTimeout(timer);
}

for (const flag of ['--help', '-h']) {
  test(`kubetrail start ${flag} prints its usage, exits 0 and starts nothing`, async () => {
    const r = await run(process.execPath, [path.join(REPO_ROOT, 'cli', 'main.ts'), 'start', flag], undefined, { env: productEnv(), timeoutMs: 30_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^usage: kubetrail start \[--config FILE\] \[--kubeconfig FILE\] \[--context NAME\] \[--local\]\n/);
    assert.equal(r.stderr, '');
  });
}

// `kubetrail start` with no reachable kube context: it must start a local control plane,
// register the webhooks, and hand a newcomer an agent kubeconfig that shows kubetrail working.
test('kubetrail start with no kube context runs a local control plane where the starter pack denies a privileged pod and stamps an admitted deployment', async (t) => {
  const { env, child, exited, out: stdout, err: stderr } = startKubetrail(t, '', 'kt-start-');

  const deadline = Date.now() + 120_000;
  while (!/agent kubeconfig: (\S+)/.test(stdout()) && child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  const m = /agent kubeconfig: (\S+)/.exec(stdout());
  assert.ok(m, `start did not print an agent kubeconfig\nstdout:\n${stdout()}\nstderr:\n${stderr().slice(-3000)}`);
  assert.match(stdout(), /starting a local control plane/);
  const agent = m[1] as string;

  // The webhook configurations are registered asynchronously in the API server; retry briefly.
  let denied = await kubectl(agent, ['run', 'priv', '--image=nginx', '--privileged']);
  for (let i = 0; i < 20 && denied.status === 0; i++) {
    await kubectl(agent, ['delete', 'pod', 'priv', '--ignore-not-found']);
    await new Promise((r) => setTimeout(r, 500));
    denied = await kubectl(agent, ['run', 'priv', '--image=nginx', '--privileged']);
  }
  assert.notEqual(denied.status, 0, 'a privileged pod was admitted');
  assert.match(denied.stderr, /privileged/);

  const created = await kubectl(agent, ['create', 'deployment', 'web', '--image=nginx']);
  assert.equal(created.status, 0, created.stderr);
  const annotations = await kubectl(agent, ['get', 'deployment', 'web', '-o', 'jsonpath={.metadata.annotations}']);
  assert.equal(annotations.status, 0, annotations.stderr);
  const stamped = JSON.parse(annotations.stdout) as Record<string, string>;
  assert.equal(stamped['kubetrail.io/last-modified-by'], 'agent-ci');
  assert.match(stamped['kubetrail.io/event'] ?? '', /^[0-9a-f-]{36}$/);
  assert.match(stamped['kubetrail.io/session'] ?? '', /^[0-9a-f-]{36}$/, 'the gateway session did not reach the webhook');

  const events = await run(process.execPath, [path.join(REPO_ROOT, 'cli', 'main.ts'), 'events', '-o', 'json'], undefined, { env });
  assert.equal(events.status, 0, events.stderr);
  const list = events.stdout.trim().split('\n').map((l) => JSON.parse(l) as { type: string; id: string; actor?: { username: string }; target?: { resource?: string; name?: string } });
  const review = list.find((e) => e.type === 'admission.review' && e.id === stamped['kubetrail.io/event']);
  assert.ok(review, 'the stamped event id is not in the local log');
  assert.equal(review.actor?.username, 'agent-ci');
  assert.ok(list.some((e) => e.type === 'api.request' && e.target?.resource === 'deployments' && e.actor?.username === 'agent-ci'));

  child.kill('SIGTERM');
  assert.equal(await exited, 0, `start did not exit cleanly on SIGTERM\n${stderr().slice(-2000)}`);
});

/** SHA-256 fingerprint of the certificate a TLS listener on loopback serves now. */
/** Runs `kubetrail start` on loopback ports with a fresh data dir and `kubeconfig`; stopped and cleaned up after the test. */
function startKubetrail(t: TestContext, kubeconfig: string, prefix: string): { dataDir: string; env: NodeJS.ProcessEnv; child: ReturnType<typeof spawn>; exited: Promise<number | null>; out: () => string; err: () => string } {
  const dataDir = mkdtempSync(path.join(tmpdir(), prefix));
  const env = productEnv({
    KUBECONFIG: kubeconfig === '' ? path.join(dataDir, 'no-such-kubeconfig') : kubeconfig,
    KUBETRAIL_DATA_DIR: dataDir,
    KUBETRAIL_WEBHOOK_LISTEN: '127.0.0.1:0',
    KUBETRAIL_WEBHOOK_HEALTH: '127.0.0.1:0',
    KUBETRAIL_PROXY_LISTEN: '127.0.0.1:0',
    KUBETRAIL_PROXY_HEALTH: '127.0.0.1:0',
    KUBETRAIL_LOG_LEVEL: 'warn',
  });
  const child = spawn(process.execPath, [path.join(REPO_ROOT, 'cli', 'main.ts'), 'start'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  t.after(async () => {
    await stopStart(child, exited);
    rmSync(dataDir, { recursive: true, force: true });
  });
  return { dataDir, env, child, exited, out: () => out, err: () => err };
}

function servedFingerprint(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false }, () => {
      const fp = s.getPeerCertificate().fingerprint256;
      s.destroy();
      resolve(fp);
    });
    s.once('error', reject);
  });
}

// Both listeners of `kubetrail start` watch the dev certificate files: a pair written in their place
// (e.g. by `kubetrail certs`) is served to new connections without a restart. The upstream here is a
// reachable cluster (the harness's), so no local control plane is started.
test('kubetrail start serves a replaced certificate pair on the webhook and the gateway without a restart', async (t) => {
  const env0 = harness();
  const { dataDir, child, exited, out: stdout, err: stderr } = startKubetrail(t, env0.ADMIN_KUBECONFIG, 'kt-start-reload-');

  const ready = /webhook\s+https:\/\/127\.0\.0\.1:(\d+)[^]*gateway\s+https:\/\/127\.0\.0\.1:(\d+)/;
  const deadline = Date.now() + 60_000;
  while (!ready.test(stdout()) && child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  const m = ready.exec(stdout());
  assert.ok(m, `start did not print its listeners\nstdout:\n${stdout()}\nstderr:\n${stderr().slice(-3000)}`);
  assert.doesNotMatch(stdout(), /starting a local control plane/);
  const ports = { webhook: Number(m[1]), gateway: Number(m[2]) };

  const certDir = path.join(dataDir, 'dev-certs');
  const first = new X509Certificate(readFileSync(path.join(certDir, CERT_FILES.cert))).fingerprint256;
  assert.equal(await servedFingerprint(ports.webhook), first);
  assert.equal(await servedFingerprint(ports.gateway), first);

  // A new pair, renamed into place (key first, so a reload between the two renames sees a mismatch and keeps the old pair).
  const ca = createCA({ commonName: 'kt-start-reload-ca' });
  const next = issueCert(ca, { commonName: 'kubetrail-dev', ips: ['127.0.0.1'], dnsNames: ['localhost'] });
  const fresh = new X509Certificate(next.certPem).fingerprint256;
  assert.notEqual(fresh, first);
  writeFileSync(path.join(certDir, 'tls.key.next'), next.keyPem, { mode: 0o600 });
  writeFileSync(path.join(certDir, 'tls.crt.next'), next.certPem);
  renameSync(path.join(certDir, 'tls.key.next'), path.join(certDir, CERT_FILES.key));
  renameSync(path.join(certDir, 'tls.crt.next'), path.join(certDir, CERT_FILES.cert));

  const served = { webhook: first, gateway: first };
  const until = Date.now() + 15_000;
  while ((served.webhook !== fresh || served.gateway !== fresh) && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 200));
    served.webhook = await servedFingerprint(ports.webhook);
    served.gateway = await servedFingerprint(ports.gateway);
  }
  assert.equal(served.webhook, fresh, 'the webhook still serves the old certificate');
  assert.equal(served.gateway, fresh, 'the gateway still serves the old certificate');

  child.kill('SIGTERM');
  assert.equal(await exited, 0, `start did not exit cleanly on SIGTERM\n${stderr().slice(-2000)}`);
});
