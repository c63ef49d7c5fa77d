/**
 * OIDC JWT authentication, checked the way the API server's structured
 * AuthenticationConfiguration `jwt[]` authenticator does
 * (k8s.io/apiserver/plugin/pkg/authenticator/token/oidc/oidc.go):
 * exact issuer, discovery + JWKS (cached, refetched on an unknown key id with
 * a cooldown, so rotated keys are picked up), configured audiences,
 * asymmetric algorithms only (RS/ES/PS; `none` and HMAC can never verify),
 * exp/nbf with a bounded leeway, claim validation rules, claim mappings with
 * prefixes, user validation rules. Several issuers at once, chosen by the
 * token's (unverified) `iss`; a token whose `iss` matches no issuer is not
 * ours and is left to the next authenticator.
 *
 * A verified token's identity is cached briefly (10 s by default, never past
 * the token's own exp + leeway), keyed by the token's SHA-256 as the API
 * server's token cache does, so a client reusing its token does not pay a
 * signature check per request. Failures are not cached.
 */
import https from 'node:https';
import { readFileSync } from 'node:fs';
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify, type JSONWebKeySet, type JWTPayload } from 'jose';
import type { Identity } from '../../core/identity.ts';
import type { Config } from '../../core/config.ts';
import { AuthError, type AuthErrorCode } from '../errors.ts';
import { checkIdentity } from './identity-check.ts';
import { tokenKey } from './token-review.ts';
import { celToJs, compileExpression, type CompiledExpression } from './cel-rules.ts';

/** One `jwt[]` entry of the configuration. */
export type JwtIssuerConfig = Config['proxy']['authn']['jwt'][number];

/** The only algorithms accepted, as the API server allows (oidc.go allowedSigningAlgs). */
const ALLOWED_ALGORITHMS: readonly string[] = ['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512'];

/** Options shared by every issuer. */
export interface JwtAuthenticatorOptions {
  /** Allowed clock skew for exp/nbf (s). */
  leewaySeconds: number;
  /** An unknown key id triggers a JWKS refetch at most this often (ms). */
  jwksRefetchCooldownMs?: number;
  /** JWKS are also refetched when older than this (ms). */
  jwksMaxAgeMs?: number;
  /** Largest discovery or JWKS document accepted (bytes). */
  maxDocumentBytes?: number;
  fetchTimeoutMs?: number;
  /** How long a verified token's identity is reused (ms); 0 disables the cache. Never past the token's exp + leeway. */
  cacheTtlMs?: number;
  /** Most cached tokens kept. */
  maxCacheEntries?: number;
  /** Injectable clock. */
  now?: () => Date;
}

function getJson(url: string, ca: Buffer | undefined, maxBytes: number, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    if (u.protocol !== 'https:') {
      reject(new AuthError('AUTH_ERR_DISCOVERY', 'OIDC documents must be served over https'));
      return;
    }
    const req = https.get(u, { ...(ca ? { ca } : {}), headers: { accept: 'application/json' } }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new AuthError('AUTH_ERR_DISCOVERY', `GET ${u.pathname} answered ${res.statusCode}`));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > maxBytes) {
          req.destroy(new AuthError('AUTH_ERR_DISCOVERY', `GET ${u.pathname} is larger than ${maxBytes} bytes`));
          return;
        }
        chunks.push(c);
      });
      res.on('end', () => {
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
        } catch (err) {
          reject(new AuthError('AUTH_ERR_DISCOVERY', `GET ${u.pathname} is not JSON`, { cause: err }));
        }
      });
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new AuthError('AUTH_ERR_DISCOVERY', `GET ${u.pathname} timed out`)));
    req.on('error', (err) => reject(err instanceof AuthError ? err : new AuthError('AUTH_ERR_DISCOVERY', `GET ${u.pathname} failed`, { cause: err })));
  });
}

interface CompiledMapping {
  claim?: string;
  expression?: CompiledExpression;
  prefix: string;
}

