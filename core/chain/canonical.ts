/**
 * The canonical serialization the hash chain is computed over.
 *
 * Definition (this is the contract `kubetrail verify` re-implements):
 * - the JSON text of RFC 8259 with no insignificant whitespace;
 * - object members sorted by key, comparing keys as sequences of UTF-16 code
 *   units (JavaScript's default sort order, the order RFC 8785 "JCS" uses);
 * - members whose value is `undefined` are omitted (as JSON.stringify does),
 *   `undefined` array elements become `null`;
 * - strings escaped exactly as ECMAScript JSON.stringify escapes them;
 * - numbers written as ECMAScript Number::toString writes them (JCS §3.2.2.3);
 *   NaN, ±Infinity and BigInt are refused, so no two values collide;
 * - objects with a `toJSON` method are serialized through it (e.g. Date).
 *
 * For the values kubetrail events hold this is RFC 8785 JSON Canonicalization.
 * It is pure and allocation-light because every event goes through it once
 * (test/bench/canonical.ts measures it: `npm run bench:canonical`).
 */

/** A value that cannot be canonicalized (NaN, Infinity, BigInt, function, symbol, cycle). */
export class CanonicalizationError extends TypeError {
  /** Dotted path of the offending value. */
  readonly path: string;
  constructor(path: string, what: string) {
    super(`cannot canonicalize ${what} at ${path || '(root)'}`);
    this.name = 'CanonicalizationError';
    this.path = path;
  }
}

/** Serializes `value` canonically (see the module comment for the exact rules). */
export function canonicalJson(value: unknown): string {
  // Fast path: the engine's JSON.stringify over a "canonical view" of the
  // value: every object whose own keys already enumerate in sorted order
  // (and whose members need no change) is handed over as it is, and only the
  // objects whose keys are out of order are copied with their keys inserted
  // sorted. Kubernetes objects are mostly already in order (env entries,
  // probes, labels...), so few copies are made. The view gives up — and the
  // writer below decides — wherever the engine would not keep the order of a
  // copy (integer-like keys enumerate first), where toJSON, non-plain objects
  // or `__proto__` are involved, and on values the rules refuse.
  if (protoHasToJson()) return writeOrThrow(value);
  try {
    return JSON.stringify(canonicalView(value, 0));
  } catch (err) {
    if (err !== SLOW_PATH) throw err;
  }
  return writeOrThrow(value);
}

/**
 * The same serialization by the plain recursive writer alone (no fast path):
 * the reference the fast path is tested against, and a fallback.
 */
export function canonicalJsonByWriter(value: unknown): string {
  return writeOrThrow(value);
}

