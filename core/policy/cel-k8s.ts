/**
 * The Kubernetes CEL libraries, for policies written against
 * ValidatingAdmissionPolicy / Kyverno, on @marcbachmann/cel-js.
 *
 * Semantics follow https://kubernetes.io/docs/reference/using-api/cel/ and
 * the k8s.io/apiserver/pkg/cel/library and cel-go ext sources they name
 * (re-implemented here, nothing copied):
 *
 * - Quantity: `quantity()`, `isQuantity()`, `sign`, `isInteger`,
 *   `asInteger`, `asApproximateFloat`, `add`, `sub`, `compareTo`,
 *   `isGreaterThan`, `isLessThan`, `==`. A value is held exactly as a bigint
 *   count of nano-units, which is what resource.Quantity keeps too (parsing
 *   rounds finer values up, away from zero, to 1n; binary-suffixed values are
 *   capped at 2^63-1) — so comparisons across suffixes are exact.
 * - URL: `url()`, `isURL()`, `getScheme`, `getHost`, `getHostname`,
 *   `getPort`, `getEscapedPath`, `getQuery`. Parsed the way Go's net/url
 *   does (ParseRequestURI to accept, then Parse), not by WHATWG `URL`, which
 *   normalises (drops default ports, lowercases hosts, resolves `..`) where
 *   Kubernetes does not.
 * - IP / CIDR: `ip()`, `isIP()`, `ip.isCanonical()`, `family`,
 *   `isUnspecified`, `isLoopback`, `isLinkLocalMulticast`,
 *   `isLinkLocalUnicast`, `isGlobalUnicast`, `cidr()`, `isCIDR()`,
 *   `containsIP`, `containsCIDR`, `ip`, `masked`, `prefixLength`,
 *   `string()`, `==`. Zones and IPv4-mapped IPv6 are rejected as Kubernetes
 *   does.
 * - Strings extension: `charAt`, `replace`, `reverse`, `format`,
 *   `strings.quote` (`indexOf`/`lastIndexOf`/`split`/`substring`/`join`/
 *   `trim`/`lowerAscii`/`upperAscii` are cel-js built-ins).
 * - Regex: `find`, `findAll`.
 * - Lists: `sum`, `min`, `max`, `isSorted`, `indexOf`, `lastIndexOf`,
 *   `slice`, `flatten`, `sort`, `distinct`, `reverse`, `lists.range`.
 * - Sets: `sets.contains`, `sets.equivalent`, `sets.intersects`.
 * - Math: `math.greatest`, `math.least`, `ceil`, `floor`, `round`, `trunc`,
 *   `abs`, `sign`, `isNaN`, `isInf`, `isFinite`, `sqrt`, `bitAnd`, `bitOr`,
 *   `bitXor`, `bitNot`, `bitShiftLeft`, `bitShiftRight`.
 *
 * Runtime failures throw an Error whose message names the function; cel-js
 * turns it into an evaluation error (CEL_ERR_RUNTIME in compileCel).
 *
 * Pure: no I/O, no logging.
 */
import { isIP as netIsIP } from 'node:net';
import type { Environment } from '@marcbachmann/cel-js';

const INT64_MAX = (1n << 63n) - 1n;
const INT64_MIN = -(1n << 63n);
const NANO = 1_000_000_000n;

function fail(message: string): never {
  throw new Error(message);
}

// ---------------------------------------------------------------------------
// Quantity
// ---------------------------------------------------------------------------

/** A Kubernetes resource.Quantity, held exactly as a count of nano-units. */
export class Quantity {
  readonly nanos: bigint;
  constructor(nanos: bigint) {
    this.nanos = nanos;
  }
  /** Decimal rendering (not Kubernetes' canonical form); for logs and JSON. */
  toString(): string {
    const neg = this.nanos < 0n;
    const abs = neg ? -this.nanos : this.nanos;
    const whole = abs / NANO;
    const frac = (abs % NANO).toString().padStart(9, '0').replace(/0+$/, '');
    return `${neg ? '-' : ''}${whole}${frac === '' ? '' : `.${frac}`}`;
  }
  toJSON(): string {
    return this.toString();
  }
}

const ERR_FORMAT = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
const ERR_SUFFIX = "unable to parse quantity's suffix";
const ERR_NUMERIC = 'unable to parse numeric part of quantity';

const DECIMAL_SUFFIX: Record<string, number> = { '': 0, n: -9, u: -6, m: -3, k: 3, M: 6, G: 9, T: 12, P: 15, E: 18 };
const BINARY_SUFFIX: Record<string, number> = { Ki: 10, Mi: 20, Gi: 30, Ti: 40, Pi: 50, Ei: 60 };
const isDigit = (c: string | undefined): boolean => c !== undefined && c >= '0' && c <= '9';
/** Beyond this many decimal places of magnitude a quantity is refused rather than expanded (Go would try, slowly). */
const MAX_DECIMAL_SHIFT = 10_000;

function ceilDiv(n: bigint, d: bigint): bigint {
  // n >= 0, d > 0
  return (n + d - 1n) / d;
}

