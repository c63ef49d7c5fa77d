import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { CertError } from '../certs/errors.ts';
import { CERT_DEFAULTS } from '../certs/rotation.ts';
import { parseCertsArgs } from './certs.ts';

const MAIN = path.join(path.dirname(fileURLToPath(import.meta.url)), 'main.ts');

test('flags become a request: comma lists and repeats merge, defaults fill the rest', () => {
  const now = new Date('2030-01-01T00:00:00Z');
  const { out, request, output } = parseCertsArgs(['--out', 'd', '--dns', 'a.svc,b.svc', '--dns', 'c.svc', '--ip', '127.0.0.1', '--ip', '::1', '--key-type', 'rsa-2048', '--days', '90'], now);
  assert.equal(out, 'd');
  assert.equal(output, 'base64');
  assert.deepEqual(request.dnsNames, ['a.svc', 'b.svc', 'c.svc']);
  assert.deepEqual(request.ips, ['127.0.0.1', '::1']);
  assert.equal(request.keyType, 'rsa-2048');
  assert.equal(request.validityDays, 90);
  assert.equal(request.caValidityDays, CERT_DEFAULTS.caValidityDays);
  assert.equal(request.renewBeforeDays, CERT_DEFAULTS.renewBeforeDays);
  assert.deepEqual([request.rotateCA, request.dropOldCAs, request.force], [false, false, false]);
  assert.equal(request.now, now);
});

const bad: { name: string; argv: string[]; message: RegExp }[] = [
  { name: 'no --out', argv: ['--dns', 'a.svc'], message: /--out DIR is required/ },
  { name: 'no SAN', argv: ['--out', 'd'], message: /at least one --dns NAME or --ip IP/ },
  { name: 'an unknown key type', argv: ['--out', 'd', '--dns', 'a', '--key-type', 'dsa'], message: /--key-type must be one of ecdsa-p256, rsa-2048/ },
  { name: 'days that are not a whole number', argv: ['--out', 'd', '--dns', 'a', '--days', '1.5'], message: /--days must be a positive whole number/ },
  { name: 'zero CA days', argv: ['--out', 'd', '--dns', 'a', '--ca-days', '0'], message: /--ca-days must be a positive whole number/ },
  { name: 'an unknown flag', argv: ['--out', 'd', '--dns', 'a', '--bogus'], message: /bogus/ },
  { name: 'an unknown output', argv: ['--out', 'd', '--dns', 'a', '-o', 'yaml'], message: /--output must be base64, pem or json/ },
];
for (const c of bad) {
  test(`${c.name} is refused with CERT_ERR_ARGS and a clear message`, () => {
    assert.throws(() => parseCertsArgs(c.argv), (e: unknown) => e instanceof CertError && e.code === 'CERT_ERR_ARGS' && c.message.test(e.message));
  });
}

function cli(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [MAIN, 'certs', ...args]);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

test('the command exits 2 with usage on bad arguments, and 1 with the reason on a broken directory', async (t) => {
  const usage = await cli(['--dns', 'a.svc']);
  assert.equal(usage.status, 2);
  assert.match(usage.stderr, /--out DIR is required/);
  assert.match(usage.stderr, /usage: kubetrail certs/);
  assert.equal(usage.stdout, '');

  const dir = mkdtempSync(path.join(tmpdir(), 'kt-cli-certs-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const ok = await cli(['--out', dir, '--dns', 'a.svc', '-o', 'pem']);
  assert.equal(ok.status, 0, ok.stderr);
  assert.equal(ok.stdout, readFileSync(path.join(dir, 'ca.crt'), 'utf8'));
  rmSync(path.join(dir, 'ca.key'));
  const broken = await cli(['--out', dir, '--dns', 'a.svc']);
  assert.equal(broken.status, 1);
  assert.match(broken.stderr, /ca\.crt exists but ca\.key does not/);
  assert.equal(broken.stdout, '', 'no caBundle printed when nothing was done');
});
