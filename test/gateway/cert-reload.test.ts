/**
 * The gateway's serving certificate reloads when its files change, as the
 * webhook's does: new connections get the new certificate without a restart,
 * and a pair that does not load (key of another certificate) is refused
 * with the previous one kept.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, test } from 'node:test';
import { createCA, issueCert } from '../../certs/generate.ts';
import { loadConfig } from '../../core/config.ts';
import { createLogger } from '../../core/logger.ts';
import { MemorySink } from '../../core/sinks/memory-sink.ts';
import { startGateway, type Gateway } from '../../exec-proxy/main.ts';
import { Writable } from 'node:stream';
import { harness } from '../support/env.ts';
import { waitFor } from '../support/wait.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'kubetrail-gw-reload-'));
const certFile = path.join(dir, 'tls.crt');
const keyFile = path.join(dir, 'tls.key');
const ca = createCA({ commonName: 'gateway-reload-ca' });
let gw: Gateway;
/** The gateway's error log lines (a failed certificate reload is logged there). */
const logLines: string[] = [];

/** Writes a file the way cert-manager and editors do: a temp file renamed into place. */
function replace(file: string, content: string): void {
  writeFileSync(`${file}.tmp`, content);
  renameSync(`${file}.tmp`, file);
}

/** The serial number of the certificate a new TLS connection to the gateway is served. */
function servedSerial(): Promise<string> {
  const url = new URL(gw.url);
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: url.hostname, port: Number(url.port), ca: ca.certPem, servername: 'localhost', ALPNProtocols: ['http/1.1'] }, () => {
      const serial = s.getPeerCertificate().serialNumber;
      s.end();
      resolve(serial);
    });
    s.on('error', reject);
  });
}


const serialOf = (pem: string): string => new X509Certificate(pem).serialNumber;

before(async () => {
  const env = harness();
  const first = issueCert(ca, { commonName: 'kubetrail-gateway', ips: ['127.0.0.1'], dnsNames: ['localhost'] });
  writeFileSync(certFile, first.certPem);
  writeFileSync(keyFile, first.keyPem);
  const config = loadConfig({
    document: { cluster: 'test', dataDir: dir, policies: { dir: path.join(dir, 'none') }, proxy: { listen: '127.0.0.1:0', upstream: { kubeconfig: env.ADMIN_KUBECONFIG } } },
  });
  gw = await startGateway({
    config,
    log: createLogger({ level: 'error', destination: new Writable({ write: (c, _e, cb) => void (logLines.push(String(c)), cb()) }) }),
    sink: new MemorySink({ source: { component: 'proxy', instance: 'test', cluster: 'test' } }),
    tls: { cert: readFileSync(certFile), key: readFileSync(keyFile), certFile, keyFile },
    tlsReloadDebounceMs: 20,
  });
});
after(async () => {
  await gw?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('a new certificate written over the files is served to new connections; a mismatched pair is refused and the previous one kept', async () => {
  const first = await servedSerial();
  assert.equal(first.toUpperCase(), serialOf(readFileSync(certFile, 'utf8')).toUpperCase());

  const second = issueCert(ca, { commonName: 'kubetrail-gateway', ips: ['127.0.0.1'], dnsNames: ['localhost'] });
  replace(keyFile, second.keyPem);
  replace(certFile, second.certPem);
  const want = serialOf(second.certPem).toUpperCase();
  await waitFor(async () => (await servedSerial()).toUpperCase() === want, 'the new certificate to be served', { timeoutMs: 5000, intervalMs: 50 });

  // A certificate whose key is not in keyFile: loading it fails, the second pair stays.
  const third = issueCert(ca, { commonName: 'kubetrail-gateway', ips: ['127.0.0.1'], dnsNames: ['localhost'] });
  logLines.length = 0; // a reload between the key and the certificate of the second pair may have failed already
  replace(certFile, third.certPem);
  await waitFor(() => logLines.some((l) => l.includes('certificate reload failed')), 'the watcher to try the mismatched pair and refuse it');
  assert.equal(gw.reloadTls(), false);
  assert.equal((await servedSerial()).toUpperCase(), want);
});
