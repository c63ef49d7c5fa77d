/**
 * The API server the gateway forwards to, and the gateway's own credentials
 * for it. Loaded with @kubernetes/client-node's KubeConfig (a kubeconfig
 * file and context, or the in-cluster service account), which knows every
 * credential form (token, client certificate, exec plugin, in-cluster token
 * file), in a worker thread so its large heap stays out of the gateway's; the
 * hot path then uses plain node:https with one keep-alive Agent.
 *
 * Credentials are re-read periodically so rotated in-cluster tokens and exec
 * plugin tokens keep working without a restart.
 */
import https from 'node:https';
import tls from 'node:tls';
import { Worker } from 'node:worker_threads';
import type { Logger } from '../core/logger.ts';
import { ProxyError } from './errors.ts';
import type { CredentialsWorkerData, CredentialsWorkerMessage } from './upstream-credentials-worker.ts';

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

/** The credentials worker (upstream-credentials-worker.ts) as the main thread uses it. */
class CredentialsWorker {
  readonly #worker: Worker;
  readonly #pending = new Map<number, { resolve: (r: { tls: UpstreamTls; authorization: string | undefined }) => void; reject: (e: Error) => void }>();
  #nextId = 0;
  #failure: Error | undefined;
  readonly loaded: Promise<string>;

  constructor(data: CredentialsWorkerData) {
    this.#worker = new Worker(new URL('./upstream-credentials-worker.ts', import.meta.url), { workerData: data });
    this.#worker.unref();
    let onLoaded: (server: string) => void = () => undefined;
    let onFailed: (e: Error) => void = () => undefined;
    this.loaded = new Promise<string>((resolve, reject) => {
      onLoaded = resolve;
      onFailed = reject;
    });
    this.#worker.on('message', (m: CredentialsWorkerMessage) => {
      if (m.type === 'loaded') onLoaded(m.server);
      else if (m.type === 'load-failed') {
        onFailed(
          m.stage === 'cluster'
            ? new ProxyError('PROXY_ERR_UPSTREAM_CONFIG', m.message)
            : new ProxyError('PROXY_ERR_UPSTREAM_CONFIG', 'cannot load the upstream kubeconfig', { cause: new Error(m.message) }),
        );
      } else {
        const p = this.#pending.get(m.id);
        if (!p) return;
        this.#pending.delete(m.id);
        if (this.#pending.size === 0) this.#worker.unref();
        if (m.type === 'read-failed') p.reject(new Error(m.message));
        else {
          const tls: UpstreamTls = { rejectUnauthorized: m.tls.rejectUnauthorized };
          if (m.tls.ca) tls.ca = Buffer.from(m.tls.ca);
          if (m.tls.cert) tls.cert = Buffer.from(m.tls.cert);
          if (m.tls.key) tls.key = Buffer.from(m.tls.key);
          if (m.tls.servername) tls.servername = m.tls.servername;
          p.resolve({ tls, authorization: m.authorization });
        }
      }
    });
    const die = (err: Error): void => {
      this.#failure = err;
      onFailed(new ProxyError('PROXY_ERR_UPSTREAM_CONFIG', 'the upstream credentials worker failed', { cause: err }));
      for (const p of this.#pending.values()) p.reject(err);
      this.#pending.clear();
    };
    this.#worker.on('error', die);
    this.#worker.on('exit', (code) => die(new Error(`credentials worker exited with code ${code}`)));
  }

  /** Fresh TLS material and bearer token (an exec plugin or token file is re-read when due). */
  read(): Promise<{ tls: UpstreamTls; authorization: string | undefined }> {
    if (this.#failure) return Promise.reject(this.#failure);
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      // Keep the process alive only while a read is outstanding.
      this.#worker.ref();
      this.#worker.postMessage({ id });
    });
  }

  close(): void {
    this.#worker.removeAllListeners('exit');
    void this.#worker.terminate();
  }
}

/**
 * Loads the upstream from a kubeconfig (default context unless `context`
 * is set) or from the in-cluster service account. Throws
 * PROXY_ERR_UPSTREAM_CONFIG when neither gives a usable cluster.
 *
 * @kubernetes/client-node runs in a worker thread (see
 * upstream-credentials-worker.ts for why): the main thread only receives the
 * server URL, TLS material and bearer token.
 */
export async function loadUpstream(opts: UpstreamOptions): Promise<Upstream> {
  const worker = new CredentialsWorker({ kubeconfig: opts.kubeconfig, context: opts.context, inCluster: opts.inCluster });
  try {
    return await loadFromWorker(worker, opts);
  } catch (err) {
    worker.close();
    throw err;
  }
}

async function loadFromWorker(worker: CredentialsWorker, opts: UpstreamOptions): Promise<Upstream> {
  const server = await worker.loaded;
  let url: URL;
  try {
    url = new URL(server.replace(/\/+$/, ''));
  } catch (err) {
    throw new ProxyError('PROXY_ERR_UPSTREAM_CONFIG', 'the upstream server is not a URL', { cause: err });
  }
  if (url.protocol !== 'https:') throw new ProxyError('PROXY_ERR_UPSTREAM_CONFIG', 'the upstream server must be https');

  const read = (): Promise<{ tls: UpstreamTls; authorization: string | undefined }> => worker.read();

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
      worker.close();
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
