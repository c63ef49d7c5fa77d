/**
 * Self-managed webhook certificates against the real API server: two
 * webhook replicas elect one leader on a Lease, the leader writes the Secret
 * and the caBundle of a webhook configuration, the API server calls the
 * webhook (registered by URL on loopback) with that certificate, a CA
 * rollover keeps every review succeeding, and a lost leader hands over.
 *
 * The clock of the replicas is injected (real time plus an offset the test
 * advances) for the Lease expiry and the rollover grace; certificates are
 * stamped with it too, so each advance stays below x509.ts's five-minute
 * backdating and the real API server never sees a not-yet-valid certificate.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { connect } from 'node:tls';
import { after, before, test } from 'node:test';
import { Registry } from 'prom-client';
import { loadConfig, type Config } from '../../core/config.ts';
import { KubeClient } from '../../core/kube-client.ts';
import { createLogger } from '../../core/logger.ts';
import { MemorySink } from '../../core/sinks/memory-sink.ts';
import { SelfManagedCertificates, decodeTlsSecret, type SelfManagedTlsSettings } from '../../certs/self-managed.ts';
import { startSelfManagedTls, type SelfManagedTls } from '../../certs/self-managed-runtime.ts';
import { splitPemBundle } from '../../certs/x509.ts';
import { startWebhook, type Webhook } from '../../webhook/main.ts';
import { harness, kubectl, productEnv } from '../support/env.ts';
import { REPO, deleteNamespace, suffix } from './support.ts';

const sfx = suffix();
const ns = `kt-sm-${sfx}`;
const vwc = `kt-sm-${sfx}`;
const scratch = mkdtempSync(path.join(tmpdir(), 'kt-sm-'));
const log = createLogger({ level: 'silent' });
let offsetMs = 0;
const now = (): Date => new Date(Date.now() + offsetMs);
let kubeconfig = '';
let config: Config;
let a: SelfManagedTls;
let b: SelfManagedTls;
let webhook: Webhook | undefined;
const sink = new MemorySink();
let client: KubeClient;

function settings(cfg: Config): SelfManagedTlsSettings {
  const tls = cfg.selfManaged?.tls;
  assert.ok(tls);
  return { namespace: ns, ...tls };
}

async function secret(): Promise<Record<string, string>> {
  const s = await client.get<{ metadata: { name: string }; data?: Record<string, string> }>(`/api/v1/namespaces/${ns}/secrets/kubetrail-tls`);
  assert.ok(s?.data, 'the Secret exists');
  return s.data;
}

async function caBundleOfConfig(): Promise<string | undefined> {
  const c = await client.get<{ metadata: { name: string }; webhooks: { clientConfig: { caBundle?: string } }[] }>(`/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/${vwc}`);
  return c?.webhooks[0]?.clientConfig.caBundle;
}

/** The certificate the webhook serves right now. */
function servedCert(port: number): Promise<X509Certificate> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      const c = s.getPeerX509Certificate();
      s.end();
      if (c) resolve(c);
      else reject(new Error('no peer certificate'));
    });
    s.on('error', reject);
  });
}

let writes = 0;
let admitted = 0;
/** One write the API server must send to the webhook (a ConfigMap in the test namespace). */
async function write(): Promise<void> {
  const name = `cm-${writes++}`;
  const r = await kubectl(kubeconfig, ['-n', ns, 'create', 'configmap', name, '--from-literal=k=v']);
  assert.equal(r.status, 0, `write ${name} refused: ${r.stderr}`);
  admitted++;
}

before(async () => {
  const env = harness();
  kubeconfig = env.ADMIN_KUBECONFIG;
  client = new KubeClient({ kubeconfig });
  assert.equal((await kubectl(kubeconfig, ['create', 'namespace', ns])).status, 0);
  config = loadConfig({
    env: {},
    document: {
      dataDir: path.join(scratch, 'data'),
      policies: { dir: path.join(scratch, 'policies') },
      selfManaged: {
        namespace: ns,
        kubeconfig,
        tls: {
          dnsNames: ['localhost'],
          ipAddresses: ['127.0.0.1'],
          validatingWebhookConfigurations: [vwc],
          mutatingWebhookConfigurations: [],
          lease: 'kubetrail-webhook-certificates',
          caValidityDays: 2,
          caRenewBeforeDays: 1,
          certValidityDays: 1,
          certRenewBeforeDays: 0.5,
          rolloverGraceSeconds: 60,
          pollIntervalSeconds: 10,
        },
      },
    },
  });
  mkdirSync(path.join(scratch, 'policies'), { recursive: true });
  a = await startSelfManagedTls({ config, log, role: 'webhook', now, manual: true, identity: 'replica-a', dir: path.join(scratch, 'a') });
  b = await startSelfManagedTls({ config, log, role: 'webhook', now, manual: true, identity: 'replica-b', dir: path.join(scratch, 'b') });
});