/** resource.ParseQuantity; throws with its error text. */
export function parseQuantity(str: string): Quantity {
  if (str.length === 0) fail(ERR_FORMAT);
  if (str === '0') return new Quantity(0n);
  // Split into sign, numerator digits (leading zeros stripped), fraction digits, suffix.
  let pos = 0;
  const end = str.length;
  let positive = true;
  if (str[0] === '-') {
    positive = false;
    pos++;
  } else if (str[0] === '+') pos++;
  while (pos < end && str[pos] === '0') pos++;
  let num = '';
  let denom = '';
  let suffix = '';
  let hasDigits = /[0-9]/.test(str.slice(0, pos));
  if (pos >= end) {
    num = '0';
    hasDigits = true;
  } else {
    const numStart = pos;
    while (pos < end && isDigit(str[pos])) pos++;
    num = str.slice(numStart, pos);
    if (num.length > 0) hasDigits = true;
    if (num.length === 0) num = '0';
    if (pos < end && str[pos] === '.') {
      pos++;
      const denomStart = pos;
      while (pos < end && isDigit(str[pos])) pos++;
      denom = str.slice(denomStart, pos);
      if (denom.length > 0) hasDigits = true;
    }
    const suffixStart = pos;
    while (pos < end && 'eEinumkKMGTP'.includes(str[pos] as string)) pos++;
    if (pos < end && (str[pos] === '-' || str[pos] === '+')) pos++;
    while (pos < end && isDigit(str[pos])) pos++;
    if (pos < end) fail(ERR_FORMAT);
    suffix = str.slice(suffixStart, end);
  }
  // Interpret the suffix.
  let base: 2 | 10;
  let exponent: number;
  if (suffix in DECIMAL_SUFFIX) {
    base = 10;
    exponent = DECIMAL_SUFFIX[suffix] as number;
  } else if (suffix in BINARY_SUFFIX) {
    base = 2;
    exponent = BINARY_SUFFIX[suffix] as number;
  } else if (suffix.length > 1 && (suffix[0] === 'e' || suffix[0] === 'E') && /^[+-]?[0-9]+$/.test(suffix.slice(1))) {
    base = 10;
    exponent = Number(suffix.slice(1));
    if (!Number.isSafeInteger(exponent) || exponent > 2147483647 || exponent < -2147483648) fail(ERR_SUFFIX);
  } else {
    return fail(ERR_SUFFIX);
  }
  // A number without any digit ("Gi", ".", "+.") is read as 0 by Kubernetes'
  // int64 fast path when that path applies, and refused otherwise.
  if (!hasDigits) {
    let fast: boolean;
    if (base === 10) fast = 18 - (num.length + denom.length) >= 0 && exponent - denom.length >= -9;
    else fast = denom.length === 0 && 15 - num.length - Math.trunc((exponent * 3) / 10) - 1 >= 0;
    if (!fast) fail(ERR_NUMERIC);
  }
  const digits = BigInt(num + denom);
  let nanos: bigint;
  if (base === 10) {
    const shift = exponent - denom.length + 9;
    if (digits === 0n) nanos = 0n;
    else if (shift >= 0) {
      if (shift > MAX_DECIMAL_SHIFT) fail(`quantity ${JSON.stringify(str)} is too large`);
      nanos = digits * 10n ** BigInt(shift);
    } else if (-shift > (num + denom).length + 1) {
      nanos = 1n; // smaller than 1n: rounded up
    } else {
      nanos = ceilDiv(digits, 10n ** BigInt(-shift));
    }
  } else {
    nanos = ceilDiv(digits * (1n << BigInt(exponent)) * NANO, 10n ** BigInt(denom.length));
    const cap = INT64_MAX * NANO;
    if (nanos > cap) nanos = cap;
  }
  return new Quantity(positive ? nanos : -nanos);
}

function isQuantity(s: string): boolean {
  try {
    parseQuantity(s);
    return true;
  } catch {
    return false;
  }
}

function quantityAsInteger(q: Quantity): bigint | undefined {
  if (q.nanos % NANO !== 0n) return undefined;
  const v = q.nanos / NANO;
  return v > INT64_MAX || v < INT64_MIN ? undefined : v;
}

function cmpBig(a: bigint, b: bigint): bigint {
  return a < b ? -1n : a > b ? 1n : 0n;
}

function registerQuantity(env: Environment): void {
  const Q = 'kubernetes.Quantity';
  env.registerType(Q, Quantity);
  env.registerFunction(`quantity(string): ${Q}`, (s: string) => parseQuantity(s));
  env.registerFunction('isQuantity(string): bool', (s: string) => isQuantity(s));
  env.registerFunction(`${Q}.sign(): int`, (q: Quantity) => cmpBig(q.nanos, 0n));
  env.registerFunction(`${Q}.isInteger(): bool`, (q: Quantity) => quantityAsInteger(q) !== undefined);
  env.registerFunction(`${Q}.asInteger(): int`, (q: Quantity) => quantityAsInteger(q) ?? fail('cannot convert value to integer'));
  env.registerFunction(`${Q}.asApproximateFloat(): double`, (q: Quantity) => Number(q.nanos) / 1e9);
  env.registerFunction(`${Q}.add(${Q}): ${Q}`, (a: Quantity, b: Quantity) => new Quantity(a.nanos + b.nanos));
  env.registerFunction(`${Q}.add(int): ${Q}`, (a: Quantity, b: bigint) => new Quantity(a.nanos + b * NANO));
  env.registerFunction(`${Q}.sub(${Q}): ${Q}`, (a: Quantity, b: Quantity) => new Quantity(a.nanos - b.nanos));
  env.registerFunction(`${Q}.sub(int): ${Q}`, (a: Quantity, b: bigint) => new Quantity(a.nanos - b * NANO));
  env.registerFunction(`${Q}.compareTo(${Q}): int`, (a: Quantity, b: Quantity) => cmpBig(a.nanos, b.nanos));
  env.registerFunction(`${Q}.isGreaterThan(${Q}): bool`, (a: Quantity, b: Quantity) => a.nanos > b.nanos);
  env.registerFunction(`${Q}.isLessThan(${Q}): bool`, (a: Quantity, b: Quantity) => a.nanos < b.nanos);
  env.registerOperator(`${Q} == ${Q}`, (a: Quantity, b: Quantity) => a.nanos === b.nanos);
}

// ---------------------------------------------------------------------------
// URL (Go net/url semantics)
// ---------------------------------------------------------------------------

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

