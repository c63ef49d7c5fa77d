/**
 * Runs a kube-oidc-proxy binary (a peer of the gateway: OIDC in front of the
 * API server, forwarding with impersonation) against the harness for
 * bench:gateway. Nothing of kube-oidc-proxy is in this repository: the bench
 * takes the path of a binary built by hand (docs/benchmarks.md has the steps)
 * from BENCH_KUBE_OIDC_PROXY, and leaves its rows out without it.
 *
 * It gets the same issuer, audience and claim mappings as the gateway's OIDC
 * row, so both impersonate the same user with the same groups.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import https from 'node:https';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createCA, issueCert } from '../../certs/generate.ts';
import { freePort } from '../harness/harness.ts';

export interface PeerProxy {
  url: string;
  ca: string;
  pid: number | undefined;
  close(): Promise<void>;
}

/** Starts kube-oidc-proxy at `binary` and waits until it serves `probePath` with `token`. */
export async function startKubeOidcProxy(o: { binary: string; issuerUrl: string; issuerCa: string; audience: string; adminKubeconfig: string; token: string; probePath: string }): Promise<PeerProxy> {
  const dir = mkdtempSync(path.join(tmpdir(), 'kubetrail-bench-koidc-'));
  const ca = createCA({ commonName: 'bench-koidc-ca' });
  const serving = issueCert(ca, { commonName: 'kube-oidc-proxy', ips: ['127.0.0.1'] });
  writeFileSync(path.join(dir, 'tls.crt'), serving.certPem);
  writeFileSync(path.join(dir, 'tls.key'), serving.keyPem, { mode: 0o600 });
  writeFileSync(path.join(dir, 'issuer-ca.crt'), o.issuerCa);
  const port = await freePort();
  const probe = await freePort();
  const args = [
    `--oidc-issuer-url=${o.issuerUrl}`,
    `--oidc-ca-file=${path.join(dir, 'issuer-ca.crt')}`,
    `--oidc-client-id=${o.audience}`,
    '--oidc-username-claim=sub',
    '--oidc-username-prefix=oidc:',
    '--oidc-groups-claim=groups',
    '--oidc-groups-prefix=oidc:',
    '--bind-address=127.0.0.1',
    `--secure-port=${port}`,
    `--readiness-probe-port=${probe}`,
    `--tls-cert-file=${path.join(dir, 'tls.crt')}`,
    `--tls-private-key-file=${path.join(dir, 'tls.key')}`,
    `--kubeconfig=${o.adminKubeconfig}`,
  ];
  const child: ChildProcess = spawn(o.binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => void (stderr = (stderr + c.toString()).slice(-4000)));
  const url = `https://127.0.0.1:${port}`;
  // Ready when a real request through it succeeds (its issuer discovery runs in the background after start).
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`kube-oidc-proxy exited ${child.exitCode}: ${stderr}`);
    const status = await new Promise<number>((resolve) => {
      const req = https.get(`${url}${o.probePath}`, { ca: ca.certPem, headers: { authorization: `Bearer ${o.token}` } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', () => resolve(0));
    });
    if (status === 200) break;
    if (i > 300) throw new Error(`kube-oidc-proxy not serving ${o.probePath} (last status ${status}): ${stderr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    ca: ca.certPem,
    pid: child.pid,
    async close() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
