/**
 * The cel-go math extension: `math.greatest`/`least`, rounding, `abs`,
 * `sign`, the float predicates, `sqrt` and the bit operations. Part of
 * core/policy/cel-k8s.ts, which lists the semantics of every library.
 */
import type { Environment } from '@marcbachmann/cel-js';
import { INT64_MIN, type Num, type UintLike, asNum, cmpBig, compareNum, fail, kindOf, makeUint } from './values.ts';

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

export function registerMath(env: Environment): void {
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