function registerURL(env: Environment): void {
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

// ---------------------------------------------------------------------------
// IP and CIDR (Go net/netip semantics)
// ---------------------------------------------------------------------------

/** An IP address: 4 or 16 bytes. */
export class KubeIP {
  readonly bytes: Uint8Array;
  constructor(bytes: Uint8Array) {
    this.bytes = bytes;
  }
  get family(): 4 | 6 {
    return this.bytes.length === 4 ? 4 : 6;
  }
  toString(): string {
    const b = this.bytes;
    if (b.length === 4) return b.join('.');
    const groups: number[] = [];
    for (let i = 0; i < 16; i += 2) groups.push(((b[i] as number) << 8) | (b[i + 1] as number));
    // RFC 5952: compress the first longest run of two or more zero groups.
    let bestStart = -1;
    let bestLen = 1;
    for (let i = 0; i < 8; ) {
      if (groups[i] !== 0) {
        i++;
        continue;
      }
      let j = i;
      while (j < 8 && groups[j] === 0) j++;
      if (j - i > bestLen) {
        bestStart = i;
        bestLen = j - i;
      }
      i = j;
    }
    const hex = (g: number[]): string => g.map((x) => x.toString(16)).join(':');
    if (bestStart < 0) return hex(groups);
    return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLen))}`;
  }
  toJSON(): string {
    return this.toString();
  }
}

/** A CIDR prefix: an address (as written, not masked) and a prefix length. */
export class KubeCIDR {
  readonly ip: KubeIP;
  readonly bits: number;
  constructor(ip: KubeIP, bits: number) {
    this.ip = ip;
    this.bits = bits;
  }
  toString(): string {
    return `${this.ip.toString()}/${this.bits}`;
  }
  toJSON(): string {
    return this.toString();
  }
}

function parseV4(s: string): Uint8Array | undefined {
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i] as string;
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p) || Number(p) > 255) return undefined;
    out[i] = Number(p);
  }
  return out;
}

function parseV6(s: string): Uint8Array | undefined {
  // Pre-validated by node:net isIP (no zone here).
  let tail4: Uint8Array | undefined;
  let text = s;
  const lastColon = text.lastIndexOf(':');
  if (text.slice(lastColon + 1).includes('.')) {
    tail4 = parseV4(text.slice(lastColon + 1));
    if (tail4 === undefined) return undefined;
    text = `${text.slice(0, lastColon + 1)}0:0`;
  }
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const toGroups = (h: string): number[] => (h === '' ? [] : h.split(':').map((g) => parseInt(g, 16)));
  const head = toGroups(halves[0] as string);
  const tail = halves.length === 2 ? toGroups(halves[1] as string) : [];
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  const groups = [...head, ...new Array<number>(halves.length === 2 ? missing : 0).fill(0), ...tail];
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  });
  if (tail4 !== undefined) out.set(tail4, 12);
  return out;
}

function is4In6(b: Uint8Array): boolean {
  if (b.length !== 16) return false;
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

/** netip.ParseAddr; returns the bytes and whether a zone was present, or an error text. */
function parseAddr(s: string): { bytes: Uint8Array; zone: boolean } | string {
  const fam = netIsIP(s);
  if (fam === 4) {
    const b = parseV4(s);
    return b === undefined ? 'unable to parse IP' : { bytes: b, zone: false };
  }
  const pct = s.indexOf('%');
  const bare = pct >= 0 ? s.slice(0, pct) : s;
  if (pct >= 0 && pct === s.length - 1) return 'zone must be a non-empty string';
  if (!bare.includes(':') || netIsIP(bare) !== 6) return 'unable to parse IP';
  const b = parseV6(bare);
  return b === undefined ? 'unable to parse IP' : { bytes: b, zone: pct >= 0 };
}

/** Kubernetes ip(): netip.ParseAddr without zones or IPv4-mapped IPv6. */
export function parseKubeIP(s: string): KubeIP {
  const r = parseAddr(s);
  if (typeof r === 'string') fail(`IP Address ${JSON.stringify(s)} parse error during conversion from string: ParseAddr(${JSON.stringify(s)}): ${r}`);
  if (r.zone) fail(`IP address ${JSON.stringify(s)} with zone value is not allowed`);
  if (is4In6(r.bytes)) fail(`IPv4-mapped IPv6 address ${JSON.stringify(s)} is not allowed`);
  return new KubeIP(r.bytes);
}

/** Kubernetes cidr(): netip.ParsePrefix without IPv4-mapped IPv6. */
export function parseKubeCIDR(s: string): KubeCIDR {
  const bad = (why: string): never => fail(`network address parse error during conversion from string: netip.ParsePrefix(${JSON.stringify(s)}): ${why}`);
  const slash = s.lastIndexOf('/');
  if (slash < 0) bad("no '/'");
  const r = parseAddr(s.slice(0, slash));
  if (typeof r === 'string') return bad(`ParseAddr(${JSON.stringify(s.slice(0, slash))}): ${r}`);
  if (r.zone) bad('IPv6 zones cannot be present in a prefix');
  const bitsStr = s.slice(slash + 1);
  if (!/^(0|[1-9][0-9]*)$/.test(bitsStr)) bad(`bad bits after slash: ${JSON.stringify(bitsStr)}`);
  const bits = Number(bitsStr);
  if (bits > r.bytes.length * 8) bad(`prefix length out of range`);
  if (is4In6(r.bytes)) fail(`IPv4-mapped IPv6 address ${JSON.stringify(s)} is not allowed`);
  return new KubeCIDR(new KubeIP(r.bytes), bits);
}

function mask(b: Uint8Array, bits: number): Uint8Array {
  const out = new Uint8Array(b.length);
  for (let i = 0; i < b.length; i++) {
    const keep = Math.max(0, Math.min(8, bits - i * 8));
    out[i] = (b[i] as number) & ((0xff << (8 - keep)) & 0xff);
  }
  return out;
}

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && a.every((x, i) => x === b[i]);

function cidrContainsIP(c: KubeCIDR, ip: KubeIP): boolean {
  return ip.bytes.length === c.ip.bytes.length && sameBytes(mask(ip.bytes, c.bits), mask(c.ip.bytes, c.bits));
}

function cidrContainsCIDR(c: KubeCIDR, other: KubeCIDR): boolean {
  return other.bits >= c.bits && cidrContainsIP(c, other.ip);
}

function ipIs(ip: KubeIP, kind: 'unspecified' | 'loopback' | 'llMulticast' | 'llUnicast' | 'multicast'): boolean {
  const b = ip.bytes;
  const v4 = b.length === 4;
  switch (kind) {
    case 'unspecified':
      return b.every((x) => x === 0);
    case 'loopback':
      return v4 ? b[0] === 127 : b.slice(0, 15).every((x) => x === 0) && b[15] === 1;
    case 'llMulticast':
      return v4 ? b[0] === 224 && b[1] === 0 && b[2] === 0 : b[0] === 0xff && ((b[1] as number) & 0x0f) === 0x02;
    case 'llUnicast':
      return v4 ? b[0] === 169 && b[1] === 254 : b[0] === 0xfe && ((b[1] as number) & 0xc0) === 0x80;
    case 'multicast':
      return v4 ? ((b[0] as number) & 0xf0) === 0xe0 : b[0] === 0xff;
  }
}

function isGlobalUnicast(ip: KubeIP): boolean {
  if (ip.bytes.length === 4 && ip.bytes.every((x) => x === 255)) return false;
  return !ipIs(ip, 'unspecified') && !ipIs(ip, 'loopback') && !ipIs(ip, 'multicast') && !ipIs(ip, 'llUnicast');
}

const succeeds = (f: () => unknown): boolean => {
  try {
    f();
    return true;
  } catch {
    return false;
  }
};

class IPNamespace {}

function registerIP(env: Environment): void {
  const I = 'net.IP';
  const C = 'net.CIDR';
  env.registerType(I, KubeIP);
  env.registerType(C, KubeCIDR);
  env.registerType('kubernetes.IPNamespace', IPNamespace);
  env.registerConstant('ip', 'kubernetes.IPNamespace', new IPNamespace());
  env.registerFunction(`ip(string): ${I}`, (s: string) => parseKubeIP(s));
  env.registerFunction('isIP(string): bool', (s: string) => succeeds(() => parseKubeIP(s)));
  env.registerFunction('kubernetes.IPNamespace.isCanonical(string): bool', (_ns: IPNamespace, s: string) => parseKubeIP(s).toString() === s);
  env.registerFunction(`string(${I}): string`, (ip: KubeIP) => ip.toString());
  env.registerFunction(`${I}.family(): int`, (ip: KubeIP) => BigInt(ip.family));
  env.registerFunction(`${I}.isUnspecified(): bool`, (ip: KubeIP) => ipIs(ip, 'unspecified'));
  env.registerFunction(`${I}.isLoopback(): bool`, (ip: KubeIP) => ipIs(ip, 'loopback'));
  env.registerFunction(`${I}.isLinkLocalMulticast(): bool`, (ip: KubeIP) => ipIs(ip, 'llMulticast'));
  env.registerFunction(`${I}.isLinkLocalUnicast(): bool`, (ip: KubeIP) => ipIs(ip, 'llUnicast'));
  env.registerFunction(`${I}.isGlobalUnicast(): bool`, (ip: KubeIP) => isGlobalUnicast(ip));
  env.registerOperator(`${I} == ${I}`, (a: KubeIP, b: KubeIP) => sameBytes(a.bytes, b.bytes));

  env.registerFunction(`cidr(string): ${C}`, (s: string) => parseKubeCIDR(s));
  env.registerFunction('isCIDR(string): bool', (s: string) => succeeds(() => parseKubeCIDR(s)));
  env.registerFunction(`string(${C}): string`, (c: KubeCIDR) => c.toString());
  env.registerFunction(`${C}.containsIP(${I}): bool`, (c: KubeCIDR, ip: KubeIP) => cidrContainsIP(c, ip));
  env.registerFunction(`${C}.containsIP(string): bool`, (c: KubeCIDR, s: string) => cidrContainsIP(c, parseKubeIP(s)));
  env.registerFunction(`${C}.containsCIDR(${C}): bool`, (c: KubeCIDR, o: KubeCIDR) => cidrContainsCIDR(c, o));
  env.registerFunction(`${C}.containsCIDR(string): bool`, (c: KubeCIDR, s: string) => cidrContainsCIDR(c, parseKubeCIDR(s)));
  env.registerFunction(`${C}.ip(): ${I}`, (c: KubeCIDR) => c.ip);
  env.registerFunction(`${C}.masked(): ${C}`, (c: KubeCIDR) => new KubeCIDR(new KubeIP(mask(c.ip.bytes, c.bits)), c.bits));
  env.registerFunction(`${C}.prefixLength(): int`, (c: KubeCIDR) => BigInt(c.bits));
  env.registerOperator(`${C} == ${C}`, (a: KubeCIDR, b: KubeCIDR) => a.bits === b.bits && sameBytes(a.ip.bytes, b.ip.bytes));
}

// ---------------------------------------------------------------------------
// Shared value helpers (CEL equality and ordering over cel-js runtime values)
// ---------------------------------------------------------------------------

/** cel-js keeps these classes private; take them from values it makes. */
type UintLike = { readonly value: bigint };
type DurationLike = { readonly seconds: bigint; readonly nanos: number };
let uintCtor: (new (v: bigint) => UintLike) | undefined;
let durationCtor: (new (s: bigint, n: number) => DurationLike) | undefined;

const isUint = (v: unknown): v is UintLike => uintCtor !== undefined && v instanceof uintCtor;
const isDuration = (v: unknown): v is DurationLike => durationCtor !== undefined && v instanceof durationCtor;
const makeUint = (v: bigint): UintLike => {
  if (uintCtor === undefined) return fail('uint unavailable');
  if (v < 0n || v > (1n << 64n) - 1n) fail('unsigned integer overflow');
  return new uintCtor(v);
};

type Num = { kind: 'int' | 'uint' | 'double'; n: bigint | number };
function asNum(v: unknown): Num | undefined {
  if (typeof v === 'bigint') return { kind: 'int', n: v };
  if (typeof v === 'number') return { kind: 'double', n: v };
  if (isUint(v)) return { kind: 'uint', n: v.value };
  return undefined;
}

/** Compares numbers of any CEL numeric type exactly (NaN compares as unordered: returns NaN). */
function compareNum(a: Num, b: Num): number {
  if (typeof a.n === 'bigint' && typeof b.n === 'bigint') return a.n < b.n ? -1 : a.n > b.n ? 1 : 0;
  const x = a.n;
  const y = b.n;
  if (typeof x === 'number' && typeof y === 'number') return x < y ? -1 : x > y ? 1 : x === y ? 0 : NaN;
  // one bigint, one double
  const [big, dbl, flip] = typeof x === 'bigint' ? [x, y as number, 1] : [y as bigint, x as number, -1];
  if (Number.isNaN(dbl)) return NaN;
  if (dbl === Infinity) return -flip;
  if (dbl === -Infinity) return flip;
  const fl = Math.floor(dbl);
  const fb = BigInt(fl);
  let r: number;
  if (big < fb) r = -1;
  else if (big > fb) r = 1;
  else r = dbl > fl ? -1 : 0;
  return r * flip;
}

function utf8Compare(a: string, b: string): number {
  return Math.sign(Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8')));
}

function kindOf(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'bigint') return 'int';
  if (typeof v === 'number') return 'double';
  if (isUint(v)) return 'uint';
  if (isDuration(v)) return 'duration';
  if (v instanceof Date) return 'timestamp';
  if (v instanceof Uint8Array) return 'bytes';
  if (Array.isArray(v)) return 'list';
  if (typeof v === 'object') return v instanceof Map || Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null ? 'map' : (v.constructor?.name ?? 'object');
  return typeof v;
}

/** CEL ordering: numbers across types, strings, bools, bytes, timestamps, durations, quantities. Throws when not comparable. */
function celCompare(a: unknown, b: unknown, fn: string): number {
  const na = asNum(a);
  const nb = asNum(b);
  if (na !== undefined && nb !== undefined) return compareNum(na, nb);
  if (typeof a === 'string' && typeof b === 'string') return utf8Compare(a, b);
  if (typeof a === 'boolean' && typeof b === 'boolean') return Number(a) - Number(b);
  if (a instanceof Uint8Array && b instanceof Uint8Array) return Math.sign(Buffer.compare(a, b));
  if (a instanceof Date && b instanceof Date) return Math.sign(a.getTime() - b.getTime());
  if (isDuration(a) && isDuration(b)) return a.seconds !== b.seconds ? (a.seconds < b.seconds ? -1 : 1) : Math.sign(a.nanos - b.nanos);
  if (a instanceof Quantity && b instanceof Quantity) return Number(cmpBig(a.nanos, b.nanos));
  return fail(`${fn}: no such overload: cannot compare ${kindOf(a)} and ${kindOf(b)}`);
}

function entriesOf(m: unknown): [unknown, unknown][] {
  if (m instanceof Map) return [...m.entries()];
  return Object.entries(m as Record<string, unknown>);
}

/** CEL equality (heterogeneous numeric equality as in cel-go). */
function celEquals(a: unknown, b: unknown): boolean {
  const na = asNum(a);
  const nb = asNum(b);
  if (na !== undefined || nb !== undefined) return na !== undefined && nb !== undefined && compareNum(na, nb) === 0;
  if (a === b) return true;
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return false;
  if (Array.isArray(a) || Array.isArray(b)) return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, i) => celEquals(x, b[i]));
  if (a instanceof Uint8Array || b instanceof Uint8Array) return a instanceof Uint8Array && b instanceof Uint8Array && sameBytes(a, b);
  if (a instanceof Date || b instanceof Date) return a instanceof Date && b instanceof Date && a.getTime() === b.getTime();
  if (isDuration(a) || isDuration(b)) return isDuration(a) && isDuration(b) && a.seconds === b.seconds && a.nanos === b.nanos;
  if (a instanceof Quantity || b instanceof Quantity) return a instanceof Quantity && b instanceof Quantity && a.nanos === b.nanos;
  if (a instanceof KubeIP || b instanceof KubeIP) return a instanceof KubeIP && b instanceof KubeIP && sameBytes(a.bytes, b.bytes);
  if (a instanceof KubeCIDR || b instanceof KubeCIDR) return a instanceof KubeCIDR && b instanceof KubeCIDR && a.bits === b.bits && sameBytes(a.ip.bytes, b.ip.bytes);
  if (a instanceof KubeURL || b instanceof KubeURL) return a instanceof KubeURL && b instanceof KubeURL && a.toString() === b.toString();
  if (kindOf(a) === 'map' && kindOf(b) === 'map') {
    const ea = entriesOf(a);
    const eb = entriesOf(b);
    if (ea.length !== eb.length) return false;
    return ea.every(([k, v]) => eb.some(([k2, v2]) => celEquals(k, k2) && celEquals(v, v2)));
  }
  return false;
}

// ---------------------------------------------------------------------------
// Strings extension and regex
// ---------------------------------------------------------------------------

function goReplace(s: string, from: string, to: string, n: bigint): string {
  if (n === 0n) return s;
  const limit = n < 0n ? Infinity : Number(n);
  if (from === '') {
    const cps = [...s];
    let out = '';
    let done = 0;
    for (let i = 0; i <= cps.length; i++) {
      if (done < limit) {
        out += to;
        done++;
      }
      if (i < cps.length) out += cps[i];
    }
    return out;
  }
  let out = '';
  let pos = 0;
  let done = 0;
  while (done < limit) {
    const at = s.indexOf(from, pos);
    if (at < 0) break;
    out += s.slice(pos, at) + to;
    pos = at + from.length;
    done++;
  }
  return out + s.slice(pos);
}

/** RE2 leading flag group `(?i)`, `(?s)`, `(?m)` as JS flags; other syntax passes through. */
function compileRegex(pattern: string, fn: string, global: boolean): RegExp {
  let flags = global ? 'gu' : 'u';
  let src = pattern;
  const lead = /^\(\?([imsU]+)\)/.exec(src);
  if (lead !== null && !(lead[1] as string).includes('U')) {
    for (const f of lead[1] as string) if (!flags.includes(f)) flags += f;
    src = src.slice(lead[0].length);
  }
  try {
    return new RegExp(src, flags);
  } catch {
    return fail(`${fn}: invalid regular expression: ${pattern}`);
  }
}

function findAll(s: string, pattern: string, limit: bigint): string[] {
  if (limit === 0n) return [];
  const re = compileRegex(pattern, 'findAll', true);
  const out: string[] = [];
  let prevEnd = -1;
  for (const m of s.matchAll(re)) {
    // Go ignores an empty match directly after the previous match.
    if (m[0] === '' && m.index === prevEnd) continue;
    out.push(m[0]);
    prevEnd = m.index + m[0].length;
    if (limit > 0n && BigInt(out.length) >= limit) break;
  }
  return out;
}

function formatValue(v: unknown, top: boolean): string {
  if (typeof v === 'string') return top ? v : JSON.stringify(v);
  if (typeof v === 'bigint' || typeof v === 'boolean') return String(v);
  if (typeof v === 'number') return Number.isNaN(v) ? 'NaN' : v === Infinity ? 'Infinity' : v === -Infinity ? '-Infinity' : String(v);
  if (v === null) return 'null';
  if (isUint(v)) return String(v.value);
  if (v instanceof Uint8Array) return top ? Buffer.from(v).toString('utf8') : JSON.stringify(Buffer.from(v).toString('utf8'));
  if (v instanceof Date) return v.toISOString().replace('.000Z', 'Z');
  if (isDuration(v)) return String(v);
  if (Array.isArray(v)) return `[${v.map((x) => formatValue(x, false)).join(', ')}]`;
  if (v instanceof Quantity || v instanceof KubeIP || v instanceof KubeCIDR || v instanceof KubeURL) return v.toString();
  if (typeof v === 'object') {
    const entries = entriesOf(v)
      .map(([k, x]) => [formatValue(k, false), formatValue(x, false)] as const)
      .sort((p, q) => (p[0] < q[0] ? -1 : p[0] > q[0] ? 1 : 0));
    return `{${entries.map(([k, x]) => `${k}: ${x}`).join(', ')}}`;
  }
  return String(v);
}

function toIntArg(v: unknown, verb: string): bigint {
  const n = asNum(v);
  if (n === undefined || n.kind === 'double') fail(`format: %${verb} requires an int or uint, got ${kindOf(v)}`);
  return n!.n as bigint;
}

function toDoubleArg(v: unknown, verb: string): number {
  const n = asNum(v);
  if (n === undefined) return fail(`format: %${verb} requires a number, got ${kindOf(v)}`);
  return Number(n.n);
}

function fixedSpecial(x: number): string | undefined {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Infinity) return 'Infinity';
  if (x === -Infinity) return '-Infinity';
  return undefined;
}

/** cel-go strings.format: %s %d %f %e %b %o %x %X %% with an optional .precision for %f and %e. */
function celFormat(fmt: string, args: readonly unknown[]): string {
  let out = '';
  let argi = 0;
  const next = (verb: string): unknown => {
    if (argi >= args.length) fail(`format: index ${argi} out of range (only ${args.length} argument(s)) for %${verb}`);
    return args[argi++];
  };
  for (let i = 0; i < fmt.length; i++) {
    const c = fmt[i] as string;
    if (c !== '%') {
      out += c;
      continue;
    }
    let j = i + 1;
    let precision: number | undefined;
    const pm = /^\.([0-9]+)/.exec(fmt.slice(j));
    if (pm !== null) {
      precision = Number(pm[1]);
      j += pm[0].length;
    }
    const verb = fmt[j];
    if (verb === undefined) fail('format: unterminated format directive');
    i = j;
    switch (verb) {
      case '%':
        out += '%';
        break;
      case 's':
        out += formatValue(next(verb), true);
        break;
      case 'd': {
        const v = next(verb);
        const n = asNum(v);
        if (n === undefined || (n.kind === 'double' && !Number.isInteger(n.n))) fail(`format: %d requires an integer, got ${kindOf(v)}`);
        out += String(n!.n);
        break;
      }
      case 'f': {
        const x = toDoubleArg(next(verb), verb);
        out += fixedSpecial(x) ?? x.toFixed(precision ?? 6);
        break;
      }
      case 'e': {
        const x = toDoubleArg(next(verb), verb);
        out += fixedSpecial(x) ?? x.toExponential(precision ?? 6).replace(/e([+-])(\d)$/, 'e$10$2');
        break;
      }
      case 'b':
      case 'o':
      case 'x':
      case 'X': {
        const v = next(verb);
        const radix = verb === 'b' ? 2 : verb === 'o' ? 8 : 16;
        let s: string;
        if (typeof v === 'string') s = Buffer.from(v, 'utf8').toString('hex');
        else if (v instanceof Uint8Array) s = Buffer.from(v).toString('hex');
        else if (radix !== 2 && typeof v === 'number') fail(`format: %${verb} does not take a double`);
        else if (typeof v === 'boolean' && radix === 2) s = v ? '1' : '0';
        else {
          const n = toIntArg(v, verb);
          s = (n < 0n ? '-' : '') + (n < 0n ? -n : n).toString(radix);
        }
        out += verb === 'X' ? s!.toUpperCase() : s!;
        break;
      }
      default:
        fail(`format: unrecognized formatting clause "${verb}"`);
    }
  }
  return out;
}

function celQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    switch (ch) {
      case '\x07':
        out += '\\a';
        break;
      case '\b':
        out += '\\b';
        break;
      case '\f':
        out += '\\f';
        break;
      case '\n':
        out += '\\n';
        break;
      case '\r':
        out += '\\r';
        break;
      case '\t':
        out += '\\t';
        break;
      case '\v':
        out += '\\v';
        break;
      case '\\':
        out += '\\\\';
        break;
      case '"':
        out += '\\"';
        break;
      default:
        out += ch;
    }
  }
  return `${out}"`;
}

