/**
 * The embedded default sink: with no `kafka.brokers`, events are appended
 * (group commit; each write is synchronized to disk: O_DSYNC, or fdatasync where there is none) to segment files under `dataDir/log/<component>/`
 * with size/time retention (`localLog.*`). Same line format as the spool.
 */
import type { EventDraft, EventType, KubetrailEvent } from '../events/model.ts';
import type { ChainSealer } from '../chain/sealer.ts';
import type { HeadStore } from '../chain/head-store.ts';
import type { SealedEvent } from '../chain/hash.ts';
import type { Logger } from '../logger.ts';
import type { EventPipeline } from '../pipeline.ts';
import { SinkError } from './errors.ts';
import { ComponentMetrics, type SinkMetrics } from './metrics.ts';
import type { SegmentLog } from './segment-log.ts';

/** Options of {@link LocalLogSink}. */
export interface LocalLogSinkOptions {
  sealer: ChainSealer;
  head: HeadStore;
  log: SegmentLog;
  metrics: SinkMetrics;
  logger: Logger;
  checkpointIntervalMs: number;
  /** Called once on close (releases the data-dir lock). */
  onClose?: () => void;
}

/** EventSink writing to the local segment log. */
export class LocalLogSink implements EventPipeline {
  readonly kind = 'local' as const;
  readonly #o: LocalLogSinkOptions;
  readonly #timer: NodeJS.Timeout;
  readonly #retentionTimer: NodeJS.Timeout;
  #closed = false;
  #headDue: { seq: number; hash: string } | undefined;
  #headScheduled = false;
  #closing: Promise<void> | undefined;
  readonly #cm: ComponentMetrics;

  constructor(o: LocalLogSinkOptions) {
    this.#o = o;
    this.#cm = new ComponentMetrics(o.metrics, o.sealer.source.component);
    this.#timer = setInterval(() => this.#checkpoint(), o.checkpointIntervalMs);
    this.#timer.unref();
    this.#retentionTimer = setInterval(() => {
      try {
        o.log.enforceRetention();
      } catch (err) {
        o.logger.error({ err, setting: 'localLog.retentionHours' }, 'local log retention failed');
      }
    }, 60_000);
    this.#retentionTimer.unref();
  }

  /** Ready while the log accepts writes. */
  ready(): boolean {
    return !this.#closed;
  }

  /** Seals the event and resolves once it is on stable storage in the local log. */
  emit<T extends EventType>(draft: EventDraft<T>): Promise<KubetrailEvent<T>> {
    if (this.#closed) return Promise.reject(new SinkError('SINK_ERR_CLOSED', 'event pipeline is closed'));
    let sealed: SealedEvent & { event: KubetrailEvent<T> };
    try {
      sealed = this.#o.sealer.seal(draft);
    } catch (err) {
      return Promise.reject(err);
    }
    const started = performance.now();
    const p = this.#write(sealed);
    if (this.#o.sealer.checkpointDue) this.#checkpoint();
    return p.then(() => {
      this.#cm.latency('local', (performance.now() - started) / 1000);
      return sealed.event;
    });
  }

  #write(s: SealedEvent): Promise<void> {
    return this.#o.log.append([s.line]).then(() => {
      this.#saveHead(s.event.chain as { seq: number; hash: string });
      this.#cm.durable('local', s.event.type);
    });
  }

  /**
   * The events of one group commit become durable together; their
   * callbacks run back to back, so the head is written once for the batch
   * (after them, with the highest link), not once per event. The head is a
   * restart hint, not the record: the log tail is the authority on start.
   */
  #saveHead(link: { seq: number; hash: string }): void {
    if (this.#headDue === undefined || link.seq > this.#headDue.seq) this.#headDue = link;
    if (this.#headScheduled) return;
    this.#headScheduled = true;
    queueMicrotask(() => {
      this.#headScheduled = false;
      const due = this.#headDue;
      this.#headDue = undefined;
      if (due !== undefined) this.#o.head.save(due);
    });
  }

  #checkpoint(): void {
    const cp = this.#o.sealer.checkpoint();
    if (cp === undefined) return;
    this.#write(cp).catch((err: unknown) => this.#o.logger.error({ err }, 'checkpoint could not be written to the local log'));
  }

  /** Resolves when everything emitted so far is durable. */
  flush(): Promise<void> {
    return this.#o.log.flush();
  }

  /** Writes a final checkpoint, flushes and closes the log. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      clearInterval(this.#timer);
      clearInterval(this.#retentionTimer);
      this.#checkpoint();
      this.#closed = true;
      await this.#o.log.close();
      if (this.#headDue !== undefined) this.#o.head.save(this.#headDue);
      this.#headDue = undefined;
      this.#o.head.close();
      this.#o.onClose?.();
    })();
    return this.#closing;
  }
}
