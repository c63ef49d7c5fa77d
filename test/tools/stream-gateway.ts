/**
 * Test wiring for the stream relay until the real gateway calls it: an HTTPS
 * server that answers kubectl's pod GET (and discovery) with a fixed running
 * pod, and hands every exec/attach/portforward upgrade to
 * `handleStreamUpgrade` with a fixed StreamContext pointing at an upstream
 * (usually the fake exec upstream). Also writes a kubeconfig for kubectl.
 */
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { createCA, issueCert } from '../../certs/generate.ts';
import { loadConfig } from '../../core/config.ts';
import { createLogger } from '../../core/logger.ts';
import type { Identity } from '../../core/identity.ts';
import type { EventSink } from '../../core/sinks/sink.ts';
import type { CompiledExecPolicy } from '../../core/policy/exec.ts';
import type { CompiledMaskingPolicy } from '../../core/masking/stream.ts';
import { handleStreamUpgrade, type StreamContext } from '../../exec-proxy/stream/index.ts';

/** Options of the test gateway. */
export interface StreamGatewayOptions {
  upstream: URL;
  /** CA of an HTTPS upstream. */
  upstreamCa?: string;
  upstreamToken?: string;
  /** Replaces the default upstream headers (e.g. a real API server's admin token plus Impersonate-*). */
  upstreamHeaders?: (sessionId: string) => Record<string, string | string[]>;
  sink: EventSink;
  execPolicies?: CompiledExecPolicy[];
  masking?: CompiledMaskingPolicy[];
  limits?: Partial<StreamContext['limits']>;
  identity?: Identity;
}

/** A running test gateway. */
export interface StreamGateway {
  url: string;
  kubeconfig: string;
  dir: string;
  /** Session ids handed out, in order. */
  sessions: string[];
  /** Policies can be swapped between tests. */
  opts: StreamGatewayOptions;
  close(): Promise<void>;
}

/** The identity the test gateway stamps on sessions. */
export const TEST_IDENTITY: Identity = { username: 'agent-ci', groups: ['agents', 'system:authenticated'], authn: 'token' };

function pod(ns: string, name: string): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: ns, uid: '00000000-0000-0000-0000-000000000001', resourceVersion: '1' },
    spec: { containers: [{ name: 'app', image: 'busybox' }] },
    status: { phase: 'Running', containerStatuses: [{ name: 'app', ready: true, restartCount: 0, image: 'busybox', imageID: '', state: { running: {} } }] },
  };
}

/** Starts the test gateway on 127.0.0.1 (random port) with a fresh test CA. */
export async function startStreamGateway(opts: StreamGatewayOptions): Promise<StreamGateway> {
  const ca = createCA({ commonName: 'stream-test-ca' });
  const serving = issueCert(ca, { commonName: 'stream-gateway', ips: ['127.0.0.1'], dnsNames: ['localhost'] });
  const limits = { ...loadConfig({ document: {} }).proxy.exec, ...opts.limits };
  const log = createLogger({ level: 'silent' });
  const sessions: string[] = [];
  const server: Server = createServer({ cert: serving.certPem, key: serving.keyPem }, (req, res) => {
    const url = new URL(req.url ?? '/', 'https://x');
    const json = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    };
    const m = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)$/.exec(url.pathname);
    if (m && req.method === 'GET') return json(200, pod(m[1] as string, m[2] as string));
    if (url.pathname === '/api') return json(200, { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: '127.0.0.1' }] });
    if (url.pathname === '/apis') return json(200, { kind: 'APIGroupList', apiVersion: 'v1', groups: [] });
    if (url.pathname === '/api/v1') {
      return json(200, { kind: 'APIResourceList', groupVersion: 'v1', resources: [{ name: 'pods', singularName: 'pod', namespaced: true, kind: 'Pod', verbs: ['get', 'list'], shortNames: ['po'] }] });
    }
    if (/\/(exec|attach|portforward)$/.test(url.pathname)) {
      // A stream request without Upgrade: what SPDY fallback after a plain POST looks like.
      return json(400, { kind: 'Status', apiVersion: 'v1', status: 'Failure', message: 'upgrade required', reason: 'BadRequest', code: 400 });
    }
    return json(404, { kind: 'Status', apiVersion: 'v1', status: 'Failure', message: 'not found', reason: 'NotFound', code: 404 });
  });
  server.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url ?? '/', 'https://x');
    const m = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)\/(exec|attach|portforward)$/.exec(url.pathname);
    if (!m) {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
      return;
    }
    const sessionId = randomUUID();
    sessions.push(sessionId);
    const ctx: StreamContext = {
      identity: opts.identity ?? TEST_IDENTITY,
      sessionId,
      target: { namespace: m[1] as string, pod: m[2] as string, subresource: m[3] as 'exec' | 'attach' | 'portforward', query: url.searchParams },
      upstream: {
        url: opts.upstream,
        tls: opts.upstreamCa ? { ca: opts.upstreamCa, servername: 'localhost' } : {},
        headers: opts.upstreamHeaders?.(sessionId) ?? {
          authorization: `Bearer ${opts.upstreamToken ?? 'upstream-token'}`,
          'impersonate-user': (opts.identity ?? TEST_IDENTITY).username,
          'impersonate-group': (opts.identity ?? TEST_IDENTITY).groups,
          'impersonate-extra-kubetrail.io%2Fsession': sessionId,
        },
      },
      sink: opts.sink,
      log,
      execPolicies: () => opts.execPolicies ?? [],
      masking: () => opts.masking ?? [],
      limits,
    };
    handleStreamUpgrade(ctx, req, socket, head);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as AddressInfo).port;
  const dir = mkdtempSync(path.join(tmpdir(), 'kubetrail-stream-'));
  const kubeconfig = path.join(dir, 'kubeconfig');
  writeFileSync(
    kubeconfig,
    [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      `- name: gw`,
      `  cluster: {server: "https://127.0.0.1:${port}", certificate-authority-data: "${Buffer.from(ca.certPem).toString('base64')}"}`,
      'users:',
      '- name: agent',
      '  user: {token: "client-token"}',
      'contexts:',
      '- name: gw',
      '  context: {cluster: gw, user: agent, namespace: agents}',
      'current-context: gw',
      '',
    ].join('\n'),
  );
  return {
    url: `https://127.0.0.1:${port}`,
    kubeconfig,
    dir,
    sessions,
    opts,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