/** One configured issuer: its key set and compiled rules. */
class Issuer {
  readonly url: string;
  readonly #cfg: JwtIssuerConfig;
  readonly #opts: Required<Omit<JwtAuthenticatorOptions, 'now'>> & { now: () => Date };
  readonly #ca: Buffer | undefined;
  #jwks: { set: ReturnType<typeof createLocalJWKSet>; kids: Set<string>; fetchedAt: number } | undefined;
  #inflight: Promise<void> | undefined;
  readonly #claimRules: { claim?: string; requiredValue?: string; expression?: CompiledExpression; message: string }[];
  readonly #userRules: { expression: CompiledExpression; message: string }[];
  readonly #username: CompiledMapping;
  readonly #groups: CompiledMapping | undefined;
  readonly #uid: CompiledMapping | undefined;
  readonly #extra: { key: string; expression: CompiledExpression }[];

  constructor(cfg: JwtIssuerConfig, index: number, opts: Required<Omit<JwtAuthenticatorOptions, 'now'>> & { now: () => Date }) {
    this.url = cfg.issuer.url;
    this.#cfg = cfg;
    this.#opts = opts;
    const at = `proxy.authn.jwt.${index}`;
    this.#ca = cfg.issuer.certificateAuthority !== undefined ? Buffer.from(readCa(cfg.issuer.certificateAuthority)) : undefined;
    this.#claimRules = cfg.claimValidationRules.map((r, i) => {
      const out: { claim?: string; requiredValue?: string; expression?: CompiledExpression; message: string } = {
        message: r.message ?? (r.expression !== undefined ? `claim validation rule ${i} failed` : `claim ${r.claim ?? ''} does not have the required value`),
      };
      if (r.claim !== undefined) out.claim = r.claim;
      if (r.requiredValue !== undefined) out.requiredValue = r.requiredValue;
      if (r.expression !== undefined) out.expression = compileExpression(r.expression, `${at}.claimValidationRules.${i}.expression`);
      return out;
    });
    this.#userRules = cfg.userValidationRules.map((r, i) => ({
      expression: compileExpression(r.expression, `${at}.userValidationRules.${i}.expression`),
      message: r.message ?? `user validation rule ${i} failed`,
    }));
    const mapping = (m: { claim?: string | undefined; expression?: string | undefined; prefix?: string | undefined }, p: string): CompiledMapping => {
      const out: CompiledMapping = { prefix: m.prefix ?? '' };
      if (m.claim !== undefined) out.claim = m.claim;
      if (m.expression !== undefined) out.expression = compileExpression(m.expression, `${at}.claimMappings.${p}.expression`);
      return out;
    };
    this.#username = mapping(cfg.claimMappings.username, 'username');
    this.#groups = cfg.claimMappings.groups ? mapping(cfg.claimMappings.groups, 'groups') : undefined;
    this.#uid = cfg.claimMappings.uid ? mapping(cfg.claimMappings.uid, 'uid') : undefined;
    this.#extra = cfg.claimMappings.extra.map((e, i) => ({ key: e.key, expression: compileExpression(e.valueExpression, `${at}.claimMappings.extra.${i}.valueExpression`) }));
  }

  /** Fetches discovery then the JWKS; concurrent callers share one fetch. */
  refresh(): Promise<void> {
    this.#inflight ??= (async () => {
      try {
        const discoveryUrl = this.#cfg.issuer.discoveryURL ?? `${this.url.replace(/\/$/, '')}/.well-known/openid-configuration`;
        const doc = (await getJson(discoveryUrl, this.#ca, this.#opts.maxDocumentBytes, this.#opts.fetchTimeoutMs)) as { issuer?: unknown; jwks_uri?: unknown };
        // go-oidc refuses a discovery document naming another issuer (unless discoveryURL overrides where it lives).
        if (this.#cfg.issuer.discoveryURL === undefined && doc.issuer !== this.url) {
          throw new AuthError('AUTH_ERR_DISCOVERY', 'discovery document names a different issuer');
        }
        if (typeof doc.jwks_uri !== 'string') throw new AuthError('AUTH_ERR_DISCOVERY', 'discovery document has no jwks_uri');
        const jwks = (await getJson(doc.jwks_uri, this.#ca, this.#opts.maxDocumentBytes, this.#opts.fetchTimeoutMs)) as JSONWebKeySet;
        if (!jwks || !Array.isArray(jwks.keys)) throw new AuthError('AUTH_ERR_DISCOVERY', 'JWKS has no keys array');
        // Only asymmetric keys: a symmetric ("oct") key in a JWKS must never verify anything.
        const keys = jwks.keys.filter((k) => k.kty === 'RSA' || k.kty === 'EC');
        this.#jwks = { set: createLocalJWKSet({ keys }), kids: new Set(keys.map((k) => k.kid ?? '')), fetchedAt: Date.now() };
      } finally {
        this.#inflight = undefined;
      }
    })();
    return this.#inflight;
  }

  async #keySet(kid: string | undefined): Promise<ReturnType<typeof createLocalJWKSet>> {
    const now = Date.now();
    const j = this.#jwks;
    const stale = j === undefined || now - j.fetchedAt > this.#opts.jwksMaxAgeMs;
    const unknownKid = j !== undefined && kid !== undefined && !j.kids.has(kid) && now - j.fetchedAt > this.#opts.jwksRefetchCooldownMs;
    if (stale || unknownKid) {
      try {
        await this.refresh();
      } catch (err) {
        // With keys already cached, keep serving them; without any, nobody can be verified.
        if (this.#jwks === undefined) throw err instanceof AuthError ? err : new AuthError('AUTH_ERR_DISCOVERY', 'cannot fetch the issuer keys', { cause: err });
      }
    }
    return (this.#jwks as { set: ReturnType<typeof createLocalJWKSet> }).set;
  }

  async verify(token: string, alg: string, kid: string | undefined): Promise<{ identity: Identity; exp: number }> {
    if (!ALLOWED_ALGORITHMS.includes(alg)) throw new AuthError('AUTH_ERR_ALGORITHM', 'token algorithm not allowed');
    const keySet = await this.#keySet(kid);
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, keySet, {
        issuer: this.url,
        audience: [...this.#cfg.issuer.audiences],
        algorithms: [...ALLOWED_ALGORITHMS],
        clockTolerance: this.#opts.leewaySeconds,
        currentDate: this.#opts.now(),
        requiredClaims: ['exp'],
      }));
    } catch (err) {
      throw mapJoseError(err);
    }
    return { identity: this.#identity(payload), exp: payload.exp as number };
  }

  #identity(claims: JWTPayload): Identity {
    const vars = { claims };
    for (const r of this.#claimRules) {
      let ok: boolean;
      if (r.expression) ok = evalBool(r.expression, vars);
      else ok = typeof claims[r.claim as string] === 'string' && claims[r.claim as string] === r.requiredValue;
      if (!ok) throw new AuthError('AUTH_ERR_CLAIM_VALIDATION', r.message, r.claim !== undefined ? { claim: r.claim } : {});
    }
    const username = this.#mapString(this.#username, claims, 'username', true) as string;
    if (this.#username.claim === 'email' && 'email_verified' in claims && claims['email_verified'] !== true) {
      throw new AuthError('AUTH_ERR_CLAIM_MAPPING', 'email_verified is not true', { claim: 'email_verified' });
    }
    const groups = this.#groups ? this.#mapList(this.#groups, claims) : [];
    const uid = this.#uid ? this.#mapString(this.#uid, claims, 'uid', false) : undefined;
    const extra: Record<string, string[]> = {};
    for (const e of this.#extra) {
      const v = celToJs(evalAny(e.expression, vars));
      const values = typeof v === 'string' ? [v] : Array.isArray(v) && v.every((x) => typeof x === 'string') ? (v as string[]) : undefined;
      if (values === undefined) throw new AuthError('AUTH_ERR_CLAIM_MAPPING', `extra ${e.key} is not a string or list of strings`);
      if (values.length > 0 && !(values.length === 1 && values[0] === '')) extra[e.key] = values;
    }
    // An issuer must never mint Kubernetes' reserved identities (system:masters, system:serviceaccount:..., system:admin):
    // the API server's JWT authenticator refuses the system: prefix on usernames and groups too.
    if (username.startsWith('system:')) throw new AuthError('AUTH_ERR_USER_VALIDATION', 'username must not have the system: prefix');
    if (groups.some((g) => g.startsWith('system:'))) throw new AuthError('AUTH_ERR_USER_VALIDATION', 'groups must not have the system: prefix');
    const id: Identity = { username, groups, authn: 'oidc', issuer: this.url };
    if (typeof claims.sub === 'string') id.subject = claims.sub;
    if (uid !== undefined) id.uid = uid;
    if (Object.keys(extra).length > 0) id.extra = extra;
    // Before the user rules and before caching: an identity that cannot be forwarded as is must not authenticate.
    checkIdentity(id);
    if (this.#userRules.length > 0) {
      const user = { username: id.username, uid: id.uid ?? '', groups: id.groups, extra: id.extra ?? {} };
      for (const r of this.#userRules) {
        if (!evalBool(r.expression, { user })) throw new AuthError('AUTH_ERR_USER_VALIDATION', r.message);
      }
    }
    return id;
  }

  #mapString(m: CompiledMapping, claims: JWTPayload, what: string, required: boolean): string | undefined {
    let v: unknown;
    if (m.expression) v = celToJs(evalAny(m.expression, { claims }));
    else {
      v = claims[m.claim as string];
      if (v === undefined && !required) return undefined;
    }
    if (typeof v !== 'string' || (required && v === '')) {
      throw new AuthError('AUTH_ERR_CLAIM_MAPPING', `${what} claim missing or not a string`, m.claim !== undefined ? { claim: m.claim } : {});
    }
    return m.expression ? v : m.prefix + v;
  }

  #mapList(m: CompiledMapping, claims: JWTPayload): string[] {
    const v = m.expression ? celToJs(evalAny(m.expression, { claims })) : claims[m.claim as string];
    if (v === undefined || v === null) return [];
    // The API server accepts a single string or an array of strings.
    const list = typeof v === 'string' ? [v] : Array.isArray(v) && v.every((x) => typeof x === 'string') ? (v as string[]) : undefined;
    if (list === undefined) throw new AuthError('AUTH_ERR_CLAIM_MAPPING', 'groups claim is not a string or list of strings', m.claim !== undefined ? { claim: m.claim } : {});
    return m.expression ? list : list.map((g) => m.prefix + g);
  }
}