class StringsNamespace {}

function registerStrings(env: Environment): void {
  env.registerFunction('string.charAt(int): string', (s: string, i: bigint) => {
    const cps = [...s];
    if (i < 0n || i > BigInt(cps.length)) fail(`index out of range: ${i}`);
    return cps[Number(i)] ?? '';
  });
  env.registerFunction('string.replace(string, string): string', (s: string, a: string, b: string) => goReplace(s, a, b, -1n));
  env.registerFunction('string.replace(string, string, int): string', (s: string, a: string, b: string, n: bigint) => goReplace(s, a, b, n));
  env.registerFunction('string.reverse(): string', (s: string) => [...s].reverse().join(''));
  env.registerFunction('string.format(list): string', (s: string, args: unknown[]) => celFormat(s, args));
  env.registerType('kubernetes.StringsNamespace', StringsNamespace);
  env.registerConstant('strings', 'kubernetes.StringsNamespace', new StringsNamespace());
  env.registerFunction('kubernetes.StringsNamespace.quote(string): string', (_ns: StringsNamespace, s: string) => celQuote(s));
  // Kubernetes regex library
  env.registerFunction('string.find(string): string', (s: string, re: string) => compileRegex(re, 'find', false).exec(s)?.[0] ?? '');
  env.registerFunction('string.findAll(string): list<string>', (s: string, re: string) => findAll(s, re, -1n));
  env.registerFunction('string.findAll(string, int): list<string>', (s: string, re: string, n: bigint) => findAll(s, re, n));
}

