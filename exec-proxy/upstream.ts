/**
 * The API server the gateway forwards to, and the gateway's own credentials
 * for it. Loaded once with @kubernetes/client-node's KubeConfig (a kubeconfig
 * file and context, or the in-cluster service account), which knows every
 * credential form (token, client certificate, exec plugin, in-cluster token
 * file); the hot path then uses plain node:https with one keep-alive Agent.
 *
 * Credentials are re-read periodically so rotated in-cluster tokens and exec
 * plugin tokens keep working without a restart.
 */
import https from 'node:https';
import tls from 'node:tls';
import { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from '../core/logger.ts';
import { ProxyError } from './errors.ts';

/** Where and how to reach the API server. */
export interface UpstreamTarget {
  /** Base URL of the API server (no trailing slash). */
  readonly url: URL;
  /** Keep-alive agent carrying the TLS settings (CA, client certificate). Reused by every request. */
  readonly agent: https.Agent;
  /** TLS options for callers that open their own connections (e.g. WebSocket clients, raw upgrades). */
  readonly tls: Readonly<UpstreamTls>;
  /** The gateway's own `Authorization` header value, when it authenticates with a bearer token. */
  authorization(): string | undefined;
}

/**
 * Options of the upstream request that forwards a client's request (method
 * and path kept, under the API server's base path). `agent` is the upstream's
 * keep-alive agent, or `false` for a dedicated connection (upgrades leave any pool).
 */
export function forwardRequestOptions(target: UpstreamTarget, req: { method?: string | undefined; url?: string | undefined }, headers: https.RequestOptions['headers'], agent: https.Agent | false): https.RequestOptions {
  const o = origin(target);
  return {
    protocol: 'https:',
    hostname: o.hostname,
    port: o.port,
    method: req.method ?? 'GET',
    path: o.basePath + (req.url ?? '/'),
    headers,
    agent,
  };
}

/** Host, port and base path of a target, read from its URL once (URL getters are not free on the hot path). */
const origins = new WeakMap<UpstreamTarget, { hostname: string; port: string | number; basePath: string }>();
function origin(target: UpstreamTarget): { hostname: string; port: string | number; basePath: string } {
  let o = origins.get(target);
  if (o === undefined) {
    o = { hostname: target.url.hostname, port: target.url.port || 443, basePath: target.url.pathname.replace(/\/$/, '') };
    origins.set(target, o);
  }
  return o;
}

/** TLS settings towards the API server. */
export interface UpstreamTls {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  servername?: string;
  rejectUnauthorized: boolean;
}

/** How to find the upstream: the proxy.upstream config section. */
export interface UpstreamOptions {
  kubeconfig?: string | undefined;
  context?: string | undefined;
  inCluster?: boolean | undefined;
  /** Keep-alive sockets per origin; the API server's HTTP/1.1 connections are cheap to keep. */
  maxSockets?: number;
  /** How often credentials are re-read (ms). */
  refreshMs?: number;
  log?: Logger;
}

/** A loaded upstream; `close()` stops the refresh timer and the agent's sockets. */
export interface Upstream extends UpstreamTarget {
  close(): void;
}

function toBuffer(v: unknown): Buffer | undefined {
  if (v === undefined || v === null) return undefined;
  if (Buffer.isBuffer(v)) return v;
  if (typeof v === 'string') return Buffer.from(v);
  if (Array.isArray(v)) return Buffer.concat(v.map((x) => (Buffer.isBuffer(x) ? x : Buffer.from(String(x)))));
  return undefined;
}

function expandHome(p: string): string {
  return p.startsWith('~/') ? `${process.env['HOME'] ?? ''}${p.slice(1)}` : p;
}

/**
 * Loads the upstream from a kubeconfig (default context unless `context`
 * is set) or from the in-cluster service account. Throws
 * PROXY_ERR_UPSTREAM_CONFIG when neither gives a usable cluster.
 */
export async function loadUpstream(opts: UpstreamOptions): Promise<Upstream> {
  const kc = new KubeConfig();
  try {
    if (opts.inCluster) kc.loadFromCluster();
    else if (opts.kubeconfig !== undefined) kc.loadFromFile(expandHome(opts.kubeconfig));
    else kc.loadFromDefault();
    if (opts.context) kc.setCurrentContext(opts.context);
  } catch (err) {
    throw new ProxyError('PROXY_ERR_UPSTREAM_CONFIG', 'cannot load the upstream kubeconfig', { cause: err });
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new ProxyError('PROXY_ERR_UPSTREAM_CONFIG', 'the upstream kubeconfig has no current cluster');
  let url: URL;
  try {
    url = new URL(cluster.server.replace(/\/+$/, ''));
  } catch (err) {
    throw new ProxyError('PROXY_ERR_UPSTREAM_CONFIG', 'the upstream server is not a URL', { cause: err });
  }
  if (url.protocol !== 'https:') throw new ProxyError('PROXY_ERR_UPSTREAM_CONFIG', 'the upstream server must be https');

  const read = async (): Promise<{ tls: UpstreamTls; authorization: string | undefined }> => {
    const o: https.RequestOptions & { headers: Record<string, string> } = { headers: {} };
    await kc.applyToHTTPSOptions(o);
    const tls: UpstreamTls = { rejectUnauthorized: o.rejectUnauthorized ?? true };
    const ca = toBuffer(o.ca);
    const cert = toBuffer(o.cert);
    const key = toBuffer(o.key);
    if (ca) tls.ca = ca;
    if (cert) tls.cert = cert;
    if (key) tls.key = key;
    if (o.servername) tls.servername = o.servername;
    const auth = o.headers['Authorization'] ?? o.headers['authorization'];
    return { tls, authorization: typeof auth === 'string' ? auth : undefined };
  };

  let current: Awaited<ReturnType<typeof read>>;
  try {
    current = await read();
  } catch (err) {
    throw new ProxyError('PROXY_ERR_UPSTREAM_CONFIG', 'cannot read the upstream credentials', { cause: err });
  }
  const { ca, cert, key, ...connectOptions } = current.tls;
  const agent = new https.Agent({
    keepAlive: true,
    maxSockets: opts.maxSockets ?? 256,
    maxFreeSockets: 64,
    scheduling: 'lifo',
    // The CA and client certificate go in as one SecureContext, built once, not as ca/cert/key options:
    // node:https names its socket pools by concatenating those options, so every request would turn
    // the PEM buffers into a string of a kilobyte or more and hash it to find its pool.
    secureContext: tls.createSecureContext({ ...(ca ? { ca } : {}), ...(cert ? { cert } : {}), ...(key ? { key } : {}) }),
    ...connectOptions,
  });
  const timer = setInterval(() => {
    read().then(
      (next) => {
        // The TLS material lives in the agent; only the bearer token can change without a new agent.
        current = { tls: current.tls, authorization: next.authorization };
      },
      (err: unknown) => opts.log?.warn({ err }, 'refreshing upstream credentials failed; keeping the previous ones'),
    );
  }, opts.refreshMs ?? 60_000);
  timer.unref();

  return {
    url,
    agent,
    get tls() {
      return current.tls;
    },
    authorization: () => current.authorization,
    close: () => {
      clearInterval(timer);
      agent.destroy();
    },
  };
}

/**
 * Sends a small JSON request to the API server as the gateway itself (used by
 * TokenReview and SubjectAccessReview) and returns the parsed reply.
 */
export function upstreamJson(target: UpstreamTarget, method: string, path: string, body: unknown, timeoutMs = 10_000): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const payload = Buffer.from(JSON.stringify(body));
    const headers: Record<string, string | number> = {
      'content-type': 'application/json',
      accept: 'application/json',
      'content-length': payload.length,
      'user-agent': 'kubetrail-gateway',
    };
    const auth = target.authorization();
    if (auth) headers['authorization'] = auth;
    const req = https.request(
      { protocol: 'https:', hostname: target.url.hostname, port: target.url.port || 443, method, path: target.url.pathname.replace(/\/$/, '') + path, headers, agent: target.agent },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          let parsed: unknown;
          try {
            parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          } catch (err) {
            reject(new ProxyError('PROXY_ERR_UPSTREAM_UNAVAILABLE', `upstream ${path} answered ${res.statusCode} with non-JSON`, { cause: err }));
            return;
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
        res.on('error', reject);
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new ProxyError('PROXY_ERR_UPSTREAM_TIMEOUT', `upstream ${path} timed out`)));
    req.on('error', (err) => reject(err instanceof ProxyError ? err : new ProxyError('PROXY_ERR_UPSTREAM_UNAVAILABLE', `upstream ${path} failed`, { cause: err })));
    req.end(payload);
  });
}