function writeOrThrow(value: unknown): string {
  try {
    return write(value, 0);
  } catch (err) {
    if (err instanceof Located) throw new CanonicalizationError(err.path.reverse().join('.').replace(/\.\[/g, '[').slice(0, 200), err.what);
    throw err;
  }
}

const SLOW_PATH = Symbol('canonical slow path');

/**
 * Values the fast path takes as they are, without walking them again: roots
 * built by {@link buildCanonicalView} (which checked every rule while
 * building), and values given to {@link markCanonicalView}.
 */
const marked = new WeakSet<object>();

/**
 * A producer's say over one value while {@link buildCanonicalView} copies it:
 * return `value` to keep it, or its replacement. Called for every string and
 * every object or array (not for other scalars), with the member name it sits
 * under (for an array element: the array's member name, and
 * `element` true). A replacement is not
 * given to the hook again, but its members are.
 */
export type ViewHook = (value: unknown, key: string | undefined, element: boolean) => unknown;

/**
 * The one way a producer outside core/chain keeps the saving of a canonical
 * view (object masking: every captured object is copied anyway, so it is
 * built sorted at the same time and canonicalJson need not walk it again):
 * copies `value` through `hook` (copy on write: unchanged subtrees are
 * shared), inserting the keys of every object sorted, and checks every rule
 * of {@link markCanonicalView} on everything it keeps or builds, whatever the
 * hook returns. The result is then trusted by canonicalJson. Returns
 * undefined when the result cannot be a view (a toJSON member, a class
 * instance, a non-finite number, an integer-like key in a copy, too deep):
 * the caller builds its value the ordinary way, and canonicalJson's own rules
 * apply. Whatever `hook` does, the canonical JSON of the result is the one
 * the plain writer gives (core/chain/canonical.test.ts). The result and
 * everything in it must not change afterwards.
 */
export function buildCanonicalView(value: unknown, hook: ViewHook): { value: unknown } | undefined {
  if (protoHasToJson()) return undefined;
  let out: unknown;
  try {
    out = buildView(value, undefined, hook, 0);
  } catch (err) {
    if (err === SLOW_PATH) return undefined;
    throw err;
  }
  if (out !== null && typeof out === 'object') marked.add(out);
  return { value: out };
}

function buildView(v0: unknown, key: string | undefined, hook: ViewHook, depth: number, element = false): unknown {
  const v = typeof v0 === 'string' || (typeof v0 === 'object' && v0 !== null) ? hook(v0, key, element) : v0;
  if (typeof v !== 'object' || v === null) {
    checkScalar(v);
    if (typeof v === 'function' || typeof v === 'symbol') throw SLOW_PATH;
    return v;
  }
  if (depth > VIEW_MAX_DEPTH) throw SLOW_PATH;
  const proto: unknown = Object.getPrototypeOf(v);
  if (proto === Array.prototype) {
    const a = v as unknown[];
    let out: unknown[] | undefined = a === v0 ? undefined : a.slice(0, 0);
    for (let i = 0; i < a.length; i++) {
      const e = a[i];
      // undefined (or a hole) in an array: JSON.stringify writes null, as the writer does, but a copy must not differ.
      if (e === undefined) throw SLOW_PATH;
      const r = typeof e === 'string' || (typeof e === 'object' && e !== null) ? buildView(e, key, hook, depth + 1, true) : (checkScalar(e), e);
      if (typeof r === 'function' || typeof r === 'symbol') throw SLOW_PATH;
      if (r !== e && out === undefined) out = a.slice(0, i);
      if (out !== undefined) out.push(r);
    }
    return out ?? a;
  }
  if (proto !== Object.prototype && proto !== null) throw SLOW_PATH;
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o);
  const sorted = keysSorted(keys);
  if (!sorted) keys.sort();
  // A replacement, or unsorted keys: a fresh copy; else shared until a member changes.
  let out: Record<string, unknown> | undefined = !sorted || o !== v0 ? {} : undefined;
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i] as string;
    if (k === 'toJSON') throw SLOW_PATH;
    const e = o[k];
    if (e === undefined || typeof e === 'function' || typeof e === 'symbol') throw SLOW_PATH;
    const r = typeof e === 'string' || (typeof e === 'object' && e !== null) ? buildView(e, k, hook, depth + 1) : (checkScalar(e), e);
    if (out !== undefined || r !== e) out = copyOnWrite(out, o, keys, i, r);
  }
  return out ?? o;
}

/**
 * @deprecated Trusted unchecked: a false mark makes canonicalJson hash a
 * line that is not canonical (verify then reports the event as altered). No
 * product code calls it any more; use {@link buildCanonicalView}, which
 * checks what it marks. Kept while core/chain/chain.test.ts pins it.
 *
 * For code that builds a copy of a value anyway (masking does, for every
 * captured object) and can build it as a canonical view at the same time:
 * every object in it a plain object (prototype Object.prototype or null)
 * whose own keys enumerate sorted by UTF-16 code units, with no `toJSON`
 * member, no integer-like or `__proto__` key in an object the producer
 * created, every array a plain array, no non-finite number or BigInt, and at
 * most {@link VIEW_MAX_DEPTH} levels deep. {@link viewScalar},
 * {@link viewCopiedKey} and {@link viewObjectKey} throw
 * {@link NOT_A_VIEW} where a value breaks those rules; the producer then
 * builds its value the ordinary way and does not mark it.
 *
 * Marking `v` tells canonicalJson that JSON.stringify(v) is already its
 * canonical serialization, so it is not walked a second time. `v` and
 * everything in it must not change afterwards. A false mark cannot go
 * unnoticed: the line hashed would not be canonical, and `kubetrail verify`,
 * which recomputes the hash from the parsed line with the plain writer, would
 * reject the event.
 */
