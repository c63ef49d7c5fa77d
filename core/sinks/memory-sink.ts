/**
 * An in-memory EventSink for unit tests of other components: assigns id,
 * time, source and chain links exactly like the real pipeline (same sealer),
 * keeps every event in `events`, and is durable only in the sense that emit
 * resolves after the event is stored in memory. Never use it in production.
 */
import type { EventDraft, EventSource, EventType, KubetrailEvent } from '../events/model.ts';
import { ChainSealer } from '../chain/sealer.ts';
import { GENESIS_HASH } from '../chain/hash.ts';
import { SinkError } from './errors.ts';
import type { EventSink } from './sink.ts';

/** Options of {@link MemorySink}. */
export interface MemorySinkOptions {
  source?: Partial<EventSource>;
  /** Makes every emit reject with this error (to test fail-closed paths). */
  failWith?: SinkError;
  now?: () => Date;
}

/** EventSink that keeps events in an array. */
export class MemorySink implements EventSink {
  /** Every event emitted, in order, with its canonical line. */
  readonly events: KubetrailEvent[] = [];
  /** Canonical JSON of each event (what the real sinks store). */
  readonly lines: string[] = [];
  readonly #sealer: ChainSealer;
  #closed = false;
  /** Set to make the next emits reject (tests of fail-closed behaviour). */
  failWith: SinkError | undefined;

  constructor(opts: MemorySinkOptions = {}) {
    this.#sealer = new ChainSealer({
      source: { component: opts.source?.component ?? 'cli', instance: opts.source?.instance ?? 'memory', cluster: opts.source?.cluster ?? 'test' },
      head: { seq: 0, hash: GENESIS_HASH },
      ...(opts.now ? { now: opts.now } : {}),
    });
    this.failWith = opts.failWith;
  }

  /** Seals and stores the event. */
  async emit<T extends EventType>(draft: EventDraft<T>): Promise<KubetrailEvent<T>> {
    if (this.#closed) throw new SinkError('SINK_ERR_CLOSED', 'sink is closed');
    if (this.failWith) throw this.failWith;
    const sealed = this.#sealer.seal(draft);
    this.events.push(sealed.event);
    this.lines.push(sealed.line);
    return sealed.event;
  }

  /** Events of one type (a convenience for assertions). */
  ofType<T extends EventType>(type: T): KubetrailEvent<T>[] {
    return this.events.filter((e): e is KubetrailEvent<T> => e.type === type);
  }

  /** Nothing to flush. */
  async flush(): Promise<void> {}

  /** Refuses further emits. */
  async close(): Promise<void> {
    this.#closed = true;
  }
}
