/**
 * Wire formats of the Kafka value. The hash chain is always computed over
 * the native canonical event; the other formats are deterministic renderings
 * of it, so `verify` can re-render and compare.
 */
import type { KubetrailEvent } from '../model.ts';
import { canonicalJson } from '../../chain/canonical.ts';
import { markNonAudit, toK8sAudit } from './k8s-audit.ts';
import { toOcsf } from './ocsf.ts';

/** A configured output format. */
export type WireFormat = 'native' | 'k8s-audit' | 'ocsf';

/** An event rendered for the wire. */
export interface Rendered {
  /** The format actually used (types without a mapping stay native). */
  format: WireFormat;
  value: string;
}

/**
 * Renders `event` (whose canonical line is `line`) in `format`. Types the
 * format does not map fall back to native, and say so in `format`; on
 * k8s-audit they are the native line marked with a kind of their own, so
 * that every value on a k8s-audit topic can be told apart by apiVersion/kind.
 */
export function render(event: KubetrailEvent, line: string, format: WireFormat): Rendered {
  if (format === 'k8s-audit') {
    const a = toK8sAudit(event);
    return { format, value: a !== undefined ? canonicalJson(a) : markNonAudit(line) };
  } else if (format === 'ocsf') {
    const o = toOcsf(event);
    if (o !== undefined) return { format, value: canonicalJson(o) };
  }
  return { format: 'native', value: line };
}
