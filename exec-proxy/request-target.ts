/**
 * The request target (the URI of the request line), read exactly as Go's
 * net/http server and net/url read it for the API server, so that the
 * gateway's guardrails, exec recording and events see the same path the API
 * server authorizes and serves (issue 13 item 2):
 *
 * - origin form `/p?q` and absolute form `https://host/p?q` (RFC 9112 §3.2.2;
 *   Go's url.ParseRequestURI keeps the path of either, and so do we; the
 *   authority is dropped: the gateway addresses its own upstream);
 * - the path is percent-decoded as a whole before it is split, because the
 *   API server splits `req.URL.Path`, the decoded path
 *   (k8s.io/apiserver/pkg/endpoints/request/requestinfo.go splitPath), so
 *   `%2F` is a separator there and here;
 * - the query is parsed as Go's url.ParseQuery does (first value wins where
 *   the API server takes one).
 *
 * What the two could still read differently, or what some other component
 * between the gateway and a pod might (kubelet, a service proxied to), is
 * refused with a 400 `Status`, never guessed at: a malformed or non-UTF-8
 * escape, control bytes, `.`/`..` segments, empty segments (`//`: the API
 * server reads `/namespaces//x` as namespace-less), backslashes, `;`, a
 * fragment, the asterisk form, a query Go would drop parts of (`;`
 * separators, malformed escapes). Everything passed on is forwarded in one
 * canonical spelling built from the decoded path, never the raw target.
 * Pure: no I/O.
 */
import { ProxyError } from './errors.ts';

/** A request target the gateway accepted. */
export interface RequestTarget {
  /** The decoded path, as Go's `req.URL.Path` (what the API server splits into segments). */
  path: string;
  /** The raw query without `?`, validated; undefined when the target had none. */
  rawQuery: string | undefined;
  /** The query as Go's url.ParseQuery reads it (same keys, same value order). */
  query: URLSearchParams;
  /** What goes upstream: the canonical encoding of `path`, plus `?rawQuery`. */
  forward: string;
}

/** The refusal of a request target: a 400 with the reason in the message (the target itself is not echoed). */
export function badTarget(reason: string): ProxyError {
  return new ProxyError('PROXY_ERR_BAD_REQUEST', `bad request target: ${reason}`, { clientMessage: `kubetrail gateway refused the request target: ${reason}` });
}

const ABSOLUTE_FORM = /^[A-Za-z][A-Za-z0-9+.-]*:/;
const HEX = /^[0-9A-Fa-f]{2}$/;
// RFC 3986 pchar minus ';' (refused) — what Go's PathEscape leaves alone, so the API server decodes our spelling to the same bytes.
const PATH_SAFE = /[A-Za-z0-9\-._~!$&'()*+,=:@/]/;
const ALL_PATH_SAFE = /^[A-Za-z0-9\-._~!$&'()*+,=:@/]*$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Percent-decodes `s` (each character a byte: Node hands the request line
 * over as latin1) into a UTF-8 string, as Go's url.unescape does; `plusIsSpace`
 * for query components. Throws on a malformed escape or non-UTF-8 result.
 */
function unescape(s: string, plusIsSpace: boolean, what: string): string {
  if (!s.includes('%') && !(plusIsSpace && s.includes('+'))) {
    // eslint-disable-next-line no-control-regex
    if (/[^\u0020-\u007e]/.test(s)) throw badTarget(`${what} has a byte outside printable ASCII`);
    return s;
  }
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x25) {
      const hex = s.slice(i + 1, i + 3);
      if (!HEX.test(hex)) throw badTarget(`${what} has a malformed percent-escape`);
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else if (c === 0x2b && plusIsSpace) bytes.push(0x20);
    else if (c < 0x20 || c > 0x7e) throw badTarget(`${what} has a byte outside printable ASCII`);
    else bytes.push(c);
  }
  try {
    return utf8.decode(Uint8Array.from(bytes));
  } catch {
    throw badTarget(`${what} does not decode to UTF-8`);
  }
}

/** The canonical spelling of a decoded path: every byte outside {@link PATH_SAFE} as %XX (upper-case). */
export function encodePath(path: string): string {
  // The common case (every path kubectl sends): nothing to escape.
  if (ALL_PATH_SAFE.test(path)) return path;
  let out = '';
  for (const ch of path) {
    if (PATH_SAFE.test(ch)) out += ch;
    else for (const b of Buffer.from(ch, 'utf8')) out += `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** Checks the decoded path for what the API server, or a component behind it, could read differently. */
function checkPath(path: string): void {
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(path)) throw badTarget('the path contains a control character');
  if (path.includes('\\')) throw badTarget('the path contains a backslash');
  if (path.includes(';')) throw badTarget('the path contains a semicolon');
  const segments = path.split('/');
  // segments[0] is the empty string before the leading '/'; a single trailing '/' leaves one empty last segment.
  for (let i = 1; i < segments.length; i++) {
    const s = segments[i] as string;
    if (s === '' && i !== segments.length - 1) throw badTarget('the path has an empty segment (//)');
    if (s === '.' || s === '..') throw badTarget('the path has a dot segment');
  }
}

/**
 * Parses the query as Go's url.ParseQuery; refuses what Go would drop or
 * read otherwise (a pair containing ';', a malformed escape, non-UTF-8), so
 * that what the gateway reads is what the API server reads.
 */
function parseQuery(raw: string): URLSearchParams {
  const q = new URLSearchParams();
  for (const pair of raw.split('&')) {
    if (pair.includes(';')) throw badTarget('the query uses ";" as a separator');
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const key = eq === -1 ? pair : pair.slice(0, eq);
    const value = eq === -1 ? '' : pair.slice(eq + 1);
    q.append(unescape(key, true, 'the query'), unescape(value, true, 'the query'));
  }
  return q;
}

/**
 * Reads `rawUrl` (Node's `req.url`: the request-line target as received)
 * the way the API server will; throws PROXY_ERR_BAD_REQUEST (400) with the
 * reason when the gateway will not forward it.
 */
export function parseRequestTarget(rawUrl: string): RequestTarget {
  let rest = rawUrl;
  if (rest.includes('#')) throw badTarget('a request target has no fragment');
  if (!rest.startsWith('/')) {
    if (rest === '*') throw badTarget('the asterisk form is not served');
    const scheme = ABSOLUTE_FORM.exec(rest)?.[0].toLowerCase();
    if ((scheme !== 'https:' && scheme !== 'http:') || rest.slice(scheme.length, scheme.length + 2) !== '//') throw badTarget('not an origin-form or http(s) absolute-form target');
    // As Go: the query is cut first, then the authority runs to the first '/'.
    rest = rest.slice(scheme.length + 2);
    const q = rest.indexOf('?');
    const beforeQuery = q === -1 ? rest : rest.slice(0, q);
    const slash = beforeQuery.indexOf('/');
    if (slash === -1) throw badTarget('an absolute-form target without a path');
    rest = rest.slice(slash);
  }
  const q = rest.indexOf('?');
  const rawPath = q === -1 ? rest : rest.slice(0, q);
  const rawQuery = q === -1 ? undefined : rest.slice(q + 1);
  const path = unescape(rawPath, false, 'the path');
  checkPath(path);
  const query = rawQuery === undefined ? new URLSearchParams() : parseQuery(rawQuery);
  return { path, rawQuery, query, forward: rawQuery === undefined ? encodePath(path) : `${encodePath(path)}?${rawQuery}` };
}