export function markCanonicalView(v: object): void {
  marked.add(v);
}

/** Thrown by the view rule checks below. */
const NOT_A_VIEW: symbol = SLOW_PATH;

/** Deepest nesting a producer may build as a view (the event around it adds a few levels below canonicalJson's own limit). */
const VIEW_MAX_DEPTH = 200;

/** Throws {@link NOT_A_VIEW} for a scalar a view cannot hold (non-finite number, BigInt). */
function viewScalar(v: unknown): void {
  checkScalar(v);
}

/** Throws {@link NOT_A_VIEW} for a key an object the producer creates cannot hold in insertion order (integer-like) or at all (`__proto__`). */
function viewCopiedKey(k: string): void {
  checkCopiedKey(k);
}

/** Throws {@link NOT_A_VIEW} for a member JSON.stringify would not write as a plain member (`toJSON`). */
function viewObjectKey(k: string): void {
  if (k === 'toJSON') throw SLOW_PATH;
}

/** True when someone gave every object or array an inherited toJSON (the view would not see it). */
function protoHasToJson(): boolean {
  return (Object.prototype as { toJSON?: unknown }).toJSON !== undefined || (Array.prototype as { toJSON?: unknown }).toJSON !== undefined;
}

/** True when `keys` are in canonical (code unit) order already; shared by the view and object masking. */
function keysSorted(keys: readonly string[]): boolean {
  for (let i = 1; i < keys.length; i++) if ((keys[i - 1] as string) > (keys[i] as string)) return false;
  return true;
}

/** Refuses (to the slow path) values the rules refuse or that JSON.stringify would write differently. */
function checkScalar(v: unknown): void {
  if (typeof v === 'number' ? !Number.isFinite(v) : typeof v === 'bigint') throw SLOW_PATH;
}

/** A key a copy cannot hold in insertion order (integer-like keys enumerate first) or at all (`__proto__`). */
function checkCopiedKey(k: string): void {
  const c = k.charCodeAt(0);
  if ((c >= 48 && c <= 57) || k === '__proto__') throw SLOW_PATH;
}

/**
 * Member `i` of `o` (its key `keys[i]`) becomes `value` in the copy `out`;
 * when there is no copy yet (the first changed member) it starts one with the
 * members before `i`. Every copied key is checked: a copy must not reorder.
 */
function copyOnWrite(out: Record<string, unknown> | undefined, o: Record<string, unknown>, keys: readonly string[], i: number, value: unknown): Record<string, unknown> {
  if (out === undefined) {
    out = {};
    for (let j = 0; j < i; j++) {
      const kj = keys[j] as string;
      checkCopiedKey(kj);
      out[kj] = o[kj];
    }
  }
  const k = keys[i] as string;
  checkCopiedKey(k);
  out[k] = value;
  return out;
}


/**
 * `v` itself when JSON.stringify(v) is already canonical, else a copy that
 * is (sharing every unchanged member). Throws SLOW_PATH where it cannot tell.
 */