after(async () => {
  await webhook?.close();
  await a?.close();
  await b?.close();
  await kubectl(kubeconfig, ['delete', 'validatingwebhookconfiguration', vwc, '--ignore-not-found']);
  await deleteNamespace(kubeconfig, ns);
  rmSync(scratch, { recursive: true, force: true });
});

test('two replicas racing for the Lease elect exactly one leader', async () => {
  await Promise.all([a.elector?.step(), b.elector?.step()]);
  await Promise.all([a.elector?.step(), b.elector?.step()]);
  assert.equal([a, b].filter((r) => r.elector?.isLeader()).length, 1);
});

test('the leader writes the Secret and the caBundle, and the API server calls the webhook with that certificate', async () => {
  // The configuration exists before the certificate (as after `kubectl apply -k`), without a caBundle.
  const cfg = {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'ValidatingWebhookConfiguration',
    metadata: { name: vwc },
    webhooks: [
      {
        name: 'validate.kubetrail.io',
        clientConfig: { url: 'https://127.0.0.1:1/validate' },
        rules: [{ apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['configmaps'] }],
        namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': ns } },
        failurePolicy: 'Fail',
        sideEffects: 'None',
        admissionReviewVersions: ['v1'],
        timeoutSeconds: 10,
      },
    ],
  };
  await client.create('/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations', cfg);
  const leader = a.elector?.isLeader() ? a : b;
  await leader.certificates?.reconcile();
  const data = await secret();
  for (const k of ['tls.crt', 'tls.key', 'ca.crt', 'ca-signing.crt', 'ca-signing.key']) assert.ok(data[k], `Secret has ${k}`);
  assert.equal(await caBundleOfConfig(), data['ca.crt']);

  assert.equal(await a.watcher.poll(), true);
  assert.equal(await b.watcher.poll(), true);
  webhook = await startWebhook({ config, log, sink, registry: new Registry(), listen: '127.0.0.1:0', tls: a.files });
  a.follow(() => webhook?.server.reloadTls());
  const live = await client.get<typeof cfg & { metadata: { name: string } }>(`/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/${vwc}`);
  assert.ok(live);
  live.webhooks[0]!.clientConfig.url = `https://127.0.0.1:${webhook.port}/validate`;
  await client.replace(`/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/${vwc}`, live);
  await write();
  assert.ok(sink.events.some((e) => JSON.stringify(e).includes('cm-0')), 'the webhook recorded the review of cm-0');
});

