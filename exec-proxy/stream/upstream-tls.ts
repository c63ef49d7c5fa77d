/**
 * The upstream TLS context cache of the stream relay (exec, attach and
 * port-forward connections to the API server): one OpenSSL SecureContext per
 * upstream configuration instead of one per session.
 */
import { createSecureContext, type ConnectionOptions } from 'node:tls';

/** Upstream TLS options by the identity of their ca/cert/key values; a few at most (credential rotation adds one). */
const secureContexts = new Map<string, ConnectionOptions>();
const MAX_SECURE_CONTEXTS = 8;
const materialIds = new WeakMap<object, number>();
let nextMaterialId = 0;

/** A key for a ca/cert/key value: strings by content, Buffers and arrays by identity. */
function materialKey(v: unknown): string {
  if (v === undefined) return '-';
  if (typeof v === 'string') return `s${v.length}:${v}`;
  if (typeof v === 'object' && v !== null) {
    let id = materialIds.get(v);
    if (id === undefined) {
      id = nextMaterialId++;
      materialIds.set(v, id);
    }
    return `o${id}`;
  }
  return `?${String(v)}`;
}

/**
 * Upstream TLS options with one SecureContext per upstream configuration:
 * passing `ca`/`cert`/`key` to every connection would parse them and build a
 * new OpenSSL context per session. The gateway hands every session a fresh
 * copy of its TLS options, so the cache is keyed by the material they carry
 * (the same strings or Buffers each time), not by the options object.
 */
export function upstreamTls(tls: ConnectionOptions): ConnectionOptions {
  if (tls.secureContext !== undefined || (tls.ca === undefined && tls.cert === undefined && tls.key === undefined)) return tls;
  const { ca, cert, key, ...rest } = tls;
  const id = `${materialKey(ca)}|${materialKey(cert)}|${materialKey(key)}`;
  let base = secureContexts.get(id);
  if (base === undefined) {
    base = { secureContext: createSecureContext({ ...(ca !== undefined ? { ca } : {}), ...(cert !== undefined ? { cert } : {}), ...(key !== undefined ? { key } : {}) }) };
    if (secureContexts.size >= MAX_SECURE_CONTEXTS) secureContexts.delete(secureContexts.keys().next().value as string);
    secureContexts.set(id, base);
  }
  return { ...rest, secureContext: base.secureContext };
}
