/**
 * Values shared by the libraries: CEL equality and ordering over cel-js
 * runtime values (int, uint, double, string, list, map, duration), int64
 * bounds, and the failure every library throws. Part of
 * core/policy/cel-k8s.ts, which lists the semantics of every library.
 * Equality and ordering know the library types, so this file and the library
 * files import each other; only function bodies use those imports, so the
 * load order does not matter.
 */
import type { Environment } from '@marcbachmann/cel-js';
import { KubeCIDR, KubeIP, sameBytes } from './ip.ts';
import { Quantity } from './quantity.ts';
import { KubeURL } from './url.ts';

export const INT64_MAX = (1n << 63n) - 1n;
export const INT64_MIN = -(1n << 63n);
export const NANO = 1_000_000_000n;

export function fail(message: string): never {
  throw new Error(message);
}

export function cmpBig(a: bigint, b: bigint): bigint {
  return a < b ? -1n : a > b ? 1n : 0n;
}

// ---------------------------------------------------------------------------
// Shared value helpers (CEL equality and ordering over cel-js runtime values)
// ---------------------------------------------------------------------------

/** cel-js does not export these classes (only their public getters are typed); {@link captureRuntimeClasses} takes them from values it makes. */
export type UintLike = { readonly value: bigint };
export type DurationLike = { readonly seconds: bigint; readonly nanos: number };
let uintCtor: (new (v: bigint) => UintLike) | undefined;
export let durationCtor: (new (s: bigint, n: number) => DurationLike) | undefined;

export const isUint = (v: unknown): v is UintLike => uintCtor !== undefined && v instanceof uintCtor;
export const isDuration = (v: unknown): v is DurationLike => durationCtor !== undefined && v instanceof durationCtor;
export const makeUint = (v: bigint): UintLike => {
  if (uintCtor === undefined) return fail('uint unavailable');
  if (v < 0n || v > (1n << 64n) - 1n) fail('unsigned integer overflow');
  return new uintCtor(v);
};

export type Num = { kind: 'int' | 'uint' | 'double'; n: bigint | number };
export function asNum(v: unknown): Num | undefined {
  if (typeof v === 'bigint') return { kind: 'int', n: v };
  if (typeof v === 'number') return { kind: 'double', n: v };
  if (isUint(v)) return { kind: 'uint', n: v.value };
  return undefined;
}

/** Compares numbers of any CEL numeric type exactly (NaN compares as unordered: returns NaN). */
export function compareNum(a: Num, b: Num): number {
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

export function kindOf(v: unknown): string {
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
export function celCompare(a: unknown, b: unknown, fn: string): number {
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

export function entriesOf(m: unknown): [unknown, unknown][] {
  if (m instanceof Map) return [...m.entries()];
  return Object.entries(m as Record<string, unknown>);
}

/** CEL equality (heterogeneous numeric equality as in cel-go). */
export function celEquals(a: unknown, b: unknown): boolean {
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


/** Takes cel-js's uint and duration classes from values it makes (the package exports neither); once per process. */
export function captureRuntimeClasses(env: Environment): void {
  if (uintCtor !== undefined) return;
  uintCtor = (env.evaluate('1u') as object).constructor as new (v: bigint) => UintLike;
  durationCtor = (env.evaluate("duration('1s')") as object).constructor as new (s: bigint, n: number) => DurationLike;
}
