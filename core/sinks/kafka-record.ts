/**
 * Kafka records of events: topic routing, record key and CloudEvents 1.0
 * Kafka protocol binding headers in binary content mode (the value is the
 * event data itself; attributes travel as `ce_*` headers).
 *
 * Because verify must work on the native canonical event whatever
 * `kafka.format` is, a record whose value is not native also carries the
 * canonical native line in the `kubetrail_native` header. Verify recomputes
 * the chain hash from it AND re-renders the value from it and compares, so
 * altering either the header or the value is caught. The cost is roughly
 * twice the bytes per record for the k8s-audit and ocsf formats.
 */
import type { IHeaders } from 'kafkajs';
import type { KubetrailEvent } from '../events/model.ts';
import { recordKey, SESSION_TOPIC_TYPES } from '../events/builders.ts';
import { render, type WireFormat } from '../events/formats/index.ts';

/** Header names kubetrail adds beyond CloudEvents. */
export const NATIVE_HEADER = 'kubetrail_native';
/** Which format the value is in (native | k8s-audit | ocsf). */
export const FORMAT_HEADER = 'kubetrail_format';

/** CloudEvents `type` of a kubetrail event type. */
export function ceType(type: string): string {
  return `io.kubetrail.v1.${type}`;
}

const sourceCache = new WeakMap<object, string>();

/** CloudEvents `source` of an event (cached per source object: a sink stamps one frozen source on all its events). */
export function ceSource(e: KubetrailEvent): string {
  let s = sourceCache.get(e.source);
  if (s === undefined) {
    s = `/kubetrail/${encodeURIComponent(e.source.cluster)}/${e.source.component}/${encodeURIComponent(e.source.instance)}`;
    sourceCache.set(e.source, s);
  }
  return s;
}

/** Topic names. */
export interface Topics {
  events: string;
  sessions: string;
}

/** A record ready for kafkajs. */
export interface EventRecord {
  topic: string;
  key: string;
  value: string;
  headers: IHeaders;
}

/** Builds the Kafka record of an event. */
export function toRecord(event: KubetrailEvent, line: string, format: WireFormat, topics: Topics): EventRecord {
  const r = render(event, line, format);
  const key = recordKey(event);
  const headers: IHeaders = {
    ce_specversion: '1.0',
    ce_id: event.id,
    ce_type: ceType(event.type),
    ce_source: ceSource(event),
    ce_time: event.time,
    ce_subject: key,
    'content-type': 'application/json',
    [FORMAT_HEADER]: r.format,
  };
  if (r.format !== 'native') headers[NATIVE_HEADER] = line;
  return { topic: SESSION_TOPIC_TYPES.has(event.type) ? topics.sessions : topics.events, key, value: r.value, headers };
}

function headerString(h: IHeaders | undefined, name: string): string | undefined {
  const v = h?.[name];
  if (v === undefined) return undefined;
  if (Array.isArray(v)) return v[0] === undefined ? undefined : v[0].toString();
  return v.toString();
}

/** What a record says about itself. */
export interface DecodedRecord {
  /** The canonical native line (from the value, or from the kubetrail_native header). */
  line: string;
  format: WireFormat;
  /** The value as received. */
  value: string;
}

/**
 * Extracts the native line of a record. Returns undefined for records that
 * are not kubetrail events (no ce_type of ours).
 */
export function decodeRecord(value: Buffer | string | null, headers: IHeaders | undefined): DecodedRecord | undefined {
  const type = headerString(headers, 'ce_type');
  if (type === undefined || !type.startsWith('io.kubetrail.')) return undefined;
  const format = (headerString(headers, FORMAT_HEADER) ?? 'native') as WireFormat;
  const v = value === null ? '' : value.toString();
  const line = format === 'native' ? v : headerString(headers, NATIVE_HEADER);
  if (line === undefined) return undefined;
  return { line, format, value: v };
}
