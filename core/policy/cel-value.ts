/**
 * Lazy CEL input: a read-only view of parsed JSON in which integral numbers
 * read as bigint (CEL `int`), converted only where an expression looks.
 *
 * {@link toCelValue} converts a whole object up front: for a 15 KiB Pod that
 * is a deep copy of every node on every review (about 6 % of the webhook's
 * CPU), while the starter pack reads a few dozen fields of it. The view
 * produced by {@link lazyCelValue} has the same values as `toCelValue(v)`
 * when read (same keys, same order, integral numbers as bigint, non-integral
 * as number, strings/booleans/null as they are) but converts a property only
 * when it is read, and makes at most one view per JSON object or array.
 *
 * How: every object or array is seen through a Proxy whose target is an
 * empty stand-in of the same kind (so `Array.isArray`, `instanceof Array`
 * and `constructor` answer as for the real value, and a frozen input cannot
 * trip the Proxy invariants); reads, `in`, key listing and property
 * descriptors are answered from the real value. Writes are refused (CEL never
 * writes). The input is never mutated.
 *
 * Pure: no I/O, no logging.
 */

/** Converts one JSON scalar read from the input (containers are converted by their parent's handler, which caches them). */
function convertScalar(v: unknown): unknown {
  return typeof v === 'number' && Number.isInteger(v) ? BigInt(v) : v;
}

function viewOf(raw: object): object {
  return new Proxy(Array.isArray(raw) ? [] : {}, new LazyHandler(raw));
}

function readOnly(): never {
  throw new TypeError('CEL input is read-only');
}

/** The traps of one view; `raw` is the JSON value seen through it. */
class LazyHandler implements ProxyHandler<object> {
  readonly raw: Record<PropertyKey, unknown>;
  readonly isArray: boolean;
  /** Views of the child containers made so far (one per child: stable identity, no repeated Proxy allocation). */
  #kids: Map<PropertyKey, object> | undefined;

  constructor(raw: object) {
    this.raw = raw as Record<PropertyKey, unknown>;
    this.isArray = Array.isArray(raw);
  }

  #kid(key: PropertyKey, v: object): object {
    this.#kids ??= new Map();
    let view = this.#kids.get(key);
    if (view === undefined) this.#kids.set(key, (view = viewOf(v)));
    return view;
  }

  get(_target: object, key: PropertyKey): unknown {
    const v = this.raw[key];
    if (typeof v === 'number') {
      // An array's length is the only own number that is not JSON data; nothing inherited is a number.
      return this.isArray && key === 'length' ? v : Number.isInteger(v) ? BigInt(v) : v;
    }
    // Only own members are data: `__proto__`, Symbol.unscopables and the like are not converted.
    if (v !== null && typeof v === 'object' && Object.hasOwn(this.raw, key)) return this.#kid(key, v);
    return v;
  }

  has(_target: object, key: PropertyKey): boolean {
    return key in this.raw;
  }

  ownKeys(): ArrayLike<string | symbol> {
    return Reflect.ownKeys(this.raw);
  }

  getOwnPropertyDescriptor(_target: object, key: PropertyKey): PropertyDescriptor | undefined {
    const d = Reflect.getOwnPropertyDescriptor(this.raw, key);
    if (d === undefined) return undefined;
    // The stand-in array's own non-configurable, writable length must be reported as such.
    if (this.isArray && key === 'length') return { value: d.value, writable: true, enumerable: false, configurable: false };
    const v: unknown = d.value;
    return { value: v !== null && typeof v === 'object' ? this.#kid(key, v) : convertScalar(v), writable: false, enumerable: d.enumerable ?? false, configurable: true };
  }

  set(): boolean {
    return readOnly();
  }

  defineProperty(): boolean {
    return readOnly();
  }

  deleteProperty(): boolean {
    return readOnly();
  }

  setPrototypeOf(): boolean {
    return readOnly();
  }

  preventExtensions(): boolean {
    return readOnly();
  }
}

/**
 * A lazily converted, read-only view of `v` for a CEL activation: reads the
 * same as `toCelValue(v)` (integral numbers as bigint) but converts only what
 * is read. Never mutates `v`; `v` must not change while the view is in use.
 */
export function lazyCelValue(v: unknown): unknown {
  return v !== null && typeof v === 'object' ? viewOf(v) : convertScalar(v);
}
