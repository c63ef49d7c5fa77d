/**
 * The Kubernetes URL library: `url()`, `isURL()` and the URL getters, parsed
 * as Go's net/url does (k8s.io/apiserver/pkg/cel/library/urls.go). Part of
 * core/policy/cel-k8s.ts, which lists the semantics of every library.
 */
import type { Environment } from '@marcbachmann/cel-js';
import { fail } from './values.ts';

/** A URL as Go's net/url.URL holds it; strings are UTF-8 byte strings (one char per byte) internally. */
export class KubeURL {
  readonly scheme: string;
  readonly opaque: string;
  readonly host: string;
  readonly path: string;
  readonly rawPath: string;
  readonly rawQuery: string;
  constructor(scheme: string, opaque: string, host: string, path: string, rawPath: string, rawQuery: string) {
    this.scheme = scheme;
    this.opaque = opaque;
    this.host = host;
    this.path = path;
    this.rawPath = rawPath;
    this.rawQuery = rawQuery;
  }
  toString(): string {
    return fromBytes(`${this.scheme === '' ? '' : `${this.scheme}:`}${this.opaque !== '' ? this.opaque : `${this.host === '' ? '' : `//${this.host}`}${escapedPath(this)}`}${this.rawQuery === '' ? '' : `?${this.rawQuery}`}`);
  }
}

type EscapeMode = 'path' | 'host' | 'zone' | 'query' | 'userinfo';
const toBytes = (s: string): string => Buffer.from(s, 'utf8').toString('latin1');
const fromBytes = (s: string): string => Buffer.from(s, 'latin1').toString('utf8');
const isAlnum = (c: string): boolean => /^[A-Za-z0-9]$/.test(c);
const isHex = (c: string | undefined): boolean => c !== undefined && /^[0-9A-Fa-f]$/.test(c);

function shouldEscape(c: string, mode: EscapeMode): boolean {
  if (isAlnum(c)) return false;
  if ((mode === 'host' || mode === 'zone') && "!$&'()*+,;=:[]<>\"".includes(c)) return false;
  if ('-_.~'.includes(c)) return false;
  if ('$&+,/:;=?@'.includes(c)) {
    if (mode === 'path') return c === '?';
    if (mode === 'userinfo') return '@/?:'.includes(c);
    if (mode === 'query') return true;
  }
  return true;
}

function unescape(s: string, mode: EscapeMode): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i] as string;
    if (c === '%') {
      if (!isHex(s[i + 1]) || !isHex(s[i + 2])) {
        const bad = s.slice(i, i + 3);
        fail(`invalid URL escape ${JSON.stringify(fromBytes(bad))}`);
      }
      const code = parseInt(s.slice(i + 1, i + 3), 16);
      if (mode === 'host' && code < 0x80 && s.slice(i, i + 3) !== '%25') fail(`invalid URL escape ${JSON.stringify(s.slice(i, i + 3))}`);
      if (mode === 'zone' && code < 0x80 && s.slice(i, i + 3) !== '%25' && shouldEscape(String.fromCharCode(code), 'host')) {
        fail(`invalid URL escape ${JSON.stringify(s.slice(i, i + 3))}`);
      }
      out += String.fromCharCode(code);
      i += 2;
    } else if (c === '+' && mode === 'query') {
      out += ' ';
    } else {
      if ((mode === 'host' || mode === 'zone') && c.charCodeAt(0) < 0x80 && shouldEscape(c, mode)) {
        fail(`invalid character ${JSON.stringify(c)} in host name`);
      }
      out += c;
    }
  }
  return out;
}

function escape(s: string, mode: EscapeMode): string {
  let out = '';
  for (const c of s) {
    if (c === ' ' && mode === 'query') out += '+';
    else if (shouldEscape(c, mode)) out += `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`;
    else out += c;
  }
  return out;
}

function validEncoded(s: string, mode: EscapeMode): boolean {
  for (const c of s) {
    if ("!$&'()*+,;=:@[]".includes(c) || c === '%') continue;
    if (shouldEscape(c, mode)) return false;
  }
  return true;
}

function validOptionalPort(port: string): boolean {
  return port === '' || /^:[0-9]*$/.test(port);
}

function parseHost(host: string): string {
  if (host.startsWith('[')) {
    const i = host.lastIndexOf(']');
    if (i < 0) fail("missing ']' in host");
    const colonPort = host.slice(i + 1);
    if (!validOptionalPort(colonPort)) fail(`invalid port ${JSON.stringify(fromBytes(colonPort))} after host`);
    const zone = host.slice(0, i).indexOf('%25');
    if (zone >= 0) return unescape(host.slice(0, zone), 'host') + unescape(host.slice(zone, i), 'zone') + unescape(host.slice(i), 'host');
  } else {
    const i = host.lastIndexOf(':');
    if (i >= 0) {
      const colonPort = host.slice(i);
      if (!validOptionalPort(colonPort)) fail(`invalid port ${JSON.stringify(fromBytes(colonPort))} after host`);
    }
  }
  return unescape(host, 'host');
}

