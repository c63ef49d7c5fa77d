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
import type { IHeaders, Message, TopicMessages } from 'kafkajs';
import type { KubetrailEvent } from '../events/model.ts';
import type { SealedEvent } from '../chain/hash.ts';
import { recordKey, SESSION_TOPIC_TYPES } from '../events/builders.ts';
import { render, type Rendered, type WireFormat } from '../events/formats/index.ts';

/** Header names kubetrail adds beyond CloudEvents. */
const NATIVE_HEADER = 'kubetrail_native';
/** Which format the value is in (native | k8s-audit | ocsf). */
const FORMAT_HEADER = 'kubetrail_format';

/** CloudEvents `type` of a kubetrail event type. */
function ceType(type: string): string {
  return `io.kubetrail.v1.${type}`;
}

const sourceCache = new WeakMap<object, string>();

/** CloudEvents `source` of an event (cached per source object: a sink stamps one frozen source on all its events). */
function ceSource(e: KubetrailEvent): string {
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

/** The CloudEvents binary-mode headers of a record, in their wire order; `native` is the canonical line, carried when the value is in another format. */
function cloudEventHeaders(a: { id: string; type: string; source: string; time: string; subject: string; format: WireFormat }, native: Buffer | string): IHeaders {
  const headers: IHeaders = {
    ce_specversion: '1.0',
    ce_id: a.id,
    ce_type: a.type,
    ce_source: a.source,
    ce_time: a.time,
    ce_subject: a.subject,
    'content-type': 'application/json',
    [FORMAT_HEADER]: a.format,
  };
  if (a.format !== 'native') headers[NATIVE_HEADER] = native;
  return headers;
}

/** Topic of an event: session streams to the sessions topic, the rest to the events topic. */
function topicOf(event: KubetrailEvent, topics: Topics): string {
  return SESSION_TOPIC_TYPES.has(event.type) ? topics.sessions : topics.events;
}

/** Builds the Kafka record of an event. */
export function toRecord(event: KubetrailEvent, line: string, format: WireFormat, topics: Topics): EventRecord {
  const r = render(event, line, format);
  const key = recordKey(event);
  const headers = cloudEventHeaders({ id: event.id, type: ceType(event.type), source: ceSource(event), time: event.time, subject: key, format: r.format }, line);
  return { topic: topicOf(event, topics), key, value: r.value, headers };
}

/** A sealed event as a sink is about to produce it. */
export interface RecordSource extends SealedEvent {
  /** The event rendered in the sink's format (render(); the line itself when native). */
  readonly rendered: Rendered;
}

/**
 * A produce request's records in the compact form the producer thread takes
 * (kafka-producer.ts): the native lines of all records as one UTF-8 buffer of
 * '\n'-terminated lines — the same bytes the in-flight journal writes — plus,
 * for records rendered in another format, their values as a second buffer;
 * the per-record CloudEvents attributes as columns. Both buffers are
 * transferred to the thread, not copied, and the thread hands kafkajs
 * slices of them, so no record value is encoded twice. Canonical JSON and
 * the rendered formats never contain a raw newline, which makes '\n' a safe
 * separator.
 */
export interface WireBatch {
  /** Native lines, each followed by '\n'. */
  lines: Uint8Array;
  /** Values of the records whose format is not native, each followed by '\n', in record order. */
  values: Uint8Array | undefined;
  topics: string[];
  topicOf: number[];
  keys: string[];
  ids: string[];
  times: string[];
  /** Distinct CloudEvents types / sources / formats, and each record's index into them. */
  types: string[];
  typeOf: number[];
  sources: string[];
  sourceOf: number[];
  formats: WireFormat[];
  formatOf: number[];
}

function indexIn<T>(table: T[], v: T): number {
  const i = table.indexOf(v);
  return i >= 0 ? i : table.push(v) - 1;
}

/**
 * UTF-8 bytes of '\n'-terminated strings in a buffer of their own
 * (transferable, never the shared pool). Each part is encoded straight into
 * the buffer: joining them first made one string of the whole batch (and a
 * second, flattened, to measure it), hundreds of KiB each in the engine's
 * large-object space, which under load kept the main thread in full GCs.
 */
function joinedBytes(parts: readonly string[]): Uint8Array {
  const n = parts.length;
  let size = n;
  for (let i = 0; i < n; i++) size += Buffer.byteLength(parts[i] as string, 'utf8');
  const buf = Buffer.allocUnsafeSlow(size);
  let at = 0;
  for (let i = 0; i < n; i++) {
    at += buf.write(parts[i] as string, at, 'utf8');
    buf[at++] = 10;
  }
  if (at !== size) throw new Error(`record batch: encoded ${at} bytes, expected ${size}`);
  return buf;
}

/**
 * Encodes records for the producer thread. Produces exactly the records
 * {@link toRecord} describes (topic, key, value, headers in the same order);
 * {@link decodeBatch} turns the batch back into kafkajs messages.
 */
export function encodeBatch(items: readonly RecordSource[], topics: Topics): WireBatch {
  const n = items.length;
  const b: WireBatch = {
    lines: new Uint8Array(0),
    values: undefined,
    topics: [],
    topicOf: new Array<number>(n),
    keys: new Array<string>(n),
    ids: new Array<string>(n),
    times: new Array<string>(n),
    types: [],
    typeOf: new Array<number>(n),
    sources: [],
    sourceOf: new Array<number>(n),
    formats: [],
    formatOf: new Array<number>(n),
  };
  const lines = new Array<string>(n);
  const values: string[] = [];
  for (let i = 0; i < n; i++) {
    const { event, line, rendered: r } = items[i] as RecordSource;
    lines[i] = line;
    if (r.format !== 'native') values.push(r.value);
    b.formatOf[i] = indexIn(b.formats, r.format);
    b.topicOf[i] = indexIn(b.topics, topicOf(event, topics));
    b.keys[i] = recordKey(event);
    b.ids[i] = event.id;
    b.times[i] = event.time;
    b.typeOf[i] = indexIn(b.types, ceType(event.type));
    b.sourceOf[i] = indexIn(b.sources, ceSource(event));
  }
  b.lines = joinedBytes(lines);
  if (values.length > 0) b.values = joinedBytes(values);
  return b;
}

/** The buffers of a batch to transfer with postMessage. */
export function transferables(b: WireBatch): ArrayBuffer[] {
  const t = [b.lines.buffer as ArrayBuffer];
  if (b.values !== undefined) t.push(b.values.buffer as ArrayBuffer);
  return t;
}

/** Splits a '\n'-terminated buffer into Buffer slices (no copies). */
function slices(u: Uint8Array, count: number, what: string): Buffer[] {
  const buf = Buffer.from(u.buffer, u.byteOffset, u.byteLength);
  const out: Buffer[] = [];
  let at = 0;
  while (out.length < count) {
    const nl = buf.indexOf(10, at);
    if (nl < 0) throw new Error(`record batch: ${what} holds ${out.length} lines, expected ${count}`);
    out.push(buf.subarray(at, nl));
    at = nl + 1;
  }
  if (at !== buf.length) throw new Error(`record batch: ${what} holds more than ${count} lines`);
  return out;
}

/** kafkajs messages of a batch, grouped by topic (the producer thread's side of {@link encodeBatch}). */
export function decodeBatch(b: WireBatch): TopicMessages[] {
  const n = b.keys.length;
  const lines = slices(b.lines, n, 'lines');
  const foreign = b.formatOf.filter((f) => b.formats[f] !== 'native').length;
  const values = b.values === undefined ? [] : slices(b.values, foreign, 'values');
  if (values.length !== foreign) throw new Error(`record batch: ${foreign} records need a rendered value, ${values.length} given`);
  const byTopic: TopicMessages[] = b.topics.map((topic) => ({ topic, messages: [] as Message[] }));
  let v = 0;
  for (let i = 0; i < n; i++) {
    const format = b.formats[b.formatOf[i] as number] as WireFormat;
    const key = b.keys[i] as string;
    const line = lines[i] as Buffer;
    const headers = cloudEventHeaders(
      { id: b.ids[i] as string, type: b.types[b.typeOf[i] as number] as string, source: b.sources[b.sourceOf[i] as number] as string, time: b.times[i] as string, subject: key, format },
      line,
    );
    const value = format === 'native' ? line : (values[v++] as Buffer);
    (byTopic[b.topicOf[i] as number] as TopicMessages).messages.push({ key, value, headers });
  }
  return byTopic;
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
