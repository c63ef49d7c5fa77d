/**
 * Per-request audit: one `api.request` event per API request through the
 * gateway, with identity, verb, target, status, latency, bytes and, for
 * writes, the request body (masked) when it fits the recorded-body limit.
 * Discovery calls can be sampled (one event per N calls, `sampled: N`).
 *
 * The auditor only builds and emits; the relay decides when to wait: a
 * write's response completes only after its event is durable.
 */
import { parse as parseYaml } from 'yaml';
import type { Decision, Target } from '../core/events/model.ts';
import { apiRequest } from '../core/events/builders.ts';
import type { Identity } from '../core/identity.ts';
import type { EventSink } from '../core/sinks/sink.ts';
import type { Logger } from '../core/logger.ts';
import type { RequestInfo } from './request-info.ts';

/** Masks a decoded write body before it is recorded. Pure. */
export type BodyMasker = (body: unknown, target: Target) => unknown;

const MASK = '***';

/**
 * The gateway's own masking of recorded write bodies, used until a shared
 * object masker is wired in: every value of a Secret's `data`/`stringData`
 * (and of Secrets inside a List), and the `value` of any env var whose name
 * matches one of `envNamePatterns` (case-insensitive regexes).
 */
export function createDefaultMasker(envNamePatterns: readonly string[]): BodyMasker {
  const envRes = envNamePatterns.map((p) => new RegExp(p, 'i'));
  const walk = (v: unknown, inSecret: boolean): unknown => {
    if (Array.isArray(v)) return v.map((x) => walk(x, inSecret));
    if (v === null || typeof v !== 'object') return v;
    const o = v as Record<string, unknown>;
    const isSecret = inSecret || o['kind'] === 'Secret';
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(o)) {
      if (isSecret && (k === 'data' || k === 'stringData') && x !== null && typeof x === 'object' && !Array.isArray(x)) {
        out[k] = Object.fromEntries(Object.keys(x as object).map((key) => [key, MASK]));
      } else if (k === 'env' && Array.isArray(x)) {
        out[k] = x.map((e: unknown) => {
          if (e === null || typeof e !== 'object') return e;
          const env = e as Record<string, unknown>;
          return typeof env['name'] === 'string' && 'value' in env && envRes.some((re) => re.test(env['name'] as string)) ? { ...env, value: MASK } : walk(env, false);
        });
      } else {
        out[k] = walk(x, false);
      }
    }
    return out;
  };
  return (body, target) => {
    // A write to the secrets resource may be a patch (no kind): mask its data too.
    if (target.resource === 'secrets' && body !== null && typeof body === 'object' && !Array.isArray(body)) {
      const b = body as Record<string, unknown>;
      return walk({ ...b, kind: b['kind'] ?? 'Secret' }, true) as Record<string, unknown>;
    }
    return walk(body, false);
  };
}

/** Decodes a recorded write body by content type; undefined when it is not a text format we can read. */
export function decodeBody(contentType: string | undefined, body: Buffer): { ok: true; value: unknown } | { ok: false; reason: string } {
  const ct = (contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
  try {
    if (ct === 'application/json' || ct.endsWith('+json')) return { ok: true, value: JSON.parse(body.toString('utf8')) };
    if (ct === 'application/yaml' || ct.endsWith('+yaml')) return { ok: true, value: parseYaml(body.toString('utf8')) };
  } catch {
    return { ok: false, reason: 'unparseable' };
  }
  // Protobuf and CBOR bodies are relayed faithfully but not decoded here.
  return { ok: false, reason: ct === '' ? 'no content type' : ct };
}

/** Everything known about one finished (or refused) request. */
export interface RequestRecord {
  identity: Identity | undefined;
  info: RequestInfo;
  method: string;
  path: string;
  query: string | undefined;
  status: number;
  latencyMs: number;
  bytesIn: number;
  bytesOut: number;
  userAgent: string | undefined;
  sourceIp: string | undefined;
  sessionId: string;
  auditId: string | undefined;
  /** The write body as received (undefined when not recorded). */
  body?: Buffer | undefined;
  bodyContentType?: string | undefined;
  bodyTruncated?: boolean;
  decision?: Decision;
}

/** Options of {@link ApiAuditor}. */
export interface ApiAuditorOptions {
  sink: EventSink;
  log: Logger;
  /** Record one discovery call in N (1 = every call). */
  discoverySampleRate: number;
  mask: BodyMasker;
}

/** Builds and emits `api.request` events. */
export class ApiAuditor {
  readonly #opts: ApiAuditorOptions;
  #discoverySeen = 0;

  constructor(opts: ApiAuditorOptions) {
    this.#opts = opts;
  }

  /**
   * Emits the event for `r`; resolves once it is durable. Returns undefined
   * when sampling skips this (discovery) call.
   */
  record(r: RequestRecord): Promise<unknown> | undefined {
    let sampled: number | undefined;
    const rate = this.#opts.discoverySampleRate;
    if (r.info.isDiscovery && rate > 1) {
      this.#discoverySeen++;
      if (this.#discoverySeen % rate !== 1) return undefined;
      sampled = rate;
    }
    const body: Parameters<typeof apiRequest>[1] = {
      verb: r.info.verb,
      method: r.method,
      path: r.path,
      status: r.status,
      latencyMs: Math.round(r.latencyMs * 1000) / 1000,
      bytesIn: r.bytesIn,
      bytesOut: r.bytesOut,
    };
    if (r.query) body.query = r.query;
    if (r.userAgent) body.userAgent = r.userAgent;
    if (r.sourceIp) body.sourceIp = r.sourceIp;
    if (sampled !== undefined) body.sampled = sampled;
    if (r.decision) body.decision = r.decision;
    if (r.bodyTruncated) body.requestBodyTruncated = true;
    if (r.body !== undefined && r.body.length > 0) {
      const decoded = decodeBody(r.bodyContentType, r.body);
      if (decoded.ok) body.requestBody = this.#opts.mask(decoded.value, r.info.target);
      else body.requestBody = { unrecorded: decoded.reason, bytes: r.body.length };
    }
    const correlation: { session: string; auditId?: string } = { session: r.sessionId };
    if (r.auditId) correlation.auditId = r.auditId;
    const parts: Parameters<typeof apiRequest>[0] = { correlation };
    if (r.identity) parts.actor = r.identity;
    if (Object.keys(r.info.target).length > 0) parts.target = r.info.target;
    return this.#opts.sink.emit(apiRequest(parts, body));
  }
}
