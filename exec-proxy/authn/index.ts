/**
 * The gateway's authentication step: find the caller's bearer token (the
 * `Authorization` header, or for a WebSocket upgrade the
 * `base64url.bearer.authorization.k8s.io.<token>` subprotocol, which is how
 * browsers and client-node authenticate), then try the OIDC issuers and
 * finally TokenReview. Everything fails closed with an AuthError (401).
 */
import type { IncomingMessage } from 'node:http';
import type { Identity } from '../../core/identity.ts';
import { AuthError } from '../errors.ts';
import type { JwtAuthenticator } from './jwt.ts';
import { tokenKey, type TokenReviewAuthenticator } from './token-review.ts';

/** The subprotocol prefix carrying a bearer token (k8s.io/apiserver/pkg/authentication/request/websocket/protocol.go). */
const BEARER_SUBPROTOCOL_PREFIX = 'base64url.bearer.authorization.k8s.io.';

/** The caller's credential, and the WebSocket subprotocols left once a bearer entry is taken out. */
export interface ExtractedCredential {
  token: string;
  /** Offered subprotocols minus bearer entries, in order; undefined when the request offered none. */
  subprotocols: string[] | undefined;
}

function isWebSocketUpgrade(req: IncomingMessage): boolean {
  return (req.headers.upgrade ?? '').toLowerCase() === 'websocket';
}

const isBlank = (c: number): boolean => c === 0x20 || c === 0x09;

/**
 * The token of an `Authorization: Bearer <token>` value (scheme in any case,
 * spaces or tabs around the token, no whitespace inside it), or undefined.
 * Same as /^bearer[ \t]+(\S+)[ \t]*$/i, without backtracking over a long token.
 */
function bearerToken(line: string): string | undefined {
  if (line.length < 8 || line.slice(0, 6).toLowerCase() !== 'bearer' || !isBlank(line.charCodeAt(6))) return undefined;
  let start = 7;
  while (start < line.length && isBlank(line.charCodeAt(start))) start++;
  let end = line.length;
  while (end > start && isBlank(line.charCodeAt(end - 1))) end--;
  if (end === start) return undefined;
  const token = start === 0 && end === line.length ? line : line.slice(start, end);
  return /\s/.test(token) ? undefined : token;
}

/**
 * Reads the bearer token. Refuses (401) a request with no credential, with
 * several Authorization lines, a non-Bearer scheme, a bearer subprotocol on
 * anything but a WebSocket upgrade, or two credentials that disagree.
 */
export function extractCredential(req: IncomingMessage): ExtractedCredential {
  // One pass over the raw lines: repeated headers stay apart, and no header objects are built on the hot path.
  const authLines: string[] = [];
  let protoLines: string[] | undefined;
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const n = (raw[i] as string).toLowerCase();
    if (n === 'authorization') authLines.push(raw[i + 1] as string);
    else if (n === 'sec-websocket-protocol') (protoLines ??= []).push(raw[i + 1] as string);
  }
  if (authLines.length > 1) throw new AuthError('AUTH_ERR_AMBIGUOUS_CREDENTIALS', 'several Authorization headers');
  let headerToken: string | undefined;
  const line = authLines[0];
  if (line !== undefined) {
    headerToken = bearerToken(line);
    if (headerToken === undefined) throw new AuthError('AUTH_ERR_MALFORMED', 'Authorization is not a Bearer token');
  }

  let subprotocols: string[] | undefined;
  let protocolToken: string | undefined;
  if (protoLines !== undefined) {
    subprotocols = [];
    for (const p of protoLines.flatMap((l) => l.split(',')).map((s) => s.trim()).filter((s) => s !== '')) {
      if (p.toLowerCase().startsWith(BEARER_SUBPROTOCOL_PREFIX)) {
        if (!isWebSocketUpgrade(req)) throw new AuthError('AUTH_ERR_AMBIGUOUS_CREDENTIALS', 'bearer subprotocol outside a WebSocket upgrade');
        if (protocolToken !== undefined) throw new AuthError('AUTH_ERR_AMBIGUOUS_CREDENTIALS', 'several bearer subprotocols');
        const encoded = p.slice(BEARER_SUBPROTOCOL_PREFIX.length);
        if (!/^[A-Za-z0-9_-]+$/.test(encoded)) throw new AuthError('AUTH_ERR_MALFORMED', 'bearer subprotocol is not base64url');
        protocolToken = Buffer.from(encoded, 'base64url').toString('utf8');
        if (protocolToken === '') throw new AuthError('AUTH_ERR_MALFORMED', 'empty bearer subprotocol');
      } else {
        subprotocols.push(p);
      }
    }
  }
  if (headerToken !== undefined && protocolToken !== undefined && headerToken !== protocolToken) {
    // Two different credentials: whichever we picked, the other would be smuggled. Refuse both.
    throw new AuthError('AUTH_ERR_AMBIGUOUS_CREDENTIALS', 'Authorization and bearer subprotocol disagree');
  }
  const token = headerToken ?? protocolToken;
  if (token === undefined) throw new AuthError('AUTH_ERR_NO_CREDENTIALS', 'no bearer token');
  return { token, subprotocols };
}

/** Tries each authenticator in order: OIDC issuers, then TokenReview. */
export class Authenticator {
  readonly #jwt: JwtAuthenticator | undefined;
  readonly #tokenReview: TokenReviewAuthenticator | undefined;

  constructor(opts: { jwt?: JwtAuthenticator; tokenReview?: TokenReviewAuthenticator }) {
    this.#jwt = opts.jwt;
    this.#tokenReview = opts.tokenReview;
  }

  /**
   * The hot path: the token's cache key, and its identity when a previous
   * verification (JWT signature or TokenReview) is still cached. No I/O, no
   * promise; on a miss call {@link authenticate} with the same key.
   */
  cached(token: string): { key: string; identity: Identity | undefined } {
    const key = tokenKey(token);
    return { key, identity: this.#jwt?.peek(key) ?? this.#tokenReview?.peek(key) };
  }

  /** Authenticates a bearer token or throws AuthError. `key` is the one {@link cached} returned, if called. */
  async authenticate(token: string, key: string = tokenKey(token)): Promise<Identity> {
    const fromJwt = await this.#jwt?.authenticate(token, key);
    if (fromJwt) return fromJwt;
    if (this.#tokenReview) return this.#tokenReview.authenticate(token, key);
    throw new AuthError('AUTH_ERR_TOKEN_REJECTED', 'no authenticator accepted the token');
  }
}