/** Go's url.Parse (viaRequest false) / url.ParseRequestURI (viaRequest true); input is a UTF-8 byte string. */
function goParse(raw: string, viaRequest: boolean): KubeURL {
  if (/[\x00-\x1f\x7f]/.test(raw)) fail('net/url: invalid control character in URL');
  if (raw === '' && viaRequest) fail('empty url');
  if (raw === '*') return new KubeURL('', '', '', '*', '', '');
  let scheme = '';
  let rest = raw;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i] as string;
    if (/[A-Za-z]/.test(c)) continue;
    if (/[0-9+\-.]/.test(c)) {
      if (i === 0) break;
      continue;
    }
    if (c === ':') {
      if (i === 0) fail('missing protocol scheme');
      scheme = raw.slice(0, i).toLowerCase();
      rest = raw.slice(i + 1);
    }
    break;
  }
  let rawQuery = '';
  if (rest.endsWith('?') && rest.indexOf('?') === rest.length - 1) rest = rest.slice(0, -1);
  else {
    const q = rest.indexOf('?');
    if (q >= 0) {
      rawQuery = rest.slice(q + 1);
      rest = rest.slice(0, q);
    }
  }
  if (!rest.startsWith('/')) {
    if (scheme !== '') return new KubeURL(scheme, rest, '', '', '', rawQuery);
    if (viaRequest) fail('invalid URI for request');
    const slash = rest.indexOf('/');
    if ((slash < 0 ? rest : rest.slice(0, slash)).includes(':')) fail('first path segment in URL cannot contain colon');
  }
  let host = '';
  if ((scheme !== '' || (!viaRequest && !rest.startsWith('///'))) && rest.startsWith('//')) {
    let authority = rest.slice(2);
    rest = '';
    const slash = authority.indexOf('/');
    if (slash >= 0) {
      rest = authority.slice(slash);
      authority = authority.slice(0, slash);
    }
    const at = authority.lastIndexOf('@');
    if (at >= 0) {
      const userinfo = authority.slice(0, at);
      if (!/^[A-Za-z0-9\-._:~!$&'()*+,;=%@]*$/.test(userinfo.replace(/[\x80-\xff]/g, ''))) fail('net/url: invalid userinfo');
    }
    host = parseHost(at >= 0 ? authority.slice(at + 1) : authority);
  }
  const path = unescape(rest, 'path');
  const rawPath = escape(path, 'path') === rest ? '' : rest;
  return new KubeURL(scheme, '', host, path, rawPath, rawQuery);
}

function escapedPath(u: KubeURL): string {
  if (u.rawPath !== '' && validEncoded(u.rawPath, 'path')) {
    try {
      if (unescape(u.rawPath, 'path') === u.path) return u.rawPath;
    } catch {
      // fall through
    }
  }
  if (u.path === '*') return '*';
  return escape(u.path, 'path');
}

function splitHostPort(hostPort: string): [string, string] {
  let host = hostPort;
  let port = '';
  const colon = host.lastIndexOf(':');
  if (colon >= 0 && validOptionalPort(host.slice(colon))) {
    port = host.slice(colon + 1);
    host = host.slice(0, colon);
  }
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  return [host, port];
}

function parseQuery(q: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const part of q.split('&')) {
    if (part.includes(';') || part === '') continue;
    const eq = part.indexOf('=');
    let key: string;
    let value: string;
    try {
      key = fromBytes(unescape(eq < 0 ? part : part.slice(0, eq), 'query'));
      value = fromBytes(unescape(eq < 0 ? '' : part.slice(eq + 1), 'query'));
    } catch {
      continue;
    }
    const list = out.get(key);
    if (list === undefined) out.set(key, [value]);
    else list.push(value);
  }
  return out;
}

/** Kubernetes url(): the string must be an absolute URI or an absolute path (ParseRequestURI), then is parsed with fragments (Parse). */
export function parseKubeURL(s: string): KubeURL {
  const bytes = toBytes(s);
  try {
    goParse(bytes, true);
  } catch (err) {
    fail(`URL parse error during conversion from string: parse ${JSON.stringify(s)}: ${(err as Error).message}`);
  }
  const hash = bytes.indexOf('#');
  const u = goParse(hash < 0 ? bytes : bytes.slice(0, hash), false);
  if (hash >= 0) unescape(bytes.slice(hash + 1), 'path'); // Go validates the fragment's escapes
  return u;
}

function isKubeURL(s: string): boolean {
  try {
    goParse(toBytes(s), true);
    return true;
  } catch {
    return false;
  }
}

export function registerURL(env: Environment): void {
  const U = 'kubernetes.URL';
  env.registerType(U, KubeURL);
  env.registerFunction(`url(string): ${U}`, (s: string) => parseKubeURL(s));
  env.registerFunction('isURL(string): bool', (s: string) => isKubeURL(s));
  env.registerFunction(`${U}.getScheme(): string`, (u: KubeURL) => fromBytes(u.scheme));
  env.registerFunction(`${U}.getHost(): string`, (u: KubeURL) => fromBytes(u.host));
  env.registerFunction(`${U}.getHostname(): string`, (u: KubeURL) => fromBytes(splitHostPort(u.host)[0]));
  env.registerFunction(`${U}.getPort(): string`, (u: KubeURL) => fromBytes(splitHostPort(u.host)[1]));
  env.registerFunction(`${U}.getEscapedPath(): string`, (u: KubeURL) => fromBytes(escapedPath(u)));
  env.registerFunction(`${U}.getQuery(): map<string, list<string>>`, (u: KubeURL) => parseQuery(u.rawQuery));
  env.registerOperator(`${U} == ${U}`, (a: KubeURL, b: KubeURL) => a.toString() === b.toString());
}
