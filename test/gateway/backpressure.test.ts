/**
 * Backpressure through the relay, against a small upstream of its own that
 * streams a response as fast as its socket takes it (a watch or a huge list
 * with a slow client): while the client reads nothing, the upstream must be
 * held back (its writes stop, bounded by socket buffers) instead of the
 * gateway buffering the stream in memory; and when the client goes away the
 * upstream exchange is torn down too.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { createCA, issueCert } from '../../certs/generate.ts';
import { startTestGateway } from './support.ts';

const CALLER = 'firehose-caller-token';
const GATEWAY = 'firehose-gateway-token';

/** An HTTPS upstream: TokenReview for CALLER, and GET /api/v1/firehose streaming up to 4 GiB, counting what it wrote. */
async function firehose(): Promise<{ url: string; caPem: string; written: () => number; closed: () => boolean; close: () => Promise<void> }> {
  const ca = createCA({ commonName: 'firehose-ca' });
  const serving = issueCert(ca, { commonName: 'firehose', ips: ['127.0.0.1'] });
  let written = 0;
  let closed = false;
  const chunk = Buffer.alloc(64 * 1024, 'x');
  const server = https.createServer({ cert: serving.certPem, key: serving.keyPem }, (req, res) => {
    if (req.headers.authorization !== `Bearer ${GATEWAY}`) return void res.writeHead(401).end();
    if (req.url === '/apis/authentication.k8s.io/v1/tokenreviews') {
      const body: Buffer[] = [];
      req.on('data', (c: Buffer) => body.push(c));
      req.on('end', () => {
        const token = (JSON.parse(Buffer.concat(body).toString('utf8')) as { spec: { token: string } }).spec.token;
        const status = token === CALLER ? { authenticated: true, user: { username: 'firehose-user', groups: [] } } : { authenticated: false };
        res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify({ kind: 'TokenReview', status }));
      });
      return;
    }
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json' });
    res.on('close', () => (closed = true));
    const pump = (): void => {
      while (written < 4 * 1024 ** 3 && !res.destroyed) {
        written += chunk.length;
        if (!res.write(chunk)) return void res.once('drain', pump);
      }
      if (!res.destroyed) res.end();
    };
    pump();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    caPem: ca.certPem,
    written: () => written,
    closed: () => closed,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('a client that stops reading holds the upstream back, and one that leaves ends the upstream exchange', async (t) => {
  const up = await firehose();
  const dir = mkdtempSync(path.join(tmpdir(), 'kubetrail-firehose-'));
  writeFileSync(path.join(dir, 'ca.crt'), up.caPem);
  const kubeconfig = path.join(dir, 'kubeconfig');
  writeFileSync(
    kubeconfig,
    `apiVersion: v1
kind: Config
clusters: [{name: f, cluster: {server: "${up.url}", certificate-authority: "${path.join(dir, 'ca.crt')}"}}]
users: [{name: gw, user: {token: ${GATEWAY}}}]
contexts: [{name: f, context: {cluster: f, user: gw}}]
current-context: f
`,
  );
  const g = await startTestGateway({ upstreamKubeconfig: kubeconfig });
  t.after(async () => {
    await g.close();
    await up.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const res = await new Promise<import('node:http').IncomingMessage>((resolve, reject) => {
    const req = https.get(`${g.gw.url}/api/v1/firehose`, { ca: g.caPem, agent: false, headers: { authorization: `Bearer ${CALLER}` } }, resolve);
    req.on('error', reject);
  });
  assert.equal(res.statusCode, 200);
  // Read a little, then stop reading.
  let read = 0;
  await new Promise<void>((resolve) => {
    const onData = (c: Buffer): void => {
      read += c.length;
      if (read >= 1024 * 1024) {
        res.off('data', onData);
        res.pause();
        resolve();
      }
    };
    res.on('data', onData);
  });
  // Let the buffers between the upstream and the paused client fill, then watch the upstream: it must be stuck.
  await sleep(1500);
  const a = up.written();
  await sleep(1500);
  const b = up.written();
  const MiB = 1024 * 1024;
  assert.ok(b - a <= 2 * MiB, `the upstream kept writing while the client read nothing (${((b - a) / MiB).toFixed(1)} MiB in 1.5 s)`);
  // Bounded by socket and stream buffers on two TLS hops, not by the response's size.
  assert.ok(b < 64 * MiB, `the gateway took ${(b / MiB).toFixed(1)} MiB from the upstream for a client that read ${(read / MiB).toFixed(1)} MiB`);

  // Reading again resumes the stream.
  let more = 0;
  res.on('data', (c: Buffer) => (more += c.length));
  res.resume();
  const deadline = Date.now() + 10_000;
  while (more < 8 * MiB && Date.now() < deadline) await sleep(20);
  assert.ok(more >= 8 * MiB, 'the stream did not resume');

  // The client leaves: the upstream response is closed too.
  res.destroy();
  while (!up.closed() && Date.now() < deadline + 10_000) await sleep(20);
  assert.ok(up.closed(), 'the upstream exchange outlived the client');
});
