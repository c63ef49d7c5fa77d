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
 * It is pure and allocation-light because every event goes through it once.
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
  // Fast path: a copy whose objects have their keys inserted in sorted order,
  // serialized by the engine's JSON.stringify (about twice as fast as the
  // writer below). It gives up — and the writer decides — wherever the engine
  // would not keep insertion order (integer-like keys enumerate first), where
  // toJSON or `__proto__` is involved, and on values the rules refuse.
  try {
    return JSON.stringify(sortedCopy(value, 0));
  } catch (err) {
    if (err !== SLOW_PATH) throw err;
  }
  try {
    return write(value, 0);
  } catch (err) {
    if (err instanceof Located) throw new CanonicalizationError(err.path.reverse().join('.').replace(/\.\[/g, '[').slice(0, 200), err.what);
    throw err;
  }
}

const SLOW_PATH = Symbol('canonical slow path');

function sortedCopy(v: unknown, depth: number): unknown {
  if (typeof v !== 'object' || v === null) {
    if ((typeof v === 'number' && !Number.isFinite(v)) || typeof v === 'bigint') throw SLOW_PATH;
    return v;
  }
  if (depth > MAX_DEPTH) throw SLOW_PATH;
  if (Array.isArray(v)) {
    const out: unknown[] = new Array(v.length);
    for (let i = 0; i < v.length; i++) out[i] = sortedCopy(v[i], depth + 1);
    return out;
  }
  if (typeof (v as { toJSON?: unknown }).toJSON === 'function') throw SLOW_PATH;
  const keys = Object.keys(v);
  if (keys.length > 1) keys.sort();
  const out: Record<string, unknown> = {};
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i] as string;
    const c = k.charCodeAt(0);
    if ((c >= 48 && c <= 57) || k === '__proto__') throw SLOW_PATH;
    out[k] = sortedCopy((v as Record<string, unknown>)[k], depth + 1);
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
