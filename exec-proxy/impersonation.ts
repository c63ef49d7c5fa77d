/**
 * Impersonation, both ways.
 *
 * Outgoing: the gateway forwards every request as the authenticated caller,
 * with headers built from scratch (never copied from the client):
 * `Impersonate-User`, one `Impersonate-Group` line per group, `Impersonate-Uid`,
 * `Impersonate-Extra-<escaped key>` per value, and the session id as
 * `Impersonate-Extra-kubetrail.io%2Fsession` for the webhook to correlate on.
 *
 * Incoming: a client's own `Impersonate-*` headers (kubectl --as) are refused
 * with 403 unless SubjectAccessReviews show the caller may impersonate each
 * requested attribute, exactly the checks the API server's impersonation
 * filter makes (k8s.io/apiserver/pkg/endpoints/filters/impersonation.go).
 */
import type { OutgoingHttpHeaders } from 'node:http';
import type { Identity } from '../core/identity.ts';
import { ProxyError } from './errors.ts';
import { upstreamJson, type UpstreamTarget } from './upstream.ts';

/** The extra key carrying the gateway session id (decoded form). */
const SESSION_EXTRA_KEY = 'kubetrail.io/session';
/** Extra keys the gateway sets itself and never takes from a caller's identity. */
const RESERVED_EXTRA_PREFIX = 'kubetrail.io/';

// RFC 7230 tchar, minus '%', which escapes (client-go transport/round_trippers.go headerKeyEscape).
const TOKEN_CHAR = /^[A-Za-z0-9!#$&'*+\-.^_`|~]$/;

/** Escapes an extra key for an `Impersonate-Extra-` header name: lower-cased, bytes outside tchar (and '%') as %XX. */
export function escapeExtraKey(key: string): string {
  let out = '';
  for (const byte of Buffer.from(key.toLowerCase(), 'utf8')) {
    const ch = String.fromCharCode(byte);
    out += byte < 0x80 && TOKEN_CHAR.test(ch) ? ch : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** Reverses {@link escapeExtraKey} the way the API server does: lower-case, then path-unescape. */
export function unescapeExtraKey(escaped: string): string {
  try {
    return decodeURIComponent(escaped.toLowerCase());
  } catch {
    throw new ProxyError('PROXY_ERR_IMPERSONATION_INVALID', 'bad escape in an Impersonate-Extra header name');
  }
}

/**
 * Header values go on the wire as UTF-8 bytes, like Go's net/http sends them.
 * Node writes header strings as latin1, so UTF-8 is re-encoded into a latin1
 * string of the same bytes. Control characters cannot be sent and are refused.
 */
function headerValue(v: string): string {
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0008\u000a-\u001f\u007f]/.test(v)) {
    throw new ProxyError('PROXY_ERR_IMPERSONATION_INVALID', 'identity contains a control character');
  }
  return /^[\u0000-\u007f]*$/.test(v) ? v : Buffer.from(v, 'utf8').toString('latin1');
}

/** `Impersonate-Extra-` header name of the session id (constant: escaped once). */
const SESSION_HEADER = `impersonate-extra-${escapeExtraKey(SESSION_EXTRA_KEY)}`;

const AUTHENTICATED = 'system:authenticated';
const UNAUTHENTICATED = 'system:unauthenticated';
const SA_PREFIX = 'system:serviceaccount:';
// apimachinery ValidateNamespaceName (DNS-1123 label) and ValidateServiceAccountName (DNS-1123 subdomain).
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/**
 * Namespace and name of a ServiceAccount username, exactly as the API
 * server's serviceaccount.SplitUsername accepts it; undefined for any other
 * name (which the API server then treats as a plain user).
 */
export function splitServiceAccount(username: string): { namespace: string; name: string } | undefined {
  if (!username.startsWith(SA_PREFIX)) return undefined;
  const parts = username.slice(SA_PREFIX.length).split(':');
  if (parts.length !== 2 || !DNS1123_LABEL.test(parts[0]!) || !DNS1123_SUBDOMAIN.test(parts[1]!)) return undefined;
  return { namespace: parts[0]!, name: parts[1]! };
}

/**
 * The `Impersonate-Group` values for an identity: its groups minus those the
 * API server's impersonation filter adds by itself, because every group sent
 * costs the API server one more authorization check (`impersonate groups`) on
 * every request. The impersonated identity the API server builds is the same
 * set of groups either way:
 * - `system:authenticated` is appended to any non-anonymous user whose groups
 *   hold neither it nor `system:unauthenticated`, so it is never sent for them;
 * - a ServiceAccount username with no groups gets exactly
 *   `system:serviceaccounts`, `system:serviceaccounts:<ns>` (and
 *   `system:authenticated`), so when those are all its groups, none is sent.
 * Anonymous identities, and any group set not covered above, are sent as is.
 */
export function groupsToSend(username: string, groups: readonly string[]): readonly string[] {
  if (username === 'system:anonymous' || groups.includes(UNAUTHENTICATED)) return groups;
  const rest = groups.filter((g) => g !== AUTHENTICATED);
  const ns = splitServiceAccount(username)?.namespace;
  if (ns !== undefined && new Set(rest).size === rest.length && rest.length === 2 && rest.includes('system:serviceaccounts') && rest.includes(`system:serviceaccounts:${ns}`)) return [];
  return rest;
}

/**
 * The impersonation headers of one identity, built once per Identity object
 * and reused while that object lives (the authenticators hand out the same
 * cached object for every request of a token, so the escaping and checks run
 * once per token, not per request). Identities are never mutated after they
 * are made; the arrays are shared and never mutated either.
 */
const identityHeaderCache = new WeakMap<Identity, Readonly<OutgoingHttpHeaders>>();

function identityHeaders(identity: Identity): Readonly<OutgoingHttpHeaders> {
  let headers = identityHeaderCache.get(identity);
  if (headers !== undefined) return headers;
  const h: OutgoingHttpHeaders = {};
  h['impersonate-user'] = headerValue(identity.username);
  const groups = groupsToSend(identity.username, identity.groups);
  if (groups.length > 0) h['impersonate-group'] = groups.map(headerValue);
  if (identity.uid !== undefined && identity.uid !== '') h['impersonate-uid'] = headerValue(identity.uid);
  for (const [key, values] of Object.entries(identity.extra ?? {})) {
    if (key.toLowerCase().startsWith(RESERVED_EXTRA_PREFIX) || values.length === 0) continue;
    h[`impersonate-extra-${escapeExtraKey(key)}`] = values.map(headerValue);
  }
  headers = Object.freeze(h);
  identityHeaderCache.set(identity, headers);
  return headers;
}

/**
 * Builds the identity part of an upstream request: the gateway's own bearer
 * token (when `upstream` is given and uses one; a client certificate lives in
 * the agent instead) plus the impersonation headers for `identity` and the
 * session id. Arrays make node:http send one header line per value.
 */
export function buildUpstreamHeaders(identity: Identity, sessionId: string, upstream?: Pick<UpstreamTarget, 'authorization'>): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = {};
  const auth = upstream?.authorization();
  if (auth) headers['authorization'] = auth;
  Object.assign(headers, identityHeaders(identity));
  headers[SESSION_HEADER] = headerValue(sessionId);
  return headers;
}

