/**
 * Reading native events back: from the local log (a data dir, its `log/`
 * dir, or one component's log dir) or from Kafka topics. Used by
 * `kubetrail events`, `sessions`, `replay` and `verify`.
 *
 * Signatures:
 *
 *   readEvents(opts: ReadOptions): AsyncGenerator<KubetrailEvent>
 *     opts.source   {kind: 'local', dir} | {kind: 'kafka', settings: config.kafka, topics?: string[], log?}
 *     opts.filter   {user?, namespace?, type?, since?: Date, session?}  (all optional, ANDed)
 *     opts.follow   keep waiting for new events (default false: stop at the end)
 *     opts.signal   AbortSignal that ends a follow
 *
 *   readRecords(opts): AsyncGenerator<RawRecord>   the same, unparsed, with
 *     where each record came from (verify needs the position and the value)
 *
 * Local logs of several components are read one after another without
 * follow; with follow, each is polled every `pollMs` (default 250 ms).
 * Kafka topics default to config.kafka.topics (events and sessions); the
 * reader uses a throw-away consumer group and deletes it afterwards.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../logger.ts';
import type { EventType, KubetrailEvent } from './model.ts';
import { listSegments, readLines, type LogPosition } from '../sinks/segment-log.ts';
import { createKafka, type KafkaSettings } from '../sinks/kafka-client.ts';
import { decodeRecord } from '../sinks/kafka-record.ts';
import type { WireFormat } from './formats/index.ts';

/** Which events to keep; every field optional, all ANDed. */
export interface EventFilter {
  /** actor.username, exact. */
  user?: string;
  /** target.namespace (or the session body's namespace), exact. */
  namespace?: string;
  /** An event type (`api.request`) or a prefix ending in a dot-free word (`session` matches session.*). */
  type?: string;
  /** Only events with time >= since. */
  since?: Date;
  /** correlation.session, exact. */
  session?: string;
}

/** Where to read from. */
export type ReadSource =
  | { kind: 'local'; dir: string }
  | { kind: 'kafka'; settings: KafkaSettings; topics?: readonly string[]; log: Logger };

/** Options of {@link readEvents} and {@link readRecords}. */
export interface ReadOptions {
  source: ReadSource;
  filter?: EventFilter;
  follow?: boolean;
  signal?: AbortSignal;
  /** Poll interval of a followed local log (ms). */
  pollMs?: number;
}

/** One stored record, unparsed. */
export interface RawRecord {
  /** Log dir, or `topic/partition`. */
  stream: string;
  /** Position within the stream: record offset (Kafka) or line ordinal (local). */
  position: string;
  /** Canonical native line. */
  line: string;
  /** Format of the stored value (local logs are always native). */
  format: WireFormat;
  /** Stored value (same as line for native). */
  value: string;
}

/** True when `e` passes `f`. */
export function matches(e: KubetrailEvent, f: EventFilter | undefined): boolean {
  if (f === undefined) return true;
  if (f.user !== undefined && e.actor?.username !== f.user) return false;
  if (f.namespace !== undefined) {
    const ns = e.target?.namespace ?? (e.body as { namespace?: unknown }).namespace;
    if (ns !== f.namespace) return false;
  }
  if (f.type !== undefined && e.type !== f.type && !e.type.startsWith(`${f.type}.`)) return false;
  if (f.session !== undefined && e.correlation?.session !== f.session) return false;
  if (f.since !== undefined && Date.parse(e.time) < f.since.getTime()) return false;
  return true;
}

/** Yields native events in stored order, filtered. */
export async function* readEvents(opts: ReadOptions): AsyncGenerator<KubetrailEvent> {
  for await (const r of readRecords(opts)) {
    let e: KubetrailEvent;
    try {
      e = JSON.parse(r.line) as KubetrailEvent;
    } catch {
      continue; // verify reports unreadable records; listing skips them
    }
    if (matches(e, opts.filter)) yield e;
  }
}

/** Finds the segment-log directories under `dir` (a data dir, its log/ dir, or one log dir). */
function localLogDirs(dir: string): string[] {
  if (listSegments(dir).length > 0) return [dir];
  const base = existsSync(path.join(dir, 'log')) && statSync(path.join(dir, 'log')).isDirectory() ? path.join(dir, 'log') : dir;
  let names: string[];
  try {
    names = readdirSync(base);
  } catch {
    return [];
  }
  return names
    .map((n) => path.join(base, n))
    .filter((p) => statSync(p).isDirectory() && listSegments(p).length > 0)
    .sort();
}

/** Yields stored records (unparsed), in stored order per stream. */
export async function* readRecords(opts: ReadOptions): AsyncGenerator<RawRecord> {
  if (opts.source.kind === 'local') yield* readLocal(opts.source.dir, opts);
  else yield* readKafka(opts.source, opts);
}

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    }, { once: true });
  });