// ---------------------------------------------------------------------------
// Lists (Kubernetes lists library + cel-go lists extension) and sets
// ---------------------------------------------------------------------------

function listSum(l: readonly unknown[]): unknown {
  if (l.length === 0) return 0n;
  let acc: unknown = l[0];
  const kind = kindOf(acc);
  if (!['int', 'uint', 'double', 'duration'].includes(kind)) fail(`sum: no such overload for list of ${kind}`);
  for (let i = 1; i < l.length; i++) {
    const v = l[i];
    if (kindOf(v) !== kind) fail(`sum: no such overload: ${kind} + ${kindOf(v)}`);
    if (kind === 'int') {
      const s = (acc as bigint) + (v as bigint);
      if (s > INT64_MAX || s < INT64_MIN) fail('sum: integer overflow');
      acc = s;
    } else if (kind === 'uint') acc = makeUint((acc as UintLike).value + (v as UintLike).value);
    else if (kind === 'double') acc = (acc as number) + (v as number);
    else {
      const a = acc as DurationLike;
      const b = v as DurationLike;
      const total = (a.seconds + b.seconds) * NANO + BigInt(a.nanos + b.nanos);
      acc = new durationCtor!(total / NANO, Number(total % NANO));
    }
  }
  return acc;
}

function listExtreme(l: readonly unknown[], fn: 'min' | 'max'): unknown {
  if (l.length === 0) fail(`${fn} called on empty list`);
  let best = l[0];
  for (let i = 1; i < l.length; i++) {
    const c = celCompare(best, l[i], fn);
    if ((fn === 'min' && c > 0) || (fn === 'max' && c < 0)) best = l[i];
  }
  return best;
}