function readCa(fileOrPem: string): string {
  // The API server takes the PEM content itself; a path is accepted too for convenience.
  return fileOrPem.includes('-----BEGIN') ? fileOrPem : readFileSync(fileOrPem, 'utf8');
}

function evalAny(e: CompiledExpression, vars: Record<string, unknown>): unknown {
  try {
    return e(vars);
  } catch (err) {
    throw new AuthError('AUTH_ERR_CLAIM_MAPPING', 'expression failed to evaluate', { cause: err });
  }
}

function evalBool(e: CompiledExpression, vars: Record<string, unknown>): boolean {
  try {
    return e(vars) === true;
  } catch {
    // A rule that cannot be evaluated (e.g. a missing claim) does not pass: fail closed.
    return false;
  }
}

const JOSE_CODES: Record<string, AuthErrorCode> = {
  ERR_JWT_EXPIRED: 'AUTH_ERR_EXPIRED',
  ERR_JOSE_ALG_NOT_ALLOWED: 'AUTH_ERR_ALGORITHM',
  ERR_JOSE_NOT_SUPPORTED: 'AUTH_ERR_ALGORITHM',
  ERR_JWS_SIGNATURE_VERIFICATION_FAILED: 'AUTH_ERR_SIGNATURE',
  ERR_JWKS_NO_MATCHING_KEY: 'AUTH_ERR_UNKNOWN_KEY',
  ERR_JWKS_MULTIPLE_MATCHING_KEYS: 'AUTH_ERR_UNKNOWN_KEY',
  ERR_JWS_INVALID: 'AUTH_ERR_MALFORMED',
  ERR_JWT_INVALID: 'AUTH_ERR_MALFORMED',
};
const CLAIM_CODES: Record<string, AuthErrorCode> = { nbf: 'AUTH_ERR_NOT_YET_VALID', iat: 'AUTH_ERR_NOT_YET_VALID', aud: 'AUTH_ERR_AUDIENCE', iss: 'AUTH_ERR_ISSUER' };

