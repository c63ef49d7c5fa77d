/**
 * Worker thread of {@link loadUpstream} (upstream.ts): loads the upstream
 * kubeconfig (or the in-cluster service account) with
 * @kubernetes/client-node and answers each `read` message with the cluster's
 * URL, TLS material and the gateway's bearer token (re-running an exec
 * plugin or re-reading a token file when client-node says so).
 *
 * Why a worker: client-node loads its whole generated API with the
 * KubeConfig class, about 25 MB of JS heap. Kept in the gateway's own
 * isolate, every major GC marks it again — and large responses trigger major
 * GCs often (their buffers count as external memory): relaying a 5 MB list
 * cost ~40 % more CPU with client-node imported than without. A worker has
 * its own heap, collected on its own.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type https from 'node:https';
import { KubeConfig } from '@kubernetes/client-node';

/** What the main thread passes. */
export interface CredentialsWorkerData {
  kubeconfig?: string | undefined;
  context?: string | undefined;
  inCluster?: boolean | undefined;
}

/** TLS material as plain transferable values. */
export interface WorkerTls {
  ca?: Uint8Array;
  cert?: Uint8Array;
  key?: Uint8Array;
  servername?: string;
  rejectUnauthorized: boolean;
}

/** Messages from the worker. */
export type CredentialsWorkerMessage =
  | { type: 'loaded'; server: string }
  | { type: 'load-failed'; stage: 'kubeconfig' | 'cluster'; message: string }
  | { type: 'read'; id: number; tls: WorkerTls; authorization: string | undefined }
  | { type: 'read-failed'; id: number; message: string };

function toBytes(v: unknown): Uint8Array | undefined {
  if (v === undefined || v === null) return undefined;
  if (Buffer.isBuffer(v)) return new Uint8Array(v);
  if (typeof v === 'string') return new Uint8Array(Buffer.from(v));
  if (Array.isArray(v)) return new Uint8Array(Buffer.concat(v.map((x) => (Buffer.isBuffer(x) ? x : Buffer.from(String(x))))));
  return undefined;
}

function expandHome(p: string): string {
  return p.startsWith('~/') ? `${process.env['HOME'] ?? ''}${p.slice(1)}` : p;
}

const port = parentPort;
if (port) {
  const post = (m: CredentialsWorkerMessage): void => port.postMessage(m);
  const opts = workerData as CredentialsWorkerData;
  const kc = new KubeConfig();
  let loaded = false;
  try {
    if (opts.inCluster) kc.loadFromCluster();
    else if (opts.kubeconfig !== undefined) kc.loadFromFile(expandHome(opts.kubeconfig));
    else kc.loadFromDefault();
    if (opts.context) kc.setCurrentContext(opts.context);
    const cluster = kc.getCurrentCluster();
    if (!cluster) post({ type: 'load-failed', stage: 'cluster', message: 'the upstream kubeconfig has no current cluster' });
    else {
      post({ type: 'loaded', server: cluster.server });
      loaded = true;
    }
  } catch (err) {
    post({ type: 'load-failed', stage: 'kubeconfig', message: err instanceof Error ? err.message : String(err) });
  }
  if (loaded) {
    port.on('message', (m: { id: number }) => {
      void (async () => {
        try {
          const o: https.RequestOptions & { headers: Record<string, string> } = { headers: {} };
          await kc.applyToHTTPSOptions(o);
          const tls: WorkerTls = { rejectUnauthorized: o.rejectUnauthorized ?? true };
          const ca = toBytes(o.ca);
          const cert = toBytes(o.cert);
          const key = toBytes(o.key);
          if (ca) tls.ca = ca;
          if (cert) tls.cert = cert;
          if (key) tls.key = key;
          if (o.servername) tls.servername = o.servername;
          const auth = o.headers['Authorization'] ?? o.headers['authorization'];
          post({ type: 'read', id: m.id, tls, authorization: typeof auth === 'string' ? auth : undefined });
        } catch (err) {
          post({ type: 'read-failed', id: m.id, message: err instanceof Error ? err.message : String(err) });
        }
      })();
    });
  }
}
