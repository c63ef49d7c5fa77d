/**
 * CEL input from parsed JSON, converting as little as possible.
 *
 * cel-js models CEL `int` as bigint, so integral JSON numbers must become
 * bigints before evaluation ({@link toCelValue} in cel.ts does that by
 * deep-copying the whole value). For a 15 KiB Pod that copy was about 6 % of
 * the webhook's CPU on every review, while most of a Pod (env lists, names,
 * images, labels, annotations) holds no number at all.
 * {@link sharedCelValue} gives the same values as `toCelValue` but copies
 * only the objects and arrays on the way to an integral number and shares
 * every other subtree with its input. The result is plain objects and arrays
 * throughout, which cel-js walks at full speed (a lazily converting Proxy
 * view was tried first: cel-js's `for…in` and `hasOwn` on Proxies made it no
 * faster).
 *
 * Pure: no I/O, no logging.
 */

/**
 * Converts parsed JSON into CEL input like `toCelValue` (integral numbers as
 * bigint, other numbers, strings, booleans and null as they are) but shares
 * every subtree that holds no integral number with `v` instead of copying
 * it. Never mutates `v`; treat the result as read-only (it may be `v`).
 */
export function sharedCelValue(v: unknown): unknown {
  if (typeof v === 'number') return Number.isInteger(v) ? BigInt(v) : v;
  if (v === null || typeof v !== 'object') return v;
  return sharedContainer(v);
}

/** `v` itself when nothing below it changes, else a shallow copy with the changed members replaced. */
function sharedContainer(v: object): object {
  if (Array.isArray(v)) {
    let out: unknown[] | undefined;
    for (let i = 0; i < v.length; i++) {
      const e: unknown = v[i];
      let c: unknown = e;
      if (typeof e === 'number') c = Number.isInteger(e) ? BigInt(e) : e;
      else if (e !== null && typeof e === 'object') c = sharedContainer(e);
      if (c !== e) (out ??= v.slice())[i] = c;
    }
    return out ?? v;
  }
  const o = v as Record<string, unknown>;
  let out: Record<string, unknown> | undefined;
  for (const k in o) {
    if (!Object.hasOwn(o, k)) continue;
    const e = o[k];
    let c: unknown = e;
    if (typeof e === 'number') c = Number.isInteger(e) ? BigInt(e) : e;
    else if (e !== null && typeof e === 'object') c = sharedContainer(e);
    if (c === e) continue;
    out ??= { ...o };
    // JSON.parse makes "__proto__" an own member; plain assignment would set the prototype instead.
    if (k === '__proto__') Object.defineProperty(out, k, { value: c, enumerable: true, writable: true, configurable: true });
    else out[k] = c;
  }
  return out ?? v;
}
