/**
 * The embedded default sink: with no `kafka.brokers`, events are appended
 * (group commit; each write is synchronized to disk: O_DSYNC, or fdatasync where there is none) to segment files under `dataDir/log/<component>/`
 * with size/time retention (`localLog.*`). Same line format as the spool.
 *
 * When a write fails (disk full, I/O error) the events of that write are
 * refused (SINK_ERR_IO) and the sink turns unready: further emits are
 * refused at once (SINK_ERR_UNAVAILABLE, no seq consumed) and a timer tries
 * every `retryMs` to write a signed `chain.gap` declaring the lost seqs.
 * Once that is durable the sink is ready again (write-outage.ts).
 */
import type { EventDraft, EventType, KubetrailEvent } from '../events/model.ts';
import type { ChainSealer } from '../chain/sealer.ts';
import type { HeadStore } from '../chain/head-store.ts';
import type { SealedEvent } from '../chain/hash.ts';
import type { SignedHeadWriter } from '../chain/signed-head.ts';
import type { Logger } from '../logger.ts';
import type { EventPipeline } from '../pipeline.ts';
import { SinkError } from './errors.ts';
import { ComponentMetrics, type SinkMetrics } from './metrics.ts';
import type { SegmentLog } from './segment-log.ts';
import { DEFAULT_WRITE_RETRY_MS, WriteOutage } from './write-outage.ts';

/** Options of {@link LocalLogSink}. */
export interface LocalLogSinkOptions {
  sealer: ChainSealer;
  head: HeadStore;
  log: SegmentLog;
  metrics: SinkMetrics;
  logger: Logger;
  checkpointIntervalMs: number;
  /** Where the signed head goes after every durable checkpoint (signing.headDir). */
  signedHead?: SignedHeadWriter | undefined;
  /** After a failed write, how often to try writing the gap declaration (ms). */
  retryMs?: number;
  /** Clock (gap declaration times), injectable for tests. */
  now?: () => Date;
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
  readonly #outage = new WriteOutage();
  #retryTimer: NodeJS.Timeout | undefined;
  #recovering: Promise<void> | undefined;
  readonly #now: () => Date;

  constructor(o: LocalLogSinkOptions) {
    this.#o = o;
    this.#now = o.now ?? (() => new Date());
    this.#cm = new ComponentMetrics(o.metrics, o.sealer.source.component);
    this.#timer = setInterval(() => void this.#checkpoint(), o.checkpointIntervalMs);
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

  /** Ready while the log accepts writes: not after close, nor while a failed write is undeclared. */
  ready(): boolean {
    return !this.#closed && !this.#outage.active;
  }

  /** Seals the event and resolves once it is on stable storage in the local log. */
  emit<T extends EventType>(draft: EventDraft<T>): Promise<KubetrailEvent<T>> {
    if (this.#closed) return Promise.reject(new SinkError('SINK_ERR_CLOSED', 'event pipeline is closed'));
    if (this.#outage.active) {
      this.#outage.refused();
      return Promise.reject(new SinkError('SINK_ERR_UNAVAILABLE', 'event refused: the local log could not be written (dataDir) and is not writable again yet', { setting: 'dataDir' }));
    }
    let sealed: SealedEvent & { event: KubetrailEvent<T> };
    try {
      sealed = this.#o.sealer.seal(draft);
    } catch (err) {
      return Promise.reject(err);
    }
    const started = performance.now();
    const p = this.#write(sealed);
    if (this.#o.sealer.checkpointDue) void this.#checkpoint();
    return p.then(() => {
      this.#cm.latency('local', (performance.now() - started) / 1000);
      return sealed.event;
    });
  }

  #write(s: SealedEvent): Promise<void> {
    return this.#o.log.append([s.line]).then(
      () => {
        this.#saveHead(s.event.chain as { seq: number; hash: string });
        this.#cm.durable('local', s.event.type);
      },
      (err: unknown) => {
        this.#lost(s, err);
        throw err;
      },
    );
  }

  /** A sealed event could not be written: its seq joins the outage, and the sink turns unready. */
  #lost(s: SealedEvent, err: unknown): void {
    if (!this.#outage.lost((s.event.chain as { seq: number }).seq, err, this.#now())) return;
    this.#o.logger.error({ err, dir: this.#o.log.dir, setting: 'dataDir' }, 'local log write failed: events are refused and /readyz fails until a gap declaration can be written');
    this.#retryTimer = setInterval(() => void this.#recover(), this.#o.retryMs ?? DEFAULT_WRITE_RETRY_MS);
    this.#retryTimer.unref();
  }

  /**
   * Writes the signed gap declaration once everything under way has settled.
   * Nothing else is sealed meanwhile (emits are refused, checkpoints wait),
   * so the declaration can be prepared and committed around its write.
   */
  #recover(): Promise<void> {
    this.#recovering ??= (async () => {
      try {
        await this.#o.log.flush();
        const decl = this.#outage.declaration(this.#now());
        if (decl === undefined) return;
        const p = this.#o.sealer.prepareGap(decl);
        if (p !== undefined) {
          try {
            await this.#o.log.append([p.sealed.line]);
          } catch {
            return; // still cannot write: stay unready, try again on the next tick
          }
          p.commit();
          this.#saveHead(p.sealed.event.chain as { seq: number; hash: string });
        }
        this.#outage.end();
        clearInterval(this.#retryTimer);
        this.#retryTimer = undefined;
        this.#o.logger.warn({ fromSeq: decl.fromSeq, toSeq: decl.toSeq, lost: decl.events, refused: decl.refused, reason: decl.reason, errno: decl.errno }, 'local log writable again: the lost seqs are declared in a signed chain.gap');
        await this.#checkpoint();
      } finally {
        this.#recovering = undefined;
      }
    })();
    return this.#recovering;
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
      if (due !== undefined) this.#storeHead(due);
    });
  }

  #storeHead(link: { seq: number; hash: string }): void {
    try {
      this.#o.head.save(link);
    } catch (err) {
      // A restart hint only (see above): never worth crashing the process for.
      this.#o.logger.error({ err, setting: 'dataDir' }, 'cannot write the chain head file');
    }
  }

  /** Seals and writes a checkpoint (none while an outage is undeclared), then keeps its signed head. Never rejects. */
  async #checkpoint(): Promise<void> {
    if (this.#outage.active) return;
    const cp = this.#o.sealer.checkpoint();
    if (cp === undefined) return;
    try {
      await this.#write(cp);
    } catch (err) {
      this.#o.logger.error({ err }, 'checkpoint could not be written to the local log');
      return;
    }
    if (this.#o.signedHead === undefined) return;
    try {
      this.#o.signedHead.write(cp.event);
    } catch (err) {
      this.#o.logger.error({ err, setting: 'signing.headDir', file: this.#o.signedHead.file }, 'cannot write the signed head to signing.headDir');
    }
  }

  /** Resolves when everything emitted so far is durable. */
  flush(): Promise<void> {
    return this.#o.log.flush();
  }

  /** Writes a final checkpoint (and its signed head), flushes and closes the log. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      // Refuse new emits from now on; the final declaration and checkpoint follow.
      this.#closed = true;
      clearInterval(this.#timer);
      clearInterval(this.#retentionTimer);
      if (this.#outage.active) await this.#recover();
      clearInterval(this.#retryTimer);
      await this.#checkpoint();
      await this.#o.log.close();
      if (this.#headDue !== undefined) this.#storeHead(this.#headDue);
      this.#headDue = undefined;
      this.#o.head.close();
      this.#o.onClose?.();
    })();
    return this.#closing;
  }
}