function flatten(l: readonly unknown[], depth: bigint): unknown[] {
  if (depth < 0n) fail('level must be non-negative');
  const out: unknown[] = [];
  for (const v of l) {
    if (Array.isArray(v) && depth > 0n) out.push(...flatten(v, depth - 1n));
    else out.push(v);
  }
  return out;
}

function sortList(l: readonly unknown[]): unknown[] {
  if (l.length === 0) return [];
  const kind = kindOf(l[0]);
  for (const v of l) if (kindOf(v) !== kind) fail('sort: list elements must have the same type');
  if (!['int', 'uint', 'double', 'string', 'bool', 'bytes', 'timestamp', 'duration', 'kubernetes.Quantity', 'Quantity'].includes(kind)) {
    fail('sort: list elements must be comparable');
  }
  return [...l].sort((a, b) => celCompare(a, b, 'sort') || 0);
}

class ListsNamespace {}
class SetsNamespace {}

function registerLists(env: Environment): void {
  env.registerFunction('list.sum(): dyn', (l: unknown[]) => listSum(l));
  env.registerFunction('list.min(): dyn', (l: unknown[]) => listExtreme(l, 'min'));
  env.registerFunction('list.max(): dyn', (l: unknown[]) => listExtreme(l, 'max'));
  env.registerFunction('list.isSorted(): bool', (l: unknown[]) => {
    for (let i = 1; i < l.length; i++) if (celCompare(l[i - 1], l[i], 'isSorted') > 0) return false;
    return true;
  });
  env.registerFunction('list<A>.indexOf(A): int', (l: unknown[], v: unknown) => BigInt(l.findIndex((x) => celEquals(x, v))));
  env.registerFunction('list<A>.lastIndexOf(A): int', (l: unknown[], v: unknown) => BigInt(l.findLastIndex((x) => celEquals(x, v))));
  env.registerFunction('list.slice(int, int): list<dyn>', (l: unknown[], start: bigint, end: bigint) => {
    if (start < 0n || end < 0n) fail(`cannot slice(${start}, ${end}), negative indexes not supported`);
    if (start > end) fail(`cannot slice(${start}, ${end}), start index must be less than or equal to end index`);
    if (end > BigInt(l.length)) fail(`cannot slice(${start}, ${end}), list is length ${l.length}`);
    return l.slice(Number(start), Number(end));
  });
  env.registerFunction('list.flatten(): list<dyn>', (l: unknown[]) => flatten(l, 1n));
  env.registerFunction('list.flatten(int): list<dyn>', (l: unknown[], d: bigint) => flatten(l, d));
  env.registerFunction('list.sort(): list<dyn>', (l: unknown[]) => sortList(l));
  env.registerFunction('list.distinct(): list<dyn>', (l: unknown[]) => {
    const out: unknown[] = [];
    for (const v of l) if (!out.some((x) => celEquals(x, v))) out.push(v);
    return out;
  });
  env.registerFunction('list.reverse(): list<dyn>', (l: unknown[]) => [...l].reverse());
  env.registerType('kubernetes.ListsNamespace', ListsNamespace);
  env.registerConstant('lists', 'kubernetes.ListsNamespace', new ListsNamespace());
  env.registerFunction('kubernetes.ListsNamespace.range(int): list<int>', (_ns: ListsNamespace, n: bigint) => {
    if (n > 100_000n) fail('lists.range: n must be at most 100000');
    const out: bigint[] = [];
    for (let i = 0n; i < n; i++) out.push(i);
    return out;
  });

  env.registerType('kubernetes.SetsNamespace', SetsNamespace);
  env.registerConstant('sets', 'kubernetes.SetsNamespace', new SetsNamespace());
  const has = (l: readonly unknown[], v: unknown): boolean => l.some((x) => celEquals(x, v));
  env.registerFunction('kubernetes.SetsNamespace.contains(list, list): bool', (_ns: SetsNamespace, a: unknown[], b: unknown[]) => b.every((v) => has(a, v)));
  env.registerFunction('kubernetes.SetsNamespace.equivalent(list, list): bool', (_ns: SetsNamespace, a: unknown[], b: unknown[]) => b.every((v) => has(a, v)) && a.every((v) => has(b, v)));
  env.registerFunction('kubernetes.SetsNamespace.intersects(list, list): bool', (_ns: SetsNamespace, a: unknown[], b: unknown[]) => b.some((v) => has(a, v)));
}

