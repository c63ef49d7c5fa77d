/**
 * The cel-go strings extension functions cel-js lacks (`charAt`, `replace`,
 * `reverse`, `format`, `strings.quote`) and the Kubernetes regex library
 * (`find`, `findAll`). Part of core/policy/cel-k8s.ts, which lists the
 * semantics of every library.
 */
import type { Environment } from '@marcbachmann/cel-js';
import { KubeCIDR, KubeIP } from './ip.ts';
import { Quantity } from './quantity.ts';
import { KubeURL } from './url.ts';
import { asNum, entriesOf, fail, isDuration, isUint, kindOf } from './values.ts';

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

export function registerStrings(env: Environment): void {
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