test('a CA rollover keeps every review succeeding: next CA in the bundle first, serving certificate switched after the grace', async () => {
  assert.ok(webhook);
  const port = webhook.port;
  const first = decodeTlsSecret(await secret());
  assert.ok(first);
  const oldCa = new X509Certificate(first.signing.certPem);
  // Settings as after an operator raised caRenewBeforeDays past the CA's remaining life: rollover due now.
  const leaderCfg = { ...settings(config), caValidityDays: 10, caRenewBeforeDays: 5 };
  const manager = new SelfManagedCertificates({ client, settings: leaderCfg, log, now });
  let failures: unknown[] = [];
  let stop = false;
  const writer = (async () => {
    while (!stop) {
      try {
        await write();
      } catch (err) {
        failures.push(err);
      }
    }
  })();
  const writesAfter = async (n: number): Promise<void> => {
    const target = admitted + n;
    while (admitted < target && failures.length === 0) await new Promise((r) => setImmediate(r));
  };
  try {
    await writesAfter(2);
    await manager.reconcile(); // phase 1: next CA added and published
    const mid = decodeTlsSecret(await secret());
    assert.ok(mid?.next, 'a next CA is being rolled in');
    assert.equal(splitPemBundle(mid.bundlePem).length, 2, 'old and next CA are both in the bundle');
    assert.equal(await caBundleOfConfig(), Buffer.from(mid.bundlePem).toString('base64'));
    assert.equal(mid.serving.certPem, first.serving.certPem, 'the serving certificate is not switched before the grace');
    await manager.reconcile(); // within the grace: nothing switches
    assert.equal(decodeTlsSecret(await secret())?.serving.certPem, first.serving.certPem);
    await writesAfter(3);

    offsetMs += 61_000; // past rolloverGraceSeconds
    await manager.reconcile(); // phase 2: serving certificate from the next CA
    const after2 = decodeTlsSecret(await secret());
    assert.ok(after2);
    assert.equal(after2.next, undefined);
    assert.notEqual(after2.serving.certPem, first.serving.certPem);
    const newCa = new X509Certificate(after2.signing.certPem);
    assert.notEqual(newCa.fingerprint256, oldCa.fingerprint256);
    assert.equal(splitPemBundle(after2.bundlePem).length, 2, 'the old CA stays trusted until it expires');

    assert.equal(await a.watcher.poll(), true);
    webhook.server.reloadTls();
    // Wait for the listener to serve the new pair (the reload is synchronous; this also proves it).
    let served = await servedCert(port);
    while (!served.checkIssued(newCa)) served = await servedCert(port);
    await writesAfter(3);
  } finally {
    stop = true;
    await writer;
  }
  assert.deepEqual(failures, [], 'no write was refused during the rollover');
  failures = [];
});

test('a leader that stops renewing loses the Lease to the other replica, which then keeps the certificates', async () => {
  const leader = a.elector?.isLeader() ? a : b;
  const other = leader === a ? b : a;
  await other.elector?.step(); // observes the current holder
  assert.equal(other.elector?.isLeader(), false);
  offsetMs += 16_000; // past leaseDurationSeconds (15) without the leader renewing: it crashed
  await other.elector?.step();
  assert.equal(other.elector?.isLeader(), true, 'the other replica took over');
  await leader.elector?.step();
  assert.equal(leader.elector?.isLeader(), false, 'the old leader sees it lost the Lease');
  // The new leader reconciles from what is stored: nothing is regenerated.
  const before = (await secret())['ca-signing.crt'];
  await other.certificates?.reconcile();
  assert.equal((await secret())['ca-signing.crt'], before);
  // A leader that stops cleanly releases the Lease: the former leader takes it at once.
  await other.elector?.stop();
  await leader.elector?.step();
  assert.equal(leader.elector?.isLeader(), true);
});

test('kubetrail webhook with selfManaged and no certificate or key file starts, creates its Secrets and serves', async () => {
  const smNs = `kt-smcli-${sfx}`;
  assert.equal((await kubectl(kubeconfig, ['create', 'namespace', smNs])).status, 0);
  const dir = path.join(scratch, 'cli');
  mkdirSync(path.join(dir, 'policies'), { recursive: true });
  const file = path.join(dir, 'config.yaml');
  writeFileSync(
    file,
    JSON.stringify({
      dataDir: path.join(dir, 'data'),
      policies: { dir: path.join(dir, 'policies') },
      webhook: { listen: '127.0.0.1:0', health: '127.0.0.1:0' },
      selfManaged: { namespace: smNs, kubeconfig, tls: { dnsNames: ['localhost'], validatingWebhookConfigurations: [], mutatingWebhookConfigurations: [] }, signingKey: {} },
    }),
  );
  const child = spawn(process.execPath, [path.join(REPO, 'cli', 'main.ts'), 'webhook', '--config', file], { env: productEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  try {
    const ready = await Promise.race([
      new Promise<true>((resolve) => {
        const check = (): void => {
          if (out.includes('kubetrail webhook ready')) resolve(true);
        };
        child.stdout.on('data', check);
        check();
      }),
      exited.then((code) => `exited with ${code}:\n${out}`),
    ]);
    assert.equal(ready, true, String(ready));
    const secretsOut = await kubectl(kubeconfig, ['-n', smNs, 'get', 'secret,configmap', '-o', 'name']);
    for (const n of ['secret/kubetrail-tls', 'secret/kubetrail-signing-key', 'configmap/kubetrail-signing-public-key']) assert.match(secretsOut.stdout, new RegExp(n));
  } finally {
    child.kill('SIGTERM');
    await exited;
    await deleteNamespace(kubeconfig, smNs);
  }
});
