/**
 * ServiceAccount and other cluster tokens, checked by the API server itself
 * with a TokenReview. Answers are cached briefly by the token's SHA-256 (the
 * token itself is never kept as a key or logged): positive answers for the
 * configured TTL, negative ones for a short, fixed time so a client retrying a
 * bad token cannot turn the gateway into a TokenReview amplifier.
 */
import { hash } from 'node:crypto';
import type { Identity } from '../../core/identity.ts';
import { AuthError } from '../errors.ts';
import { checkIdentity } from './identity-check.ts';
import { upstreamJson, type UpstreamTarget } from '../upstream.ts';

/** Options of {@link TokenReviewAuthenticator}. */
export interface TokenReviewOptions {
  upstream: UpstreamTarget;
  /** How long an authenticated answer is reused (ms). */
  cacheTtlMs: number;
  /** How long a rejection is reused (ms). */
  negativeCacheTtlMs?: number;
  /** Audiences to ask for; empty means the API server's own. */
  audiences?: readonly string[];
  maxEntries?: number;
  now?: () => number;
}

/** The cache key of a bearer token: its SHA-256 (base64); the token itself is never kept. */
export function tokenKey(token: string): string {
  return hash('sha256', token, 'base64');
}

interface Entry {
  identity: Identity | undefined;
  expires: number;
}

const SA_PREFIX = 'system:serviceaccount:';

/** Authenticates tokens by asking the API server. */
export class TokenReviewAuthenticator {
  readonly #opts: Required<Omit<TokenReviewOptions, 'audiences'>> & { audiences: readonly string[] };
  readonly #cache = new Map<string, Entry>();
  readonly #inflight = new Map<string, Promise<Identity | undefined>>();

  constructor(opts: TokenReviewOptions) {
    this.#opts = {
      upstream: opts.upstream,
      cacheTtlMs: opts.cacheTtlMs,
      negativeCacheTtlMs: opts.negativeCacheTtlMs ?? 2000,
      audiences: opts.audiences ?? [],
      maxEntries: opts.maxEntries ?? 10_000,
      now: opts.now ?? Date.now,
    };
  }

  /** The cached, still valid identity of the token with key `key` ({@link tokenKey}); undefined on a miss or a cached rejection. */
  peek(key: string): Identity | undefined {
    const hit = this.#cache.get(key);
    return hit !== undefined && hit.expires > this.#opts.now() ? hit.identity : undefined;
  }

  /** Returns the identity, or throws AUTH_ERR_TOKEN_REJECTED / AUTH_ERR_TOKEN_REVIEW_FAILED. `key` is {@link tokenKey}(token), if already computed. */
  async authenticate(token: string, key: string = tokenKey(token)): Promise<Identity> {
    const now = this.#opts.now();
    const hit = this.#cache.get(key);
    let identity: Identity | undefined;
    if (hit && hit.expires > now) {
      identity = hit.identity;
    } else {
      let p = this.#inflight.get(key);
      if (!p) {
        p = this.#review(token).finally(() => this.#inflight.delete(key));
        this.#inflight.set(key, p);
      }
      identity = await p;
      if (this.#cache.size >= this.#opts.maxEntries) {
        // Drop expired entries first; if still full, start over (bounded memory beats a perfect LRU here).
        for (const [k, e] of this.#cache) if (e.expires <= now) this.#cache.delete(k);
        if (this.#cache.size >= this.#opts.maxEntries) this.#cache.clear();
      }
      this.#cache.set(key, { identity, expires: now + (identity ? this.#opts.cacheTtlMs : this.#opts.negativeCacheTtlMs) });
    }
    if (!identity) throw new AuthError('AUTH_ERR_TOKEN_REJECTED', 'the API server did not authenticate the token');
    return identity;
  }

  async #review(token: string): Promise<Identity | undefined> {
    const spec: Record<string, unknown> = { token };
    if (this.#opts.audiences.length > 0) spec['audiences'] = this.#opts.audiences;
    let reply: { status: number; body: unknown };
    try {
      reply = await upstreamJson(this.#opts.upstream, 'POST', '/apis/authentication.k8s.io/v1/tokenreviews', {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenReview',
        spec,
      });
    } catch (err) {
      throw new AuthError('AUTH_ERR_TOKEN_REVIEW_FAILED', 'TokenReview request failed', { cause: err });
    }
    if (reply.status !== 201 && reply.status !== 200) throw new AuthError('AUTH_ERR_TOKEN_REVIEW_FAILED', `TokenReview answered ${reply.status}`);
    const status = (reply.body as { status?: { authenticated?: unknown; user?: { username?: unknown; uid?: unknown; groups?: unknown; extra?: unknown } } }).status;
    if (status?.authenticated !== true || typeof status.user?.username !== 'string' || status.user.username === '') return undefined;
    const u = status.user;
    const username = u.username as string;
    const id: Identity = {
      username,
      groups: Array.isArray(u.groups) ? u.groups.filter((g): g is string => typeof g === 'string') : [],
      authn: username.startsWith(SA_PREFIX) ? 'serviceaccount' : 'token',
    };
    if (typeof u.uid === 'string' && u.uid !== '') id.uid = u.uid;
    if (u.extra !== null && typeof u.extra === 'object') {
      const extra: Record<string, string[]> = {};
      for (const [k, v] of Object.entries(u.extra as Record<string, unknown>)) {
        if (Array.isArray(v)) extra[k] = v.filter((x): x is string => typeof x === 'string');
      }
      if (Object.keys(extra).length > 0) id.extra = extra;
    }
    if (id.authn === 'serviceaccount') id.subject = username;
    try {
      checkIdentity(id);
    } catch {
      // Not forwardable as Impersonate-* values: a rejection, cached like one (no re-review per request).
      return undefined;
    }
    return id;
  }
}