async function* readLocal(dir: string, opts: ReadOptions): AsyncGenerator<RawRecord> {
  const dirs = localLogDirs(dir);
  if (!existsSync(dir)) throw new Error(`${dir}: no such directory`);
  const positions = new Map<string, { pos: LogPosition; n: number }>(dirs.map((d) => [d, { pos: { segment: '', offset: 0 }, n: 0 }]));
  for (;;) {
    let progressed = false;
    for (const d of positions.keys()) {
      const st = positions.get(d) as { pos: LogPosition; n: number };
      for (;;) {
        const segs = listSegments(d);
        const last = segs.at(-1);
        if (last === undefined) break;
        const end = { segment: last, offset: statSync(path.join(d, last)).size };
        const { lines, next } = readLines(d, st.pos, end, 5000, 8 * 1024 * 1024);
        st.pos = next;
        if (lines.length === 0) break;
        progressed = true;
        for (const line of lines) {
          st.n += 1;
          yield { stream: d, position: String(st.n), line, format: 'native', value: line };
        }
      }
    }
    if (!opts.follow || opts.signal?.aborted) return;
    if (!progressed) {
      // New component logs may appear while following.
      for (const d of localLogDirs(dir)) if (!positions.has(d)) positions.set(d, { pos: { segment: '', offset: 0 }, n: 0 });
      await sleep(opts.pollMs ?? 250, opts.signal);
      if (opts.signal?.aborted) return;
    }
  }
}

async function* readKafka(src: Extract<ReadSource, { kind: 'kafka' }>, opts: ReadOptions): AsyncGenerator<RawRecord> {
  const topics = [...(src.topics ?? [src.settings.topics.events, src.settings.topics.sessions])];
  const kafka = createKafka(src.settings, src.log, { clientIdSuffix: '-reader', retries: 3, quiet: true });
  const admin = kafka.admin();
  await admin.connect();
  const groupId = `kubetrail-reader-${randomUUID()}`;
  // Where "the end" is for a non-following read: the high watermark of every partition now.
  const remaining = new Map<string, bigint>();
  try {
    const existing = new Set(await admin.listTopics());
    for (const t of topics) {
      if (!existing.has(t)) continue;
      for (const p of await admin.fetchTopicOffsets(t)) {
        if (BigInt(p.high) > BigInt(p.low)) remaining.set(`${t}/${p.partition}`, BigInt(p.high));
      }
    }
  } catch (err) {
    await admin.disconnect().catch(() => undefined);
    throw err;
  }
  if (!opts.follow && remaining.size === 0) {
    await admin.disconnect().catch(() => undefined);
    return;
  }
  const consumer = kafka.consumer({ groupId, sessionTimeout: 10000, heartbeatInterval: 1000, maxWaitTimeInMs: 200 });
  const queue: RawRecord[] = [];
  let wake: (() => void) | undefined;
  let drained: (() => void) | undefined;
  let failure: unknown;
  const notify = (): void => {
    wake?.();
    wake = undefined;
  };
  try {
    await consumer.connect();
    for (const t of topics) await consumer.subscribe({ topic: t, fromBeginning: true }).catch(() => undefined);
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: true,
      eachMessage: async ({ topic, partition, message }) => {
        const stream = `${topic}/${partition}`;
        const high = remaining.get(stream);
        if (!opts.follow && high !== undefined && BigInt(message.offset) + 1n >= high) remaining.delete(stream);
        const d = decodeRecord(message.value, message.headers);
        if (d !== undefined) queue.push({ stream, position: message.offset, line: d.line, format: d.format, value: d.value });
        else if (!opts.follow && remaining.size === 0) queue.push({ stream, position: '', line: '', format: 'native', value: '' });
        notify();
        if (queue.length > 5000) await new Promise<void>((r) => (drained = r));
      },
    }).catch((err: unknown) => {
      failure = err;
      notify();
    });
    for (;;) {
      while (queue.length > 0) {
        const r = queue.shift() as RawRecord;
        if (queue.length < 1000) {
          drained?.();
          drained = undefined;
        }
        if (r.position !== '') yield r;
      }
      if (failure !== undefined) throw failure;
      if (!opts.follow && remaining.size === 0) return;
      if (opts.signal?.aborted) return;
      await new Promise<void>((r) => {
        wake = r;
        opts.signal?.addEventListener('abort', () => r(), { once: true });
      });
    }
  } finally {
    drained?.();
    await consumer.disconnect().catch(() => undefined);
    await admin.deleteGroups([groupId]).catch(() => undefined);
    await admin.disconnect().catch(() => undefined);
  }
}

/** All event types (re-exported for CLI flag validation). */
export type { EventType };
