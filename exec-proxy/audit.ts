/**
 * Per-request audit: one `api.request` event per API request through the
 * gateway, with identity, verb, target, status, latency, bytes and, for
 * writes, the request body (masked) when it fits the recorded-body limit.
 * Discovery calls can be sampled (one event per N calls, `sampled: N`).
 * Bodies that are not JSON or YAML (protobuf, CBOR) are not decoded: the
 * event says so (`{unrecorded: <content type>, bytes}`).
 *
 * The auditor only builds and emits; the relay decides when to wait: a
 * write's response completes only after its event is durable.
 */
import { parse as parseYaml } from 'yaml';
import type { Decision, Target } from '../core/events/model.ts';
import { apiRequest } from '../core/events/builders.ts';
import { compileObjectMasking, maskObject } from '../core/masking/object.ts';
import type { Identity } from '../core/identity.ts';
import type { EventSink } from '../core/sinks/sink.ts';
import type { Logger } from '../core/logger.ts';
import type { RequestInfo } from './request-info.ts';

/** Masks a decoded write body before it is recorded. Pure. */
export type BodyMasker = (body: unknown, target: Target) => unknown;

/**
 * The masking of recorded write bodies: the shared object masker
 * (core/masking/object.ts, the same the webhook uses: Secret data, env values
 * by name, configured paths, last-applied annotation). A patch to a Secret
 * carries no `kind`, so it is masked as a Secret all the same.
 */
export function createDefaultMasker(opts: { envNamePatterns: readonly string[]; paths: readonly string[] }): BodyMasker {
  const m = compileObjectMasking({ envNamePatterns: opts.envNamePatterns, paths: opts.paths });
  return (body, target) => {
    if (target.resource === 'secrets' && target.subresource === undefined && body !== null && typeof body === 'object' && !Array.isArray(body) && !('kind' in body)) {
      const masked = maskObject(m, { ...(body as Record<string, unknown>), kind: 'Secret', apiVersion: 'v1' }) as Record<string, unknown>;
      delete masked['kind'];
      delete masked['apiVersion'];
      return masked;
    }
    return maskObject(m, body);
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
