/**
 * The Kubernetes lists library and the cel-go lists and sets extensions.
 * Part of core/policy/cel-k8s.ts, which lists the semantics of every
 * library.
 */
import type { Environment } from '@marcbachmann/cel-js';
import { type DurationLike, INT64_MAX, INT64_MIN, NANO, type UintLike, celCompare, celEquals, durationCtor, fail, kindOf, makeUint } from './values.ts';

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

export function registerLists(env: Environment): void {
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
