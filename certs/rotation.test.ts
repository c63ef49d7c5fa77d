import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { CertError } from './errors.ts';
import { CERT_DEFAULTS, CERT_FILES, ensureCertificates, planCertificates, type CertRequest, type CertState } from './rotation.ts';
import { createCertificateAuthority, splitPemBundle } from './x509.ts';

const DAY = 24 * 3600 * 1000;
const T0 = new Date('2030-01-01T00:00:00Z');
const EMPTY: CertState = { caBundlePem: undefined, caKeyPem: undefined, certPem: undefined, keyPem: undefined };

function req(over: Partial<CertRequest> = {}): CertRequest {
  return {
    ...CERT_DEFAULTS,
    dnsNames: ['kubetrail-webhook.kubetrail.svc'],
    ips: ['127.0.0.1'],
    rotateCA: false,
    dropOldCAs: false,
    force: false,
    now: T0,
    ...over,
  };
}

function fingerprints(bundle: string): string[] {
  return splitPemBundle(bundle).map((p) => new X509Certificate(p).fingerprint256);
}

function actionsOf(plan: { actions: readonly { action: string }[] }): string[] {
  return plan.actions.map((a) => a.action);
}

test('an empty directory gets a CA and a serving certificate signed by it', () => {
  const plan = planCertificates(EMPTY, req());
  assert.deepEqual(actionsOf(plan), ['ca-created', 'cert-issued']);
  assert.equal(plan.changed, true);
  assert.equal(splitPemBundle(plan.state.caBundlePem).length, 1);
  assert.equal(new X509Certificate(plan.state.certPem).verify(new X509Certificate(plan.state.caBundlePem).publicKey), true);
});

test('a second run with the same request changes nothing', () => {
  const first = planCertificates(EMPTY, req());
  const second = planCertificates(first.state, req({ now: new Date(T0.getTime() + 10 * DAY) }));
  assert.deepEqual(actionsOf(second), ['ca-kept', 'cert-kept']);
  assert.equal(second.changed, false);
  assert.deepEqual(second.state, first.state);
});

const renewals: { name: string; over: Partial<CertRequest>; reason: RegExp }[] = [
  { name: 'inside the renewal window', over: { now: new Date(T0.getTime() + (CERT_DEFAULTS.validityDays - 10) * DAY) }, reason: /within 30 days/ },
  { name: 'when a DNS name is added', over: { dnsNames: ['kubetrail-webhook.kubetrail.svc', 'kubetrail-proxy.kubetrail.svc'] }, reason: /DNS names or IP/ },
  { name: 'when an IP is dropped', over: { ips: [] }, reason: /DNS names or IP/ },
  { name: 'when the key type changes', over: { keyType: 'rsa-2048' }, reason: /key type/ },
  { name: 'when forced', over: { force: true }, reason: /forced/ },
];
for (const c of renewals) {
  test(`the serving certificate is renewed ${c.name}, and the CA is kept`, () => {
    const first = planCertificates(EMPTY, req());
    const plan = planCertificates(first.state, req(c.over));
    assert.deepEqual(actionsOf(plan), ['ca-kept', 'cert-renewed']);
    assert.match(plan.actions[1]?.reason ?? '', c.reason);
    assert.notEqual(plan.state.certPem, first.state.certPem);
    assert.notEqual(plan.state.keyPem, first.state.keyPem);
    assert.equal(plan.state.caBundlePem, first.state.caBundlePem);
  });
}

test('a CA near its expiry is rotated: new CA first, old CA still in the bundle, serving cert from the new CA', () => {
  const first = planCertificates(EMPTY, req());
  const later = new Date(T0.getTime() + (CERT_DEFAULTS.caValidityDays - 100) * DAY);
  const plan = planCertificates(first.state, req({ now: later }));
  assert.deepEqual(actionsOf(plan), ['ca-rotated', 'cert-renewed']);
  const [newFp, oldFp, ...rest] = fingerprints(plan.state.caBundlePem);
  assert.equal(rest.length, 0);
  assert.equal(oldFp, fingerprints(first.state.caBundlePem)[0]);
  assert.notEqual(newFp, oldFp);
  const newCA = new X509Certificate(splitPemBundle(plan.state.caBundlePem)[0] as string);
  assert.equal(new X509Certificate(plan.state.certPem).verify(newCA.publicKey), true);
  // The certificate still served before the rollover completes is trusted by the new bundle too.
  const oldCA = new X509Certificate(splitPemBundle(plan.state.caBundlePem)[1] as string);
  assert.equal(new X509Certificate(first.state.certPem).verify(oldCA.publicKey), true);
});