// ---------------------------------------------------------------------------
// Math extension
// ---------------------------------------------------------------------------

class MathNamespace {}

function numericOrFail(v: unknown, fn: string): Num {
  return asNum(v) ?? fail(`${fn}: argument must be numeric, got ${kindOf(v)}`);
}

function pick(values: readonly unknown[], fn: 'math.greatest' | 'math.least'): unknown {
  if (values.length === 0) fail(`${fn}: argument must not be empty`);
  let best = values[0];
  let bestNum = numericOrFail(best, fn);
  for (let i = 1; i < values.length; i++) {
    const n = numericOrFail(values[i], fn);
    const c = compareNum(n, bestNum);
    if ((fn === 'math.greatest' && c > 0) || (fn === 'math.least' && c < 0)) {
      best = values[i];
      bestNum = n;
    }
  }
  return best;
}

function registerMath(env: Environment): void {
  const M = 'kubernetes.MathNamespace';
  env.registerType(M, MathNamespace);
  env.registerConstant('math', M, new MathNamespace());
  const nums = ['int', 'uint', 'double'] as const;
  for (const [name, fn] of [
    ['greatest', 'math.greatest'],
    ['least', 'math.least'],
  ] as const) {
    for (const t of nums) env.registerFunction(`${M}.${name}(${t}): ${t}`, (_ns: MathNamespace, a: unknown) => a);
    env.registerFunction(`${M}.${name}(list): dyn`, (_ns: MathNamespace, l: unknown[]) => pick(l, fn));
    for (const a of nums) {
      for (const b of nums) {
        env.registerFunction(`${M}.${name}(${a}, ${b}): ${a === b ? a : 'dyn'}`, (_ns: MathNamespace, x: unknown, y: unknown) => pick([x, y], fn));
      }
    }
    for (let arity = 3; arity <= 8; arity++) {
      for (const t of nums) {
        env.registerFunction(`${M}.${name}(${new Array<string>(arity).fill(t).join(', ')}): ${t}`, (_ns: MathNamespace, ...xs: unknown[]) => pick(xs, fn));
      }
    }
  }
  const dbl = (name: string, f: (x: number) => number): void => {
    env.registerFunction(`${M}.${name}(double): double`, (_ns: MathNamespace, x: number) => f(x));
  };
  dbl('ceil', Math.ceil);
  dbl('floor', Math.floor);
  dbl('round', (x) => (x < 0 ? -Math.round(-x) : Math.round(x)));
  dbl('trunc', Math.trunc);
  env.registerFunction(`${M}.isNaN(double): bool`, (_ns: MathNamespace, x: number) => Number.isNaN(x));
  env.registerFunction(`${M}.isInf(double): bool`, (_ns: MathNamespace, x: number) => x === Infinity || x === -Infinity);
  env.registerFunction(`${M}.isFinite(double): bool`, (_ns: MathNamespace, x: number) => Number.isFinite(x));
  env.registerFunction(`${M}.abs(int): int`, (_ns: MathNamespace, x: bigint) => (x === INT64_MIN ? fail('math.abs: integer overflow') : x < 0n ? -x : x));
  env.registerFunction(`${M}.abs(uint): uint`, (_ns: MathNamespace, x: UintLike) => x);
  env.registerFunction(`${M}.abs(double): double`, (_ns: MathNamespace, x: number) => Math.abs(x));
  env.registerFunction(`${M}.sign(int): int`, (_ns: MathNamespace, x: bigint) => cmpBig(x, 0n));
  env.registerFunction(`${M}.sign(uint): uint`, (_ns: MathNamespace, x: UintLike) => makeUint(x.value === 0n ? 0n : 1n));
  env.registerFunction(`${M}.sign(double): double`, (_ns: MathNamespace, x: number) => (Number.isNaN(x) ? NaN : x > 0 ? 1 : x < 0 ? -1 : 0));
  env.registerFunction(`${M}.sqrt(int): double`, (_ns: MathNamespace, x: bigint) => Math.sqrt(Number(x)));
  env.registerFunction(`${M}.sqrt(uint): double`, (_ns: MathNamespace, x: UintLike) => Math.sqrt(Number(x.value)));
  env.registerFunction(`${M}.sqrt(double): double`, (_ns: MathNamespace, x: number) => Math.sqrt(x));
  const i64 = (v: bigint): bigint => BigInt.asIntN(64, v);
  const u64 = (v: bigint): bigint => BigInt.asUintN(64, v);
  env.registerFunction(`${M}.bitAnd(int, int): int`, (_ns: MathNamespace, a: bigint, b: bigint) => a & b);
  env.registerFunction(`${M}.bitOr(int, int): int`, (_ns: MathNamespace, a: bigint, b: bigint) => a | b);
  env.registerFunction(`${M}.bitXor(int, int): int`, (_ns: MathNamespace, a: bigint, b: bigint) => a ^ b);
  env.registerFunction(`${M}.bitNot(int): int`, (_ns: MathNamespace, a: bigint) => ~a);
  env.registerFunction(`${M}.bitAnd(uint, uint): uint`, (_ns: MathNamespace, a: UintLike, b: UintLike) => makeUint(a.value & b.value));
  env.registerFunction(`${M}.bitOr(uint, uint): uint`, (_ns: MathNamespace, a: UintLike, b: UintLike) => makeUint(a.value | b.value));
  env.registerFunction(`${M}.bitXor(uint, uint): uint`, (_ns: MathNamespace, a: UintLike, b: UintLike) => makeUint(a.value ^ b.value));
  env.registerFunction(`${M}.bitNot(uint): uint`, (_ns: MathNamespace, a: UintLike) => makeUint(u64(~a.value)));
  const shiftCheck = (fn: string, n: bigint): void => {
    if (n < 0n) fail(`math.${fn}() negative offset: ${n}`);
  };
  env.registerFunction(`${M}.bitShiftLeft(int, int): int`, (_ns: MathNamespace, a: bigint, n: bigint) => {
    shiftCheck('bitShiftLeft', n);
    return n >= 64n ? 0n : i64(a << n);
  });
  env.registerFunction(`${M}.bitShiftRight(int, int): int`, (_ns: MathNamespace, a: bigint, n: bigint) => {
    shiftCheck('bitShiftRight', n);
    return n >= 64n ? 0n : i64(u64(a) >> n);
  });
  env.registerFunction(`${M}.bitShiftLeft(uint, int): uint`, (_ns: MathNamespace, a: UintLike, n: bigint) => {
    shiftCheck('bitShiftLeft', n);
    return makeUint(n >= 64n ? 0n : u64(a.value << n));
  });
  env.registerFunction(`${M}.bitShiftRight(uint, int): uint`, (_ns: MathNamespace, a: UintLike, n: bigint) => {
    shiftCheck('bitShiftRight', n);
    return makeUint(n >= 64n ? 0n : a.value >> n);
  });
}

// ---------------------------------------------------------------------------

/**
 * Registers the Kubernetes CEL libraries (quantity, URL, IP/CIDR, regex,
 * lists, sets, math, strings extensions) on `env`. Call once per
 * environment, after its variables.
 */
export function registerKubernetesLibraries(env: Environment): Environment {
  if (uintCtor === undefined) {
    uintCtor = (env.evaluate('1u') as object).constructor as new (v: bigint) => UintLike;
    durationCtor = (env.evaluate("duration('1s')") as object).constructor as new (s: bigint, n: number) => DurationLike;
  }
  registerQuantity(env);
  registerURL(env);
  registerIP(env);
  registerStrings(env);
  registerLists(env);
  registerMath(env);
  return env;
}
