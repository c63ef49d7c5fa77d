/**
 * The stamp's RFC 6902 operations: setting the stamp annotations, and
 * keeping a no-op UPDATE a no-op (the previous stamp put back). Pure.
 */
import type { Operation } from 'fast-json-patch';

/** RFC 6901 escaping of one path segment: `~` as `~0`, `/` as `~1`. */
export function escapePointer(segment: string): string {
  return segment.replace(/~/g, '~0').replace(/\//g, '~1');
}

/**
 * Minimal RFC 6902 operations that set `entries` on `obj.metadata.annotations`
 * (obj has a metadata object): one `add` of the whole map when there is none,
 * else an `add` or `replace` per key whose value differs.
 */
export function annotationOps(obj: Record<string, unknown>, entries: Record<string, string>): Operation[] {
  const md = obj['metadata'] as Record<string, unknown>;
  const ann = md['annotations'];
  if (ann === null || typeof ann !== 'object' || Array.isArray(ann)) return [{ op: 'add', path: '/metadata/annotations', value: { ...entries } }];
  const ops: Operation[] = [];
  for (const [k, v] of Object.entries(entries)) {
    const has = Object.hasOwn(ann, k);
    if (has && (ann as Record<string, unknown>)[k] === v) continue;
    ops.push({ op: has ? 'replace' : 'add', path: `/metadata/annotations/${escapePointer(k)}`, value: v });
  }
  return ops;
}

/**
 * `obj` less what a no-op write may change: the stamp annotations (`stamp`
 * keys), `resourceVersion` (a client may send none or a stale one) and
 * `managedFields` (server-side apply rewrites them from the request).
 * Copies only the containers on the way.
 */
export function withoutStamp(obj: Record<string, unknown>, stamp: readonly string[]): Record<string, unknown> {
  const md = obj['metadata'];
  if (md === null || typeof md !== 'object' || Array.isArray(md)) return obj;
  const { resourceVersion: _rv, managedFields: _mf, ...rest } = md as Record<string, unknown>;
  const ann = rest['annotations'];
  if (ann !== null && typeof ann === 'object' && !Array.isArray(ann)) {
    const kept = { ...(ann as Record<string, unknown>) };
    for (const k of stamp) delete kept[k];
    if (Object.keys(kept).length > 0) rest['annotations'] = kept;
    else delete rest['annotations'];
  }
  return { ...obj, metadata: rest };
}

/**
 * RFC 6902 operations that put the stamp annotations of `old` back on `obj`
 * (add/replace what differs, remove what `old` did not have): the patch of
 * a no-op UPDATE, so the stored object stays byte for byte what it was and
 * the API server skips the write (no new resourceVersion).
 */
export function restoreStampOps(obj: Record<string, unknown>, old: Record<string, unknown>, stamp: readonly string[]): Operation[] {
  const annOf = (o: Record<string, unknown>): Record<string, unknown> => {
    const a = (o['metadata'] as Record<string, unknown> | undefined)?.['annotations'];
    return a !== null && typeof a === 'object' && !Array.isArray(a) ? (a as Record<string, unknown>) : {};
  };
  const now = annOf(obj);
  const before = annOf(old);
  const wanted: Record<string, string> = {};
  for (const k of stamp) if (typeof before[k] === 'string') wanted[k] = before[k] as string;
  // Nothing left and the old object had no map: drop the map (an empty one may be stored as such for custom resources).
  const oldHasMap = typeof (old['metadata'] as Record<string, unknown> | undefined)?.['annotations'] === 'object';
  if (Object.keys(wanted).length === 0 && !oldHasMap && Object.keys(now).length > 0 && Object.keys(now).every((k) => stamp.includes(k))) {
    return [{ op: 'remove', path: '/metadata/annotations' }];
  }
  const ops = Object.keys(wanted).length > 0 ? annotationOps(obj, wanted) : [];
  for (const k of stamp) if (Object.hasOwn(now, k) && !Object.hasOwn(wanted, k)) ops.push({ op: 'remove', path: `/metadata/annotations/${escapePointer(k)}` });
  return ops;
}