function canonicalView(v: unknown, depth: number): unknown {
  if (typeof v !== 'object' || v === null) {
    checkScalar(v);
    return v;
  }
  if (depth > MAX_DEPTH) throw SLOW_PATH;
  if (marked.has(v)) return v;
  const proto: unknown = Object.getPrototypeOf(v);
  if (proto === Array.prototype) {
    const a = v as unknown[];
    let out: unknown[] | undefined;
    for (let i = 0; i < a.length; i++) {
      const e = a[i];
      if (typeof e !== 'object' || e === null) {
        checkScalar(e);
        continue;
      }
      const c = canonicalView(e, depth + 1);
      if (c !== e) {
        out ??= a.slice();
        out[i] = c;
      }
    }
    return out ?? a;
  }
  // Dates, class instances, boxed primitives, Maps...: the writer's rules.
  if (proto !== Object.prototype && proto !== null) throw SLOW_PATH;
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o);
  const n = keys.length;
  const sorted = keysSorted(keys);
  if (sorted) {
    // Shared as it is unless a member changes; then copied from that member on.
    let out: Record<string, unknown> | undefined;
    for (let i = 0; i < n; i++) {
      const k = keys[i] as string;
      if (k === 'toJSON') throw SLOW_PATH;
      const e = o[k];
      let c = e;
      if (typeof e !== 'object' || e === null) checkScalar(e);
      else c = canonicalView(e, depth + 1);
      if (out !== undefined || c !== e) out = copyOnWrite(out, o, keys, i, c);
    }
    return out ?? o;
  }
  keys.sort();
  const out: Record<string, unknown> = {};
  for (let i = 0; i < n; i++) {
    const k = keys[i] as string;
    checkCopiedKey(k);
    if (k === 'toJSON') throw SLOW_PATH;
    const e = o[k];
    out[k] = typeof e !== 'object' || e === null ? (checkScalar(e), e) : canonicalView(e, depth + 1);
  }
  return out;
}

/** Internal: an error on its way up, collecting the path (cheaper than building paths for every member). */
class Located {
  readonly path: string[] = [];
  readonly what: string;
  constructor(what: string) {
    this.what = what;
  }
}

// Deeper than this is a cycle or an attack; Kubernetes objects are far shallower.
const MAX_DEPTH = 256;

function write(v: unknown, depth: number): string {
  switch (typeof v) {
    case 'string':
      return JSON.stringify(v);
    case 'number':
      if (!Number.isFinite(v)) throw new Located(String(v));
      // Number::toString is what JSON.stringify uses for finite numbers.
      return '' + v;
    case 'boolean':
      return v ? 'true' : 'false';
    case 'object': {
      if (v === null) return 'null';
      if (depth > MAX_DEPTH) throw new Located('a value nested too deeply (a cycle?)');
      if (Array.isArray(v)) {
        let out = '[';
        for (let i = 0; i < v.length; i++) {
          if (i > 0) out += ',';
          const e: unknown = v[i];
          try {
            out += e === undefined || typeof e === 'function' || typeof e === 'symbol' ? 'null' : write(e, depth + 1);
          } catch (err) {
            if (err instanceof Located) err.path.push(`[${i}]`);
            throw err;
          }
        }
        return out + ']';
      }
      const toJson = (v as { toJSON?: unknown }).toJSON;
      if (typeof toJson === 'function') return write((toJson as () => unknown).call(v), depth + 1);
      const obj = v as Record<string, unknown>;
      const keys = Object.keys(obj);
      if (keys.length > 1) keys.sort();
      let out = '{';
      for (let i = 0; i < keys.length; i++) {
        const k = keys[i] as string;
        const e = obj[k];
        if (e === undefined || typeof e === 'function' || typeof e === 'symbol') continue;
        try {
          out += (out.length > 1 ? ',' : '') + JSON.stringify(k) + ':' + write(e, depth + 1);
        } catch (err) {
          if (err instanceof Located) err.path.push(k);
          throw err;
        }
      }
      return out + '}';
    }
    case 'bigint':
      throw new Located('a BigInt');
    default:
      throw new Located(`a ${typeof v}`);
  }
}
