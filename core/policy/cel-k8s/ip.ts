/**
 * The Kubernetes IP and CIDR libraries: `ip()`, `cidr()` and their methods,
 * with Go net/netip semantics (k8s.io/apiserver/pkg/cel/library/ip.go,
 * cidr.go). Part of core/policy/cel-k8s.ts, which lists the semantics of
 * every library.
 */
import { isIP as netIsIP } from 'node:net';
import type { Environment } from '@marcbachmann/cel-js';
import { fail } from './values.ts';

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

export const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && a.every((x, i) => x === b[i]);

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

export function registerIP(env: Environment): void {
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