/** What a client asked to impersonate with its own headers. */
export interface RequestedImpersonation {
  user: string;
  groups: string[];
  uid?: string;
  extra: Record<string, string[]>;
}

/**
 * Reads the client's own impersonation headers, in any letter case (Node
 * lower-cases header names; `headersDistinct` keeps repeated lines apart).
 * Returns undefined when there are none; throws 400 for a malformed set
 * (group/uid/extra without user, several users, unknown Impersonate-* names).
 */
export function readClientImpersonation(headersDistinct: Record<string, string[] | undefined>): RequestedImpersonation | undefined {
  let user: string[] | undefined;
  let groups: string[] = [];
  let uid: string[] | undefined;
  const extra: Record<string, string[]> = {};
  let any = false;
  for (const [name, values] of Object.entries(headersDistinct)) {
    if (values === undefined) continue;
    const n = name.toLowerCase();
    if (!n.startsWith('impersonate-')) continue;
    any = true;
    if (n === 'impersonate-user') user = values;
    else if (n === 'impersonate-group') groups = values;
    else if (n === 'impersonate-uid') uid = values;
    else if (n.startsWith('impersonate-extra-')) {
      const key = unescapeExtraKey(n.slice('impersonate-extra-'.length));
      (extra[key] ??= []).push(...values);
    } else throw new ProxyError('PROXY_ERR_IMPERSONATION_INVALID', `unknown impersonation header ${n}`);
  }
  if (!any) return undefined;
  if (user === undefined || user.length !== 1 || user[0] === '') {
    throw new ProxyError('PROXY_ERR_IMPERSONATION_INVALID', 'impersonation needs exactly one Impersonate-User');
  }
  if (uid !== undefined && uid.length !== 1) throw new ProxyError('PROXY_ERR_IMPERSONATION_INVALID', 'at most one Impersonate-Uid');
  const out: RequestedImpersonation = { user: user[0] as string, groups, extra };
  if (uid?.[0] !== undefined) out.uid = uid[0];
  return out;
}

/** True when any header name, in any letter case, starts with `impersonate-`. Cheap pre-check on the hot path (raw header lines). */
export function hasImpersonationHeaders(rawHeaders: readonly string[]): boolean {
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const n = rawHeaders[i] as string;
    if (n.length > 12 && (n.charCodeAt(0) | 0x20) === 0x69 && n.slice(0, 12).toLowerCase() === 'impersonate-') return true;
  }
  return false;
}

