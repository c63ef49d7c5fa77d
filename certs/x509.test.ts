import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey, createPublicKey, sign, verify } from 'node:crypto';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { CertError } from './errors.ts';
import { KEY_TYPES, createCertificateAuthority, issueServingCertificate, keyTypeOf, sansOf, splitPemBundle, subjectKeyIdentifier } from './x509.ts';

function opensslVerify(caPem: string, leafPem: string): Promise<{ code: number | null; out: string }> {
  // openssl is an independent X.509 implementation: if it verifies the chain, the DER we build is right.
  return new Promise((resolve) => {
    const dir = `${process.env['TMPDIR'] ?? '/tmp'}/kt-x509-${process.pid}-${Math.random().toString(36).slice(2)}`;
    const script = `set -e; mkdir -p ${dir}; cat > ${dir}/ca.pem <<'E1'\n${caPem}E1\ncat > ${dir}/leaf.pem <<'E2'\n${leafPem}E2\nopenssl verify -purpose sslserver -CAfile ${dir}/ca.pem ${dir}/leaf.pem; rm -rf ${dir}`;
    const c = spawn('bash', ['-c', script]);
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (out += d.toString()));
    c.on('close', (code) => resolve({ code, out }));
  });
}

for (const keyType of KEY_TYPES) {
  test(`a ${keyType} serving certificate is signed by its ${keyType} CA and carries the requested SANs`, async () => {
    const ca = createCertificateAuthority({ keyType });
    const leaf = issueServingCertificate(ca, { commonName: 'kubetrail', dnsNames: ['kubetrail-webhook.kubetrail.svc'], ips: ['127.0.0.1', '::1'], keyType });
    const caX = new X509Certificate(ca.certPem);
    const leafX = new X509Certificate(leaf.certPem);
    assert.equal(caX.ca, true);
    assert.equal(leafX.ca, false);
    assert.equal(caX.verify(caX.publicKey), true, 'CA is self-signed');
    assert.equal(leafX.checkIssued(caX), true);
    assert.equal(leafX.verify(caX.publicKey), true);
    assert.equal(keyTypeOf(leafX.publicKey), keyType);
    assert.equal(keyTypeOf(caX.publicKey), keyType);
    assert.deepEqual(sansOf(leafX), { dns: ['kubetrail-webhook.kubetrail.svc'], ips: ['7f000001', '00000000000000000000000000000001'] });
    assert.equal(leafX.checkHost('kubetrail-webhook.kubetrail.svc'), 'kubetrail-webhook.kubetrail.svc');
    assert.equal(leafX.checkIP('127.0.0.1'), '127.0.0.1');
    // The private key is the certificate's.
    const data = Buffer.from('proof of possession');
    assert.equal(verify('sha256', data, leafX.publicKey, sign('sha256', data, createPrivateKey(leaf.keyPem))), true);
    const r = await opensslVerify(ca.certPem, leaf.certPem);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /: OK/);
  });
}

test('the subject key identifier of the CA is the authority key identifier of what it issues', () => {
  const ca = createCertificateAuthority();
  const leaf = issueServingCertificate(ca, { commonName: 'x', dnsNames: ['x.y.svc'] });
  const ski = Buffer.from(subjectKeyIdentifier(createPublicKey(createPrivateKey(ca.keyPem))), 'binary').toString('hex');
  // Node prints keyid as colon-separated upper-case hex in the AKI line of toString(); compare on the DER instead.
  assert.ok(new X509Certificate(ca.certPem).raw.includes(Buffer.from(ski, 'hex')), 'CA carries its SKI');
  assert.ok(new X509Certificate(leaf.certPem).raw.includes(Buffer.from(ski, 'hex')), 'leaf carries the CA SKI as AKI');
});

test('a serving certificate never outlives its CA', () => {
  const now = new Date('2030-01-01T00:00:00Z');
  const ca = createCertificateAuthority({ validityDays: 10, now });
  const leaf = issueServingCertificate(ca, { commonName: 'x', dnsNames: ['x.y.svc'], validityDays: 365, now });
  assert.equal(new X509Certificate(leaf.certPem).validTo, new X509Certificate(ca.certPem).validTo);
});

const badInputs: { name: string; opts: { dnsNames?: string[]; ips?: string[] } }[] = [
  { name: 'no SAN at all', opts: {} },
  { name: 'an IP that is not one', opts: { ips: ['300.1.1.1'] } },
  { name: 'a DNS name with a space', opts: { dnsNames: ['bad name.svc'] } },
  { name: 'a DNS name with a trailing dot label error', opts: { dnsNames: ['-x.svc'] } },
];
for (const c of badInputs) {
  test(`issuing with ${c.name} is refused with CERT_ERR_ARGS`, () => {
    const ca = createCertificateAuthority();
    assert.throws(
      () => issueServingCertificate(ca, { commonName: 'x', ...c.opts }),
      (e: unknown) => e instanceof CertError && e.code === 'CERT_ERR_ARGS',
    );
  });
}

test('a PEM bundle splits into its certificates, in order', () => {
  const a = createCertificateAuthority({ commonName: 'first' });
  const b = createCertificateAuthority({ commonName: 'second' });
  const parts = splitPemBundle(`${a.certPem}garbage between\n${b.certPem}`);
  assert.equal(parts.length, 2);
  assert.match(new X509Certificate(parts[0] as string).subject, /CN=first/);
  assert.match(new X509Certificate(parts[1] as string).subject, /CN=second/);
});
