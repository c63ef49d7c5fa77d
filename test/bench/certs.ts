/**
 * `npm run bench:certs`: what the key type of `kubetrail certs` costs.
 *
 * - issuance: a CA plus a serving certificate (what a first `kubetrail certs` does);
 * - TLS: full handshakes per second against a loopback HTTPS server using the
 *   serving certificate (the API server opens such connections to the webhook),
 *   each handshake a new connection with no session resumption.
 *
 * Baseline: RSA 2048 (the harness's and the former default), measured in the
 * same run; the ratio is ECDSA P-256 over RSA 2048. Short by design: the
 * machine is shared.
 */
import { createServer } from 'node:https';
import { connect } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { createCertificateAuthority, issueServingCertificate, type KeyType } from '../../certs/x509.ts';

const ISSUE_ROUNDS = Number(process.env['BENCH_ISSUE_ROUNDS'] ?? 20);
const HANDSHAKES = Number(process.env['BENCH_HANDSHAKES'] ?? 400);

function issueOnce(keyType: KeyType): { certPem: string; keyPem: string; caPem: string } {
  const ca = createCertificateAuthority({ keyType });
  const leaf = issueServingCertificate(ca, { commonName: 'bench', dnsNames: ['localhost'], ips: ['127.0.0.1'], keyType });
  return { ...leaf, caPem: ca.certPem };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

async function handshakesPerSecond(pair: { certPem: string; keyPem: string; caPem: string }): Promise<number> {
  const server = createServer({ cert: pair.certPem, key: pair.keyPem }, (_req, res) => res.end());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as AddressInfo).port;
  const one = (): Promise<void> =>
    new Promise((resolve, reject) => {
      // A fresh connection each time and no session: a full handshake, verified against the CA like the API server does.
      const s = connect({ host: '127.0.0.1', port, ca: pair.caPem, servername: 'localhost', session: undefined }, () => {
        s.destroy();
        resolve();
      });
      s.once('error', reject);
    });
  for (let i = 0; i < 20; i++) await one(); // warm-up
  const t0 = performance.now();
  for (let i = 0; i < HANDSHAKES; i++) await one();
  const secs = (performance.now() - t0) / 1000;
  await new Promise<void>((r) => server.close(() => r()));
  return HANDSHAKES / secs;
}

const results: Record<KeyType, { issueMs: number; hps: number }> = {
  'rsa-2048': { issueMs: 0, hps: 0 },
  'ecdsa-p256': { issueMs: 0, hps: 0 },
};
for (const keyType of ['rsa-2048', 'ecdsa-p256'] as const) {
  const times: number[] = [];
  let pair = issueOnce(keyType);
  for (let i = 0; i < ISSUE_ROUNDS; i++) {
    const t0 = performance.now();
    pair = issueOnce(keyType);
    times.push(performance.now() - t0);
  }
  results[keyType] = { issueMs: median(times), hps: await handshakesPerSecond(pair) };
}

const rsa = results['rsa-2048'];
const ec = results['ecdsa-p256'];
process.stdout.write(
  [
    `kubetrail certs bench (Node ${process.version}; ${ISSUE_ROUNDS} issuances, ${HANDSHAKES} full TLS handshakes per key type)`,
    `key type     CA+serving issue (median ms)   TLS handshakes/s`,
    `rsa-2048     ${rsa.issueMs.toFixed(1).padStart(10)}                     ${rsa.hps.toFixed(0).padStart(8)}   (baseline)`,
    `ecdsa-p256   ${ec.issueMs.toFixed(1).padStart(10)}                     ${ec.hps.toFixed(0).padStart(8)}`,
    `ratio ecdsa/rsa: issuance time x${(ec.issueMs / rsa.issueMs).toFixed(3)}, handshakes/s x${(ec.hps / rsa.hps).toFixed(2)}`,
    '',
  ].join('\n'),
);
