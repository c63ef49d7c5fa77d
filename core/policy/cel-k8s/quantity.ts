/**
 * The Kubernetes quantity library: `quantity()`, `isQuantity()` and the
 * Quantity methods, exact over a bigint count of nano-units
 * (k8s.io/apiserver/pkg/cel/library/quantity.go). Part of
 * core/policy/cel-k8s.ts, which lists the semantics of every library.
 */
import type { Environment } from '@marcbachmann/cel-js';
import { INT64_MAX, INT64_MIN, NANO, cmpBig, fail } from './values.ts';

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

export function registerQuantity(env: Environment): void {
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