test('--drop-old-ca ends a rollover: only the current CA remains', () => {
  const first = planCertificates(EMPTY, req());
  const rotated = planCertificates(first.state, req({ rotateCA: true }));
  assert.equal(splitPemBundle(rotated.state.caBundlePem).length, 2);
  const dropped = planCertificates(rotated.state, req({ dropOldCAs: true }));
  assert.deepEqual(actionsOf(dropped), ['ca-kept', 'old-ca-dropped', 'cert-kept']);
  assert.deepEqual(fingerprints(dropped.state.caBundlePem), fingerprints(rotated.state.caBundlePem).slice(0, 1));
});

test('an old CA leaves the bundle by itself once it has expired', () => {
  const first = planCertificates(EMPTY, req({ caValidityDays: 500 }));
  const rotated = planCertificates(first.state, req({ now: new Date(T0.getTime() + 200 * DAY), caValidityDays: 5000 }));
  assert.equal(splitPemBundle(rotated.state.caBundlePem).length, 2);
  const afterExpiry = planCertificates(rotated.state, req({ now: new Date(T0.getTime() + 501 * DAY), caValidityDays: 5000 }));
  assert.ok(actionsOf(afterExpiry).includes('old-ca-dropped'));
  assert.equal(splitPemBundle(afterExpiry.state.caBundlePem).length, 1);
});

const brokenStates: { name: string; make: (good: CertPlan['state']) => CertState; code: CertError['code'] }[] = [
  { name: 'a bundle without its CA key', make: (g) => ({ ...g, caKeyPem: undefined }), code: 'CERT_ERR_STATE' },
  { name: 'a CA key without a bundle', make: (g) => ({ ...g, caBundlePem: undefined }), code: 'CERT_ERR_STATE' },
  { name: 'a CA key that belongs to another CA', make: (g) => ({ ...g, caKeyPem: createCertificateAuthority().keyPem }), code: 'CERT_ERR_STATE' },
  { name: 'a bundle that holds no certificate', make: (g) => ({ ...g, caBundlePem: 'not a pem\n' }), code: 'CERT_ERR_STATE' },
];
type CertPlan = ReturnType<typeof planCertificates>;
for (const c of brokenStates) {
  test(`${c.name} is refused with ${c.code}, not overwritten`, () => {
    const good = planCertificates(EMPTY, req()).state;
    assert.throws(() => planCertificates(c.make(good), req()), (e: unknown) => e instanceof CertError && e.code === c.code);
  });
}

test('a serving key that does not match its certificate is repaired by re-issuing', () => {
  const good = planCertificates(EMPTY, req()).state;
  const other = planCertificates(EMPTY, req()).state;
  const plan = planCertificates({ ...good, keyPem: other.keyPem }, req());
  assert.deepEqual(actionsOf(plan), ['ca-kept', 'cert-renewed']);
  assert.match(plan.actions[1]?.reason ?? '', /not the key/);
});

test('a lost CA key with --rotate-ca starts a new CA and keeps the old one in the bundle', () => {
  const good = planCertificates(EMPTY, req()).state;
  const plan = planCertificates({ ...good, caKeyPem: undefined }, req({ rotateCA: true }));
  assert.deepEqual(actionsOf(plan), ['ca-rotated', 'cert-renewed']);
  assert.equal(fingerprints(plan.state.caBundlePem)[1], fingerprints(good.caBundlePem)[0]);
});

test('ensureCertificates writes the Secret layout with private keys readable by the owner only, and is idempotent', (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'kt-certs-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const first = ensureCertificates(dir, req({ now: new Date() }));
  assert.equal(first.changed, true);
  for (const f of Object.values(CERT_FILES)) assert.ok(statSync(path.join(dir, f)).isFile(), f);
  assert.equal(statSync(path.join(dir, CERT_FILES.key)).mode & 0o077, 0);
  assert.equal(statSync(path.join(dir, CERT_FILES.caKey)).mode & 0o077, 0);
  assert.equal(Buffer.from(first.caBundle, 'base64').toString('utf8'), readFileSync(path.join(dir, CERT_FILES.caBundle), 'utf8'));
  const before = readFileSync(path.join(dir, CERT_FILES.cert), 'utf8');
  const second = ensureCertificates(dir, req({ now: new Date() }));
  assert.equal(second.changed, false);
  assert.equal(readFileSync(path.join(dir, CERT_FILES.cert), 'utf8'), before);
});

test('a corrupt file in the directory is reported, and the other files are left as they were', (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'kt-certs-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  ensureCertificates(dir, req({ now: new Date() }));
  writeFileSync(path.join(dir, CERT_FILES.cert), '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
  const caBefore = readFileSync(path.join(dir, CERT_FILES.caBundle), 'utf8');
  assert.throws(() => ensureCertificates(dir, req({ now: new Date() })), (e: unknown) => e instanceof CertError && e.code === 'CERT_ERR_STATE');
  assert.equal(readFileSync(path.join(dir, CERT_FILES.caBundle), 'utf8'), caBefore);
});
