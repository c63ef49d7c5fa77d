/**
 * Namespace lookup for the webhook: gives policies `namespaceObject` (and
 * namespace label selectors their labels), as ValidatingAdmissionPolicy does.
 * The API server does not put the Namespace in an AdmissionReview, so the
 * webhook reads it with its own credentials (needs `get namespaces`), caches
 * each answer for `cacheTtlMs`, and shares one request among concurrent
 * reviews of the same namespace.
 *
 * Answers: the Namespace object; null when it does not exist (404); and a
 * rejected promise when it cannot be read, which the handler turns into
 * "unknown" (label selectors then match: fail closed).
 */
import { ApiException, CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import type { NamespaceLookup } from './handler.ts';

/** Where to read namespaces from. */
export interface NamespaceLookupOptions {
  /** Path of a kubeconfig (its current context, or `context`). */
  kubeconfig?: string;
  context?: string;
  /** Use the pod's service account instead of a kubeconfig. */
  inCluster?: boolean;
  /** How long an answer is reused (ms). */
  cacheTtlMs: number;
  now?: () => number;
}

/** Builds a cached {@link NamespaceLookup}; throws when the kubeconfig cannot be loaded. */
export function createNamespaceLookup(opts: NamespaceLookupOptions): NamespaceLookup {
  const kc = new KubeConfig();
  if (opts.inCluster) kc.loadFromCluster();
  else if (opts.kubeconfig !== undefined) kc.loadFromFile(opts.kubeconfig);
  else kc.loadFromDefault();
  if (opts.context) kc.setCurrentContext(opts.context);
  const api = kc.makeApiClient(CoreV1Api);
  const now = opts.now ?? Date.now;
  const cache = new Map<string, { at: number; value: Promise<unknown> }>();
  return (name: string) => {
    const hit = cache.get(name);
    if (hit && now() - hit.at < opts.cacheTtlMs) return hit.value;
    const value = api.readNamespace({ name }).then(
      // Plain JSON, as policies expect (the client returns class instances with Date fields).
      (ns) => JSON.parse(JSON.stringify(ns)) as unknown,
      (err: unknown) => {
        if (err instanceof ApiException && err.code === 404) return null;
        cache.delete(name); // do not cache failures
        throw err;
      },
    );
    cache.set(name, { at: now(), value });
    // Bound the cache: namespaces are few, but names in requests are caller-controlled.
    if (cache.size > 10_000) for (const k of [...cache.keys()].slice(0, 1000)) cache.delete(k);
    return value;
  };
}
