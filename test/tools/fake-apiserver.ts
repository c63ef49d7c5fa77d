/**
 * A tiny stand-in for the API server, for what the real one cannot show: the
 * exact headers the gateway sends upstream. It answers TokenReviews from a
 * fixed token table, denies every SubjectAccessReview, records every other
 * request's raw headers, answers plain requests with 200 JSON, and completes
 * WebSocket upgrades (choosing the first offered subprotocol) then echoes bytes.
 * Requests under /api/v1/namespaces/hang/ are never answered (timeout tests).
 */
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { IncomingMessage } from 'node:http';
import { createCA, issueCert } from '../../certs/generate.ts';

/** One request the fake received (TokenReviews and SubjectAccessReviews excluded). */
export interface SeenRequest {
  method: string;
  url: string;
  /** Raw header lines as [name, value] in arrival order. */
  lines: [string, string][];
  /** Lower-cased name → every value. */
  headers: Record<string, string[]>;
  upgrade: boolean;
}

/** A running fake. */
export interface FakeApiServer {
  readonly url: string;
  readonly caPem: string;
  /** The bearer token the gateway must use for itself. */
  readonly gatewayToken: string;
  readonly seen: SeenRequest[];
  /** Count of TokenReviews received. */
  readonly tokenReviews: number;
  close(): Promise<void>;
}

function record(req: IncomingMessage, upgrade: boolean): SeenRequest {
  const lines: [string, string][] = [];
  const headers: Record<string, string[]> = {};
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    const n = req.rawHeaders[i] as string;
    const v = req.rawHeaders[i + 1] as string;
    lines.push([n, v]);
    (headers[n.toLowerCase()] ??= []).push(v);
  }
  return { method: req.method ?? '', url: req.url ?? '', lines, headers, upgrade };
}

/** Starts the fake with `users`: token → {username, groups}. */
export async function startFakeApiServer(users: Record<string, { username: string; groups: string[] }>): Promise<FakeApiServer> {
  const ca = createCA({ commonName: 'fake-apiserver-ca' });
  const serving = issueCert(ca, { commonName: 'fake-apiserver', ips: ['127.0.0.1'] });
  const gatewayToken = 'gateway-own-token';
  const seen: SeenRequest[] = [];
  let tokenReviews = 0;
  const server = https.createServer({ cert: serving.certPem, key: serving.keyPem }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const json = (status: number, body: unknown): void => void res.writeHead(status, { 'content-type': 'application/json', 'audit-id': 'fake-audit' }).end(JSON.stringify(body));
      if (req.headers.authorization !== `Bearer ${gatewayToken}`) return json(401, { kind: 'Status', code: 401 });
      if (req.url === '/apis/authentication.k8s.io/v1/tokenreviews') {
        tokenReviews++;
        const token = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { spec: { token: string } }).spec.token;
        const u = users[token];
        return json(201, { kind: 'TokenReview', status: u ? { authenticated: true, user: { username: u.username, groups: u.groups } } : { authenticated: false } });
      }
      if (req.url === '/apis/authorization.k8s.io/v1/subjectaccessreviews') return json(201, { kind: 'SubjectAccessReview', status: { allowed: false } });
      seen.push(record(req, false));
      // Never answers: for timeout tests.
      if ((req.url ?? '').startsWith('/api/v1/namespaces/hang/')) return;
      json(200, { kind: 'Status', status: 'Success', echo: Buffer.concat(chunks).length });
    });
  });
  server.on('upgrade', (req: IncomingMessage, socket, head: Buffer) => {
    seen.push(record(req, true));
    const key = req.headers['sec-websocket-key'] ?? '';
    const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    const proto = (req.headers['sec-websocket-protocol'] ?? '').split(',')[0]?.trim();
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n${proto ? `Sec-WebSocket-Protocol: ${proto}\r\n` : ''}\r\n`);
    if (head.length > 0) socket.write(head);
    socket.pipe(socket);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    caPem: ca.certPem,
    gatewayToken,
    seen,
    get tokenReviews() {
      return tokenReviews;
    },
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

/** Writes `dir/ca.crt` and `dir/kubeconfig` (the fake's URL, CA and the gateway's own token) and returns the kubeconfig's path: the gateway's upstream kubeconfig. */
export function writeGatewayKubeconfig(fake: FakeApiServer, dir: string): string {
  writeFileSync(path.join(dir, 'ca.crt'), fake.caPem);
  const kc = path.join(dir, 'kubeconfig');
  writeFileSync(
    kc,
    `apiVersion: v1
kind: Config
clusters: [{name: fake, cluster: {server: "${fake.url}", certificate-authority: "${path.join(dir, 'ca.crt')}"}}]
users: [{name: gw, user: {token: ${fake.gatewayToken}}}]
contexts: [{name: fake, context: {cluster: fake, user: gw}}]
current-context: fake
`,
  );
  return kc;
}