/** One attribute the caller must be allowed to impersonate. */
interface ImpersonationAttribute {
  group: string;
  resource: string;
  subresource?: string;
  namespace?: string;
  name: string;
}

function attributesFor(r: RequestedImpersonation): ImpersonationAttribute[] {
  const attrs: ImpersonationAttribute[] = [];
  // The API server's rule (impersonation.go buildImpersonationRequests): a name SplitUsername accepts is a ServiceAccount, anything else a user.
  const sa = splitServiceAccount(r.user);
  if (sa !== undefined) {
    attrs.push({ group: '', resource: 'serviceaccounts', namespace: sa.namespace, name: sa.name });
  } else {
    attrs.push({ group: '', resource: 'users', name: r.user });
  }
  for (const g of r.groups) attrs.push({ group: '', resource: 'groups', name: g });
  if (r.uid !== undefined) attrs.push({ group: 'authentication.k8s.io', resource: 'uids', name: r.uid });
  for (const [key, values] of Object.entries(r.extra)) {
    for (const v of values) attrs.push({ group: 'authentication.k8s.io', resource: 'userextras', subresource: key, name: v });
  }
  return attrs;
}

/** Options of {@link ImpersonationAuthorizer}. */
export interface ImpersonationAuthorizerOptions {
  upstream: UpstreamTarget;
  /** How long an allowed or denied SubjectAccessReview answer is reused (ms). */
  cacheTtlMs: number;
  /** Injectable clock (ms). */
  now?: () => number;
}

/**
 * Decides whether an authenticated caller may impersonate what it asked for,
 * with one SubjectAccessReview per attribute (cached briefly). Fails closed:
 * an unreachable API server means no impersonation.
 */
export class ImpersonationAuthorizer {
  readonly #upstream: UpstreamTarget;
  readonly #ttl: number;
  readonly #now: () => number;
  readonly #cache = new Map<string, { allowed: boolean; expires: number }>();

  constructor(opts: ImpersonationAuthorizerOptions) {
    this.#upstream = opts.upstream;
    this.#ttl = opts.cacheTtlMs;
    this.#now = opts.now ?? Date.now;
  }

  /** Returns the identity to forward as, or throws PROXY_ERR_IMPERSONATION_FORBIDDEN. */
  async authorize(caller: Identity, requested: RequestedImpersonation): Promise<Identity> {
    for (const attr of attributesFor(requested)) {
      if (!(await this.#allowed(caller, attr))) {
        throw new ProxyError('PROXY_ERR_IMPERSONATION_FORBIDDEN', `caller may not impersonate ${attr.resource}`, {
          clientMessage: `${attr.resource} "${attr.name}" is forbidden: User "${caller.username}" cannot impersonate resource "${attr.resource}" in API group "${attr.group}"`,
        });
      }
    }
    let groups = requested.groups;
    const sa = splitServiceAccount(requested.user);
    if (sa !== undefined && groups.length === 0) {
      // What the API server does for an impersonated service account with no groups given.
      groups = ['system:serviceaccounts', `system:serviceaccounts:${sa.namespace}`];
    }
    const out: Identity = { username: requested.user, groups, authn: caller.authn };
    if (requested.uid !== undefined) out.uid = requested.uid;
    if (Object.keys(requested.extra).length > 0) out.extra = requested.extra;
    return out;
  }

  async #allowed(caller: Identity, attr: ImpersonationAttribute): Promise<boolean> {
    const spec: Record<string, unknown> = {
      user: caller.username,
      groups: caller.groups,
      resourceAttributes: { verb: 'impersonate', ...attr },
    };
    if (caller.uid !== undefined) spec['uid'] = caller.uid;
    if (caller.extra !== undefined) spec['extra'] = caller.extra;
    const key = JSON.stringify(spec);
    const now = this.#now();
    const hit = this.#cache.get(key);
    if (hit && hit.expires > now) return hit.allowed;
    let reply: { status: number; body: unknown };
    try {
      reply = await upstreamJson(this.#upstream, 'POST', '/apis/authorization.k8s.io/v1/subjectaccessreviews', {
        apiVersion: 'authorization.k8s.io/v1',
        kind: 'SubjectAccessReview',
        spec,
      });
    } catch (err) {
      throw new ProxyError('PROXY_ERR_AUTHORIZATION_FAILED', 'SubjectAccessReview failed', { cause: err });
    }
    if (reply.status !== 201 && reply.status !== 200) {
      throw new ProxyError('PROXY_ERR_AUTHORIZATION_FAILED', `SubjectAccessReview answered ${reply.status}`);
    }
    const allowed = (reply.body as { status?: { allowed?: unknown } }).status?.allowed === true;
    if (this.#cache.size > 10_000) this.#cache.clear();
    this.#cache.set(key, { allowed, expires: now + this.#ttl });
    return allowed;
  }
}
