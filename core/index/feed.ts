/**
 * Feeds the index from the trail: reads the local log or the Kafka topics
 * (core/events/reader.ts) from where the index stopped, and adds each event.
 * Records are written in batches (one transaction per batch); while following,
 * a partial batch is written after `flushMs`, so the index trails the log by
 * at most that long. Unreadable records are skipped (verify reports them).
 */
import path from 'node:path';
import type { KubetrailEvent } from '../events/model.ts';
import { readRecords, type ReadSource, type RawRecord } from '../events/reader.ts';
import type { EventIndex } from './event-index.ts';

/** Options of {@link feedIndex}. */
export interface FeedOptions {
  index: EventIndex;
  source: ReadSource;
  /** Keep reading new records until `signal` aborts. */
  follow?: boolean;
  signal?: AbortSignal;
  /** Records per transaction. */
  batchSize?: number;
  /** Longest a read record waits before it is written while following (ms). */
  flushMs?: number;
  /** Poll interval of a followed local log (ms). */
  pollMs?: number;
  /** Called after each written batch with the number of new events. */
  onBatch?: (added: number) => void;
}

/** What one feed did. */
export interface FeedResult {
  /** Records read past the stored positions. */
  read: number;
  /** New events indexed. */
  added: number;
}

/** Default of {@link FeedOptions}, in one literal. */
export const FEED_DEFAULTS = { batchSize: 5000, flushMs: 100, pollMs: 250 } as const;

/** Reads the trail from the index's stored positions and indexes what is new. */
export async function feedIndex(opts: FeedOptions): Promise<FeedResult> {
  const { index } = opts;
  const source: ReadSource = opts.source.kind === 'local' ? { kind: 'local', dir: path.resolve(opts.source.dir) } : opts.source;
  const done = index.positions();
  const batchSize = opts.batchSize ?? FEED_DEFAULTS.batchSize;
  const flushMs = opts.flushMs ?? FEED_DEFAULTS.flushMs;
  let pending: RawRecord[] = [];
  let timer: NodeJS.Timeout | undefined;
  const result: FeedResult = { read: 0, added: 0 };
  const write = (): void => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    if (pending.length === 0) return;
    const rs = pending;
    pending = [];
    let added = 0;
    index.batch(() => {
      for (const r of rs) {
        const at = { stream: r.stream, position: Number(r.position) };
        let e: KubetrailEvent;
        try {
          e = JSON.parse(r.line) as KubetrailEvent;
        } catch {
          index.advance(at);
          continue;
        }
        if (typeof e.id !== 'string' || typeof e.type !== 'string' || typeof e.time !== 'string') {
          index.advance(at);
          continue;
        }
        if (index.add(e, r.line, at)) added++;
      }
    });
    result.added += added;
    opts.onBatch?.(added);
  };
  try {
    for await (const r of readRecords({ source, follow: opts.follow ?? false, ...(opts.signal ? { signal: opts.signal } : {}), pollMs: opts.pollMs ?? FEED_DEFAULTS.pollMs })) {
      const seen = done.get(r.stream);
      // Local positions are line ordinals from 1, Kafka's are offsets from 0: both grow by one per record.
      if (seen !== undefined && Number(r.position) <= seen) continue;
      result.read++;
      pending.push(r);
      if (pending.length >= batchSize) write();
      else if (opts.follow && timer === undefined) timer = setTimeout(write, flushMs);
    }
  } finally {
    write();
  }
  return result;
}