/** Translates a jose error (by its stable `code`, never its message) into an AuthError. */
function mapJoseError(err: unknown): AuthError {
  if (err instanceof AuthError) return err;
  const e = err as { code?: string; claim?: string };
  if (e.code === 'ERR_JWT_CLAIM_VALIDATION_FAILED') {
    return new AuthError(CLAIM_CODES[e.claim ?? ''] ?? 'AUTH_ERR_CLAIM_VALIDATION', `claim ${e.claim ?? '?'} failed validation`, { cause: err, ...(e.claim ? { claim: e.claim } : {}) });
  }
  return new AuthError(JOSE_CODES[e.code ?? ''] ?? 'AUTH_ERR_MALFORMED', 'token verification failed', { cause: err });
}

/** Verifies OIDC JWTs against every configured issuer. */
export class JwtAuthenticator {
  readonly #issuers = new Map<string, Issuer>();
  readonly #cache = new Map<string, { identity: Identity; expires: number }>();
  readonly #cacheTtlMs: number;
  readonly #maxCacheEntries: number;
  readonly #leewayMs: number;
  readonly #now: () => Date;

  /** Compiles every issuer's rules; a bad expression throws a ConfigError here. */
  constructor(issuers: readonly JwtIssuerConfig[], opts: JwtAuthenticatorOptions) {
    const full = {
      leewaySeconds: opts.leewaySeconds,
      jwksRefetchCooldownMs: opts.jwksRefetchCooldownMs ?? 10_000,
      jwksMaxAgeMs: opts.jwksMaxAgeMs ?? 60 * 60 * 1000,
      maxDocumentBytes: opts.maxDocumentBytes ?? 1024 * 1024,
      fetchTimeoutMs: opts.fetchTimeoutMs ?? 10_000,
      cacheTtlMs: opts.cacheTtlMs ?? 10_000,
      maxCacheEntries: opts.maxCacheEntries ?? 10_000,
      now: opts.now ?? (() => new Date()),
    };
    this.#cacheTtlMs = full.cacheTtlMs;
    this.#maxCacheEntries = full.maxCacheEntries;
    this.#leewayMs = full.leewaySeconds * 1000;
    this.#now = full.now;
    issuers.forEach((cfg, i) => this.#issuers.set(cfg.issuer.url, new Issuer(cfg, i, full)));
  }

  /** Fetches every issuer's keys now, so the first request does not wait; failures are returned, not thrown. */
  async warmUp(): Promise<{ issuer: string; err: unknown }[]> {
    const failed: { issuer: string; err: unknown }[] = [];
    await Promise.all([...this.#issuers.values()].map((i) => i.refresh().catch((err: unknown) => void failed.push({ issuer: i.url, err }))));
    return failed;
  }

  /** The cached identity of a token verified within the cache TTL and not yet past exp + leeway; `key` is tokenKey(token). */
  peek(key: string): Identity | undefined {
    const hit = this.#cache.get(key);
    if (hit === undefined) return undefined;
    if (hit.expires > this.#now().getTime()) return hit.identity;
    this.#cache.delete(key);
    return undefined;
  }

  /**
   * Verifies `token` when its `iss` names a configured issuer; returns
   * undefined when it is not a JWT or names no configured issuer (another
   * authenticator may know it). Throws AuthError for every failed check.
   * `key` is tokenKey(token), if already computed.
   */
  async authenticate(token: string, key?: string): Promise<Identity | undefined> {
    if (this.#issuers.size === 0) return undefined;
    const k = key ?? (this.#cacheTtlMs > 0 ? tokenKey(token) : '');
    if (this.#cacheTtlMs > 0) {
      const hit = this.peek(k);
      if (hit !== undefined) return hit;
    }
    let iss: unknown;
    let alg: string | undefined;
    let kid: string | undefined;
    try {
      const header = decodeProtectedHeader(token);
      alg = header.alg;
      kid = header.kid;
      iss = decodeJwt(token).iss;
    } catch {
      return undefined;
    }
    if (typeof iss !== 'string') return undefined;
    const issuer = this.#issuers.get(iss);
    if (!issuer) return undefined;
    const { identity, exp } = await issuer.verify(token, alg ?? 'none', kid);
    if (this.#cacheTtlMs > 0) {
      const now = this.#now().getTime();
      if (this.#cache.size >= this.#maxCacheEntries) {
        for (const [ck, e] of this.#cache) if (e.expires <= now) this.#cache.delete(ck);
        if (this.#cache.size >= this.#maxCacheEntries) this.#cache.clear();
      }
      this.#cache.set(k, { identity, expires: Math.min(now + this.#cacheTtlMs, exp * 1000 + this.#leewayMs) });
    }
    return identity;
  }
}
