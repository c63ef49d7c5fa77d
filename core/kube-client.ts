/**
 * A minimal JSON client for the few Kubernetes objects kubetrail manages
 * itself (its Lease, its Secrets and ConfigMap, its own webhook
 * configurations). @kubernetes/client-node loads the kubeconfig or the pod's
 * service account and applies its credentials; the request itself is plain
 * JSON, because the generated models re-serialize fields on the way out —
 * a Lease's MicroTime becomes a millisecond `toISOString()`, which the API
 * server's RFC3339Micro parser refuses — and a compare-and-swap must send back
 * exactly what it read, resourceVersion included.
 */
import https from 'node:https';
import { KubeConfig } from '@kubernetes/client-node';
import { KubetrailError } from './errors.ts';

/** Codes of errors talking to the API server. */
export type KubeErrorCode =
  /** 409: the object exists (create) or changed since it was read (replace). */
  | 'KUBE_ERR_CONFLICT'
  /** 404 on a replace or patch. */
  | 'KUBE_ERR_NOT_FOUND'
  /** Any other answer, or no answer. */
  | 'KUBE_ERR_REQUEST';

/** A request to the API server failed; `status` is the API server's HTTP status (0: no answer). */
export class KubeError extends KubetrailError<KubeErrorCode> {
  constructor(code: KubeErrorCode, message: string, options: { status?: number; cause?: unknown } = {}) {
    super(code, message, options);
  }
}

/** Where the client's credentials come from. */
export interface KubeClientOptions {
  inCluster?: boolean;
  kubeconfig?: string;
  context?: string;
  /** Per-request timeout (ms). */
  timeoutMs?: number;
}

/** An object as the API server returns it. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string; annotations?: Record<string, string>; labels?: Record<string, string>; [k: string]: unknown };
  [k: string]: unknown;
}

/** get / create / replace on API paths (e.g. `/api/v1/namespaces/ns/secrets`). */
export class KubeClient {
  readonly #kc: KubeConfig;
  readonly #server: URL;
  readonly #timeoutMs: number;

  constructor(opts: KubeClientOptions) {
    const kc = new KubeConfig();
    if (opts.inCluster) kc.loadFromCluster();
    else if (opts.kubeconfig !== undefined) kc.loadFromFile(opts.kubeconfig);
    else kc.loadFromDefault();
    if (opts.context) kc.setCurrentContext(opts.context);
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new TypeError('the kubeconfig has no current cluster');
    this.#kc = kc;
    this.#server = new URL(cluster.server);
    this.#timeoutMs = opts.timeoutMs ?? 10_000;
  }

  /** The object at `path`, or undefined when it does not exist. */
  async get<T extends KubeObject>(path: string): Promise<T | undefined> {
    const r = await this.#request('GET', path);
    if (r.status === 404) return undefined;
    return this.#ok<T>(r, 'GET', path);
  }

  /** Creates `body` in the collection at `path`; KUBE_ERR_CONFLICT when it exists. */
  async create<T extends KubeObject>(collectionPath: string, body: KubeObject): Promise<T> {
    return this.#ok<T>(await this.#request('POST', collectionPath, body), 'POST', collectionPath);
  }

  /** Replaces the object at `path`; with metadata.resourceVersion set, KUBE_ERR_CONFLICT when it changed since. */
  async replace<T extends KubeObject>(path: string, body: KubeObject): Promise<T> {
    return this.#ok<T>(await this.#request('PUT', path, body), 'PUT', path);
  }

  /** Deletes the object at `path` (absent is fine). */
  async delete(path: string): Promise<void> {
    const r = await this.#request('DELETE', path);
    if (r.status !== 404) this.#ok(r, 'DELETE', path);
  }

  #ok<T>(r: { status: number; body: string }, method: string, path: string): T {
    if (r.status >= 200 && r.status < 300) return JSON.parse(r.body) as T;
    // The Status reason (AlreadyExists, Conflict, Forbidden...) is safe to show; the body is not echoed.
    let reason = '';
    try {
      reason = String((JSON.parse(r.body) as { reason?: unknown }).reason ?? '');
    } catch {
      // not a Status
    }
    const code: KubeErrorCode = r.status === 409 ? 'KUBE_ERR_CONFLICT' : r.status === 404 ? 'KUBE_ERR_NOT_FOUND' : 'KUBE_ERR_REQUEST';
    throw new KubeError(code, `${method} ${path}: HTTP ${r.status}${reason ? ` ${reason}` : ''}`, { status: r.status });
  }

  async #request(method: string, path: string, body?: unknown): Promise<{ status: number; body: string }> {
    const opts: https.RequestOptions = {
      method,
      protocol: this.#server.protocol,
      hostname: this.#server.hostname.replace(/^\[|\]$/g, ''),
      port: this.#server.port || 443,
      path: `${this.#server.pathname.replace(/\/$/, '')}${path}`,
      headers: { accept: 'application/json', ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      timeout: this.#timeoutMs,
    };
    await this.#kc.applyToHTTPSOptions(opts);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = https.request(opts, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', (err) => reject(new KubeError('KUBE_ERR_REQUEST', `${method} ${path}: response failed`, { status: 0, cause: err })));
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', (err) => reject(new KubeError('KUBE_ERR_REQUEST', `${method} ${path}: no answer`, { status: 0, cause: err })));
      req.end(payload);
    });
  }
}
