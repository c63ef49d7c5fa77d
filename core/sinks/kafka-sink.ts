/**
 * KafkaSink: events to Kafka with an idempotent kafkajs producer (acks=all,
 * one request in flight, so records of one source never reorder), falling
 * back to the fsync'd spool when Kafka is unreachable or misses
 * `kafka.ackDeadlineMs`.
 *
 * Modes (with `kafka.durability: local`, every emit takes the spool path
 * below and resolves once the spool append is on disk; the drainer ships
 * the spool whenever it holds events):
 * - direct: emit() seals the event and queues it; one sender takes up to
 *   `kafka.batchMaxEvents` queued events per produce request (group commit:
 *   everything that arrived while the previous request was in flight shares
 *   the next one). emit() resolves on the broker's ack.
 * - spool: entered when a produce request fails or misses the deadline. The
 *   unacknowledged batch and everything queued behind it are appended to the
 *   spool (fdatasync) and their emits resolve then; new events go straight
 *   to the spool while it is non-empty, so Kafka receives one source's events
 *   in chain order. A drainer sends the spool in order and, once it is empty,
 *   switches back to direct. A request that missed its deadline may still
 *   land later: that only duplicates events with the same id and hash, which
 *   verify accepts.
 *
 * Memory is bounded by `kafka.maxBufferedBytes` (emit waits for room); the
 * spool by `spool.maxBytes` with `spool.overflow` deciding what happens when
 * it is full: fail-closed (emit rejects SINK_ERR_SPOOL_FULL) or drop (emit
 * rejects SINK_ERR_EVENT_DROPPED, kubetrail_events_dropped_total counts it,
 * and a warning logs the count). A refused or dropped event consumes no
 * sequence number, so the chain stays gap-free.
 *
 * When the spool itself cannot be written (disk full) the events of that
 * write are lost: the sink turns unready, refuses new events without sealing
 * them (SINK_ERR_UNAVAILABLE) and, once a write works again, declares the
 * lost seqs in a signed `chain.gap` (write-outage.ts), as the local log does.
 *
 * The drain loop is its own unit (spool-drainer.ts). This file stays over
 * 400 lines because direct mode (queue, group commit, the two-deep send
 * pipeline and its journal), the switch to the spool and the write-outage
 * recovery share one state machine whose transitions are easier to check
 * side by side.
 */
import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import path from 'node:path';
import type { EventDraft, EventType, KubetrailEvent } from '../events/model.ts';
import type { ChainSealer } from '../chain/sealer.ts';
import type { HeadStore } from '../chain/head-store.ts';
import type { SealedEvent } from '../chain/hash.ts';
import type { SignedHeadWriter } from '../chain/signed-head.ts';
import type { Logger } from '../logger.ts';
import type { EventPipeline } from '../pipeline.ts';
import type { Config } from '../config.ts';
import { SinkError } from './errors.ts';
import { encodeBatch, type RecordSource, type WireBatch } from './kafka-record.ts';
import { render } from '../events/formats/index.ts';
import { recordErrorType, type KafkaSettings } from './kafka-client.ts';
import { ProducerThread, type KafkajsBackends } from './kafka-producer.ts';
import { ComponentMetrics, type SinkMetrics } from './metrics.ts';
import type { Spool } from './spool.ts';
import type { InflightJournal } from './inflight-journal.ts';
import { RECORD_OVERHEAD_BYTES, SpoolDrainer, systemClock } from './spool-drainer.ts';
import { DEFAULT_WRITE_RETRY_MS, WriteOutage } from './write-outage.ts';

/** Options of {@link KafkaSink}. */
export interface KafkaSinkOptions {
  settings: KafkaSettings;
  spoolSettings: Config['spool'];
  sealer: ChainSealer;
  head: HeadStore;
  spool: Spool;
  metrics: SinkMetrics;
  logger: Logger;
  checkpointIntervalMs: number;
  /** Start spooling (brokers were unreachable at start, or the spool holds events from a previous run). */
  startSpooling: boolean;
  /** Where the batch in flight is written before each produce request. */
  journal: InflightJournal;
  /** Where the signed head goes once a checkpoint is durable (signing.headDir). */
  signedHead?: SignedHeadWriter | undefined;
  onClose?: () => void;
}

/** A batch handed to the producer: journaled, its request queued or in flight. */
interface InFlight {
  batch: Pending[];
  generation: number;
  sent: Promise<unknown>;
}

interface Pending {
  /** The sealed event and its rendering for the record's value. */
  sealed: RecordSource;
  bytes: number;
  started: number;
  resolve: (e: KubetrailEvent) => void;
  reject: (err: unknown) => void;
}

const { deadline: withDeadline, sleep } = systemClock;

/** EventSink producing to Kafka with spool fallback. */
export class KafkaSink implements EventPipeline {
  readonly kind = 'kafka' as const;
  readonly #o: KafkaSinkOptions;
  readonly #producer: ProducerThread;
  readonly #component: string;
  readonly #cm: ComponentMetrics;
  #connecting: Promise<void> | undefined;
  #connected = false;
  #mode: 'direct' | 'spool';
  #queue: Pending[] = [];
  #queuedBytes = 0;
  #sending = false;
  /** At most two: the batch in flight and, under load, the next (full) one. */
  #inflight: InFlight[] = [];
  #stuck: Promise<unknown> | undefined;
  #spaceWaiters: (() => void)[] = [];
  readonly #outstanding = new Set<Promise<unknown>>();
  #closed = false;
  #stopped = false;
  #closing: Promise<void> | undefined;
  readonly #timer: NodeJS.Timeout;
  #droppedUnlogged = 0;
  readonly #drainer: SpoolDrainer;
  /** kafka.durability = local: every event goes through the spool (answered once it is on disk), the drainer ships it. */
  readonly #local: boolean;
  /** Set when fail-closed refused an event; cleared once the drainer frees spool space. */
  #refusing = false;
  #dropLogTimer: NodeJS.Timeout | undefined;
  /** Resolves once the last batch handed over was posted to the producer thread (or given up): batches post in order. */
  #lastPosted: Promise<void> = Promise.resolve();
  /** Bumped whenever the sink turns to the spool: batches handed over before that and not yet posted are not sent. */
  #epoch = 0;
  /** Seqs lost to a spool write that failed, until their gap is declared. */
  readonly #outage = new WriteOutage();
  #retryTimer: NodeJS.Timeout | undefined;
  #recovering: Promise<void> | undefined;

  constructor(o: KafkaSinkOptions) {
    this.#o = o;
    this.#component = o.sealer.source.component;
    this.#cm = new ComponentMetrics(o.metrics, this.#component);
    // The idempotent kafkajs producer (acks=all, one request in flight) runs
    // in a worker thread: see kafka-producer.ts.
    this.#producer = new ProducerThread(o.settings, o.logger, (b) => this.#reportBackends(b));
    this.#mode = o.startSpooling ? 'spool' : 'direct';
    this.#local = o.settings.durability === 'local';
    // The drainer reads and clears the request still retried after its deadline (see DrainHost.stuck).
    const sink = this;
    this.#drainer = new SpoolDrainer({
      settings: o.settings,
      spool: o.spool,
      metrics: o.metrics,
      logger: o.logger,
      component: this.#component,
      // durability local: the spool is the write path, so the drainer runs whenever it holds events.
      spooling: () => (this.#mode === 'spool' || (this.#local && !o.spool.empty)) && !this.#stopped,
      connected: () => this.#connected,
      connect: () => this.#ensureConnected(),
      get stuck() {
        return sink.#stuck;
      },
      set stuck(p) {
        sink.#stuck = p;
      },
      render: (event, line) => this.#render({ event, line }),
      send: (records) => this.#send(encodeBatch(records, o.settings.topics)),
      setAside: (line, errorType) => this.#reject(line, errorType),
      sent: (acked) => {
        this.#keepSignedHead(acked);
        this.#refusing = false;
      },
      drained: () => {
        if (this.#local) {
          // Emits keep going to the spool; only the outage (if any) is over.
          if (this.#mode === 'spool') o.logger.info({}, 'spool drained; kafka reachable again (durability local: events still go through the spool)');
          this.#mode = 'direct';
          o.metrics.spooling.set({ component: this.#component }, 0);
          return;
        }
        this.#mode = 'direct';
        o.metrics.spooling.set({ component: this.#component }, 0);
        o.metrics.spoolBytes.set({ component: this.#component }, o.spool.bytes);
        o.logger.info({}, 'spool drained; events go to kafka directly again');
        void this.#pump();
      },
    });
    o.metrics.spooling.set({ component: this.#component }, this.#mode === 'spool' ? 1 : 0);
    o.metrics.spoolBytes.set({ component: this.#component }, o.spool.bytes);
    this.#timer = setInterval(() => this.#checkpoint(), o.checkpointIntervalMs);
    this.#timer.unref();
    if (this.#mode === 'spool') void this.#drainer.start();
  }

  /** Logs and exposes what the producer thread's kafkajs runs with; its own checksum or encoder (a changed kafkajs) is a warning. */
  #reportBackends(b: KafkajsBackends): void {
    const fields = { crc32c: b.crc32c, encoder: b.encoder };
    if (b.crc32c.backend === 'kafkajs' || b.encoder.backend === 'kafkajs') this.#o.logger.warn(fields, 'kafka producer thread: kafkajs runs without the native CRC-32C or the rope encoder; more CPU per event');
    else this.#o.logger.info(fields, 'kafka producer thread: kafkajs runs with the native CRC-32C and the rope encoder');
    for (const [part, v] of Object.entries(fields)) this.#o.metrics.kafkajsBackend.set({ component: this.#component, part, backend: v.backend }, 1);
  }

  /** Connects the producer (call once after construction when brokers were reachable). */
  async connect(): Promise<void> {
    const r = await withDeadline(this.#ensureConnected(), this.#o.settings.connectTimeoutMs + this.#o.settings.requestTimeoutMs);
    if (!r.ok) {
      this.#o.logger.warn({ setting: 'kafka.brokers' }, 'kafka producer did not connect in time; spooling until it does');
      this.#enterSpool([], r.err);
    }
  }

  #ensureConnected(): Promise<void> {
    if (this.#connected) return Promise.resolve();
    this.#connecting ??= this.#producer.connect().then(
      () => {
        this.#connected = true;
      },
      (err: unknown) => {
        this.#connecting = undefined;
        throw err;
      },
    );
    return this.#connecting;
  }

  /** Ready unless closed, refusing work (spool full with fail-closed), or unable to write the spool. */
  ready(): boolean {
    if (this.#closed) return false;
    return !this.#refusing && !this.#outage.active;
  }

  /** True while events go to the spool (for tests and /readyz detail). */
  get spooling(): boolean {
    return this.#mode === 'spool';
  }

  /** Seals the event and resolves once Kafka acknowledged it or the spool fsync'd it. */
  emit<T extends EventType>(draft: EventDraft<T>): Promise<KubetrailEvent<T>> {
    if (this.#closed) return Promise.reject(new SinkError('SINK_ERR_CLOSED', 'event pipeline is closed'));
    if (this.#outage.active) {
      this.#outage.refused();
      return Promise.reject(new SinkError('SINK_ERR_UNAVAILABLE', 'event refused: the spool could not be written (dataDir) and is not writable again yet', { setting: 'dataDir' }));
    }
    if (this.#mode === 'direct' && this.#queuedBytes >= this.#o.settings.maxBufferedBytes) {
      return new Promise<void>((r) => this.#spaceWaiters.push(r)).then(() => this.emit(draft));
    }
    let prepared: ReturnType<ChainSealer['prepare']>;
    try {
      prepared = this.#o.sealer.prepare(draft);
    } catch (err) {
      return Promise.reject(err);
    }
    const sealed = prepared.sealed;
    let p: Promise<KubetrailEvent>;
    if (this.#mode === 'spool' || this.#local) {
      const bytes = Buffer.byteLength(sealed.line) + 1;
      if (this.#o.spool.bytes + bytes > this.#o.spoolSettings.maxBytes) return Promise.reject(this.#overflow());
      prepared.commit();
      p = this.#toSpool([sealed]).then(() => sealed.event);
    } else {
      let source: RecordSource;
      try {
        source = this.#render(sealed);
      } catch (err) {
        return Promise.reject(new SinkError('SINK_ERR_INVALID_EVENT', `event ${sealed.event.type} cannot be rendered as ${this.#o.settings.format}`, { cause: err }));
      }
      prepared.commit();
      p = this.#enqueue(source);
    }
    if (this.#o.sealer.checkpointDue) this.#checkpoint();
    return this.#track(p) as Promise<KubetrailEvent<T>>;
  }

  #track<T>(p: Promise<T>): Promise<T> {
    this.#outstanding.add(p);
    const done = (): void => void this.#outstanding.delete(p);
    p.then(done, done);
    return p;
  }

  #overflow(): SinkError {
    const component = this.#component;
    if (this.#o.spoolSettings.overflow === 'drop') {
      this.#o.metrics.dropped.inc({ component });
      this.#droppedUnlogged += 1;
      this.#dropLogTimer ??= setTimeout(() => {
        this.#o.logger.warn({ dropped: this.#droppedUnlogged, setting: 'spool.overflow', maxBytes: this.#o.spoolSettings.maxBytes }, 'spool full: events dropped (spool.overflow=drop)');
        this.#droppedUnlogged = 0;
        this.#dropLogTimer = undefined;
      }, 1000);
      this.#dropLogTimer.unref();
      return new SinkError('SINK_ERR_EVENT_DROPPED', 'event dropped: the spool is full (spool.maxBytes) and spool.overflow=drop', { setting: 'spool.maxBytes' });
    }
    this.#o.metrics.refused.inc({ component });
    this.#refusing = true;
    return new SinkError('SINK_ERR_SPOOL_FULL', 'event refused: Kafka is unavailable and the spool is full (spool.maxBytes, spool.overflow=fail-closed)', { setting: 'spool.maxBytes' });
  }

  /** A sealed event with its rendering in the configured format (throws when it cannot be rendered). */
  #render(sealed: SealedEvent): RecordSource {
    return { event: sealed.event, line: sealed.line, rendered: render(sealed.event, sealed.line, this.#o.settings.format) };
  }

  #enqueue(sealed: RecordSource): Promise<KubetrailEvent> {
    return new Promise((resolve, reject) => {
      const value = sealed.rendered.value;
      const bytes = value.length + (sealed.line === value ? 0 : sealed.line.length) + RECORD_OVERHEAD_BYTES;
      this.#queue.push({ sealed, bytes, started: performance.now(), resolve, reject });
      this.#queuedBytes += bytes;
      if (this.#sending) this.#pipeline();
      else void this.#pump();
    });
  }

  /** Appends to the spool; resolves when fsync'd. Used for spool-mode emits and for batches Kafka did not take. */
  #toSpool(events: readonly SealedEvent[]): Promise<void> {
    const started = performance.now();
    const p = this.#o.spool.append(events.map((e) => e.line)).then(
      () => {
        const last = events.at(-1);
        if (last) this.#o.head.save(last.event.chain as { seq: number; hash: string });
        for (const e of events) this.#cm.durable('spool', e.event.type);
        this.#cm.latency('spool', (performance.now() - started) / 1000);
        this.#o.metrics.spoolBytes.set({ component: this.#component }, this.#o.spool.bytes);
        // durability local: the drainer may have found the spool empty while this append was in flight.
        if (this.#local) void this.#drainer.start();
      },
      (err: unknown) => {
        const se = err instanceof SinkError ? err : new SinkError('SINK_ERR_IO', 'cannot write the spool under dataDir', { setting: 'dataDir', cause: err });
        for (const e of events) this.#lostWrite(e, se);
        throw se;
      },
    );
    void this.#drainer.start();
    return p;
  }

  /** Hands a batch to the producer thread (its buffers move there: do not use them after). */
  #send(batch: WireBatch): Promise<unknown> {
    return this.#producer.send(batch, { timeout: this.#o.settings.requestTimeoutMs, compression: this.#o.settings.compression === 'gzip' ? 'gzip' : 'none' });
  }

  /**
   * Takes the next batch off the queue, journals it and hands it to the
   * producer. False (and the batch spooled) when the journal cannot be
   * written: without it a crash during the request could fork the chain.
   */
  #dispatch(): boolean {
    const batch = this.#queue.splice(0, this.#batchLength());
    this.#release(batch);
    let generation: number;
    let wire: WireBatch;
    try {
      wire = encodeBatch(batch.map((p) => p.sealed), this.#o.settings.topics);
      // The journal writes the very bytes the producer thread will send.
      generation = this.#o.journal.record(wire.lines);
    } catch (err) {
      const handed = this.#inflight.splice(0, this.#inflight.length);
      if (handed.length > 0) {
        this.#producer.cancelQueued();
        this.#stuck = Promise.allSettled(handed.map((f) => f.sent));
      }
      this.#enterSpool([...handed.flatMap((f) => f.batch), ...batch], err, handed.map((f) => f.generation));
      return false;
    }
    this.#inflight.push({ batch, generation, sent: this.#post(generation, wire) });
    return true;
  }

  /**
   * Sends a journaled batch once its journal slot is written (with
   * `kafka.journalSync`, also fdatasync'd on the libuv pool, so nothing
   * reaches Kafka that a power cut could erase from the journal) and the
   * batch handed over before it was posted: the producer thread receives
   * batches in chain order. A batch whose turn comes after the sink went to
   * the spool is not sent (the spool holds it).
   */
  #post(generation: number, wire: WireBatch): Promise<unknown> {
    const epoch = this.#epoch;
    const previous = this.#lastPosted;
    const synced = this.#o.journal.sync(generation).then(
      () => undefined,
      (err: unknown) => new SinkError('SINK_ERR_IO', 'cannot write the in-flight journal under dataDir', { setting: 'dataDir', cause: err }),
    );
    let posted!: () => void;
    this.#lastPosted = new Promise<void>((r) => (posted = r));
    return Promise.all([synced, previous]).then(([failed]) => {
      try {
        if (failed !== undefined) throw failed;
        if (this.#epoch !== epoch) throw new SinkError('SINK_ERR_IO', 'not sent: the sink turned to the spool before this batch was posted');
        return this.#send(wire);
      } finally {
        posted();
      }
    });
  }

  /** True when the queue holds a full produce request (worth handing over while another is in flight). */
  #fullBatchQueued(): boolean {
    return this.#queue.length >= this.#o.settings.batchMaxEvents || this.#queuedBytes >= this.#o.settings.batchMaxBytes;
  }

  /**
   * Hands a second, full batch to the producer while one is in flight: the
   * producer thread sends it the moment the first is acknowledged (never
   * before, and never if the first fails), so the broker is not left idle
   * while this thread handles the ack. Partial batches keep waiting, to
   * collect more events (group commit).
   */
  #pipeline(): void {
    if (this.#mode === 'direct' && this.#inflight.length === 1 && this.#fullBatchQueued()) this.#dispatch();
  }

  async #pump(): Promise<void> {
    if (this.#sending) return;
    this.#sending = true;
    try {
      if (this.#o.settings.lingerMs > 0 && this.#queue.length < this.#o.settings.batchMaxEvents) await sleep(this.#o.settings.lingerMs);
      while (this.#mode === 'direct' && (this.#queue.length > 0 || this.#inflight.length > 0)) {
        if (!this.#connected) {
          // Nothing is in flight before the first connection.
          const c = await withDeadline(this.#ensureConnected(), this.#o.settings.ackDeadlineMs);
          if (!c.ok) {
            const batch = this.#queue.splice(0, this.#queue.length);
            this.#release(batch);
            this.#enterSpool(batch, c.err);
            break;
          }
        }
        if (this.#inflight.length === 0 && !this.#dispatch()) break;
        this.#pipeline();
        const head = this.#inflight[0] as InFlight;
        // The ack deadline runs from when the batch is the one being sent.
        const r = await withDeadline(head.sent, this.#o.settings.ackDeadlineMs);
        if (this.#inflight[0] !== head) break; // the journal failed meanwhile: everything was spooled
        if (r.ok) {
          this.#inflight.shift();
          const batch = head.batch;
          const last = batch.at(-1);
          if (last) this.#o.head.save(last.sealed.event.chain as { seq: number; hash: string });
          // Acknowledged: the slot may be reused, but keeps the batch until then.
          this.#o.journal.release(head.generation);
          const now = performance.now();
          for (const p of batch) {
            this.#cm.durable('kafka', p.sealed.event.type);
            this.#cm.latency('kafka', (now - p.started) / 1000);
            p.resolve(p.sealed.event);
          }
          this.#keepSignedHead(batch.map((p) => p.sealed.event));
        } else {
          // Everything handed to the producer and everything queued goes to the
          // spool, in order. Batches queued in the producer thread are withdrawn;
          // the drainer waits until every handed request has settled (one that
          // missed its deadline may still be retried by kafkajs).
          const handed = this.#inflight.splice(0, this.#inflight.length);
          if (handed.length > 1) this.#producer.cancelQueued();
          if (r.timedOut || handed.length > 1) this.#stuck = Promise.allSettled(handed.map((f) => f.sent));
          this.#enterSpool(handed.flatMap((f) => f.batch), r.err, handed.map((f) => f.generation));
        }
      }
    } finally {
      this.#sending = false;
    }
  }

  /** How many queued events fit one produce request (batchMaxEvents, batchMaxBytes; at least one). */
  #batchLength(): number {
    const s = this.#o.settings;
    let bytes = 0;
    let n = 0;
    for (const p of this.#queue) {
      if (n >= s.batchMaxEvents || (n > 0 && bytes + p.bytes > s.batchMaxBytes)) break;
      bytes += p.bytes;
      n += 1;
    }
    return n;
  }

  #release(batch: readonly Pending[]): void {
    for (const p of batch) this.#queuedBytes -= p.bytes;
    if (this.#queuedBytes < this.#o.settings.maxBufferedBytes) {
      const waiters = this.#spaceWaiters.splice(0, this.#spaceWaiters.length);
      for (const w of waiters) w();
    }
  }

  /** Moves `batch` and everything queued behind it to the spool, in order, and starts the drainer. */
  #enterSpool(batch: readonly Pending[], err: unknown, journalGenerations: readonly number[] = []): void {
    if (this.#mode !== 'spool') {
      this.#o.logger.warn(
        {
          setting: 'kafka.ackDeadlineMs',
          ackDeadlineMs: this.#o.settings.ackDeadlineMs,
          error: err === undefined ? 'ack deadline missed' : (recordErrorType(err) ?? (err as { name?: string }).name),
        },
        'kafka did not acknowledge a batch; events go to the spool until it drains',
      );
    }
    this.#mode = 'spool';
    this.#epoch += 1;
    this.#o.metrics.spooling.set({ component: this.#component }, 1);
    const rest = this.#queue.splice(0, this.#queue.length);
    this.#release(rest);
    const all = [...batch, ...rest];
    if (all.length > 0) {
      this.#toSpool(all.map((p) => p.sealed)).then(
        () => {
          // The spool holds the batch now; the journal need not re-send it after a crash.
          for (const g of journalGenerations) this.#o.journal.clear(g);
          for (const p of all) p.resolve(p.sealed.event);
        },
        (e: unknown) => {
          for (const p of all) p.reject(e);
        },
      );
    }
    void this.#drainer.start();
  }

  /**
   * Keeps an event the broker refused in `rejected.ndjson` beside the spool
   * (fsync'd: it is still durable, never dropped), counts it, and says so
   * loudly. It is missing from Kafka, and verify on the topic will say that too.
   */
  #reject(line: string, errorType: string): void {
    const file = path.join(this.#o.spool.log.dir, 'rejected.ndjson');
    const fd = openSync(file, 'a');
    try {
      writeSync(fd, line + '\n');
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    let id = '';
    let seq = 0;
    try {
      const e = JSON.parse(line) as KubetrailEvent;
      id = e.id;
      seq = e.chain?.seq ?? 0;
    } catch {
      // unparseable lines never reach the broker; keep the defaults
    }
    this.#o.metrics.rejected.inc({ component: this.#component });
    this.#o.logger.error({ id, seq, bytes: Buffer.byteLength(line), kafkaError: errorType, file }, 'kafka refused an event; it is kept in the spool dir and missing from the topic');
  }

  /** A sealed event could not be spooled: its seq joins the outage, and the sink turns unready. */
  #lostWrite(e: SealedEvent, err: SinkError): void {
    if (!this.#outage.lost((e.event.chain as { seq: number }).seq, err, new Date())) return;
    this.#o.logger.error({ err, spoolDir: this.#o.spool.log.dir, setting: 'dataDir' }, 'spool write failed: events are refused and /readyz fails until a gap declaration can be written');
    this.#retryTimer = setInterval(() => void this.#recover(), DEFAULT_WRITE_RETRY_MS);
    this.#retryTimer.unref();
  }

  /**
   * Declares the lost seqs once everything under way has settled (nothing
   * else is sealed meanwhile: emits are refused, checkpoints wait). In spool
   * mode the declaration is committed only once the spool holds it; in
   * direct mode it goes the way of any event (a failure there lands in the
   * spool, and a spool failure starts a new outage).
   */
  #recover(): Promise<void> {
    this.#recovering ??= (async () => {
      try {
        await this.flush();
        const decl = this.#outage.declaration(new Date());
        if (decl === undefined) return;
        const p = this.#o.sealer.prepareGap(decl);
        if (p !== undefined && this.#mode === 'spool') {
          try {
            await this.#o.spool.append([p.sealed.line]);
          } catch {
            return; // still cannot write: stay unready, try again on the next tick
          }
          p.commit();
          this.#o.head.save(p.sealed.event.chain as { seq: number; hash: string });
          void this.#drainer.start();
        } else if (p !== undefined) {
          p.commit();
          this.#track(this.#enqueue(this.#render(p.sealed))).catch((err: unknown) => this.#o.logger.error({ err }, 'gap declaration could not be made durable'));
        }
        this.#outage.end();
        clearInterval(this.#retryTimer);
        this.#retryTimer = undefined;
        this.#o.logger.warn({ fromSeq: decl.fromSeq, toSeq: decl.toSeq, lost: decl.events, refused: decl.refused, reason: decl.reason, errno: decl.errno }, 'spool writable again: the lost seqs are declared in a signed chain.gap');
        this.#checkpoint();
      } finally {
        this.#recovering = undefined;
      }
    })();
    return this.#recovering;
  }

  #checkpoint(): void {
    if (this.#closed || this.#outage.active) return;
    const cp = this.#o.sealer.checkpoint();
    if (cp === undefined) return;
    const p: Promise<unknown> =
      this.#mode === 'spool' || this.#local
        ? this.#toSpool([cp])
        : this.#enqueue(this.#render(cp));
    this.#track(p).catch((err: unknown) => this.#o.logger.error({ err }, 'checkpoint could not be made durable'));
  }

  /**
   * Keeps the signed head of the newest checkpoint among events Kafka
   * acknowledged: only then, so that the head never names a checkpoint
   * that is still in the spool (verify on the topic would call it truncated).
   */
  #keepSignedHead(acked: readonly KubetrailEvent[]): void {
    if (this.#o.signedHead === undefined) return;
    const cp = acked.findLast((e) => e.type === 'chain.checkpoint');
    if (cp === undefined) return;
    try {
      this.#o.signedHead.write(cp);
    } catch (err) {
      this.#o.logger.error({ err, setting: 'signing.headDir' }, 'cannot write the signed head to signing.headDir');
    }
  }

  /** Resolves when everything emitted so far is durable (in Kafka or the spool). */
  async flush(): Promise<void> {
    while (this.#outstanding.size > 0) await Promise.allSettled([...this.#outstanding]);
  }

  /**
   * Writes a final checkpoint, waits until every emitted event is durable,
   * stops the drainer (the spool keeps what it holds for the next start) and
   * disconnects.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      clearInterval(this.#timer);
      if (this.#outage.active) await this.#recover();
      clearInterval(this.#retryTimer);
      this.#checkpoint();
      this.#closed = true;
      await this.flush();
      if (this.#local) {
        // Ship what the spool holds before stopping, for at most one ack deadline: whatever is left
        // stays durable on disk and goes to Kafka at the next start.
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([this.#drainer.running ?? Promise.resolve(), new Promise<void>((r) => (timer = setTimeout(r, this.#o.settings.ackDeadlineMs)))]);
        clearTimeout(timer);
      }
      this.#stopped = true;
      await this.#drainer.running;
      if (this.#dropLogTimer !== undefined) {
        clearTimeout(this.#dropLogTimer);
        if (this.#droppedUnlogged > 0) this.#o.logger.warn({ dropped: this.#droppedUnlogged, setting: 'spool.overflow' }, 'spool full: events dropped (spool.overflow=drop)');
      }
      await this.#o.spool.close();
      await withDeadline(this.#producer.disconnect(), 3000);
      // Everything is acknowledged or spooled now: nothing is in flight. The
      // head goes to disk once here, so a clean stop followed by a power cut
      // restarts the chain where it ended whatever kafka.journalSync says.
      try {
        this.#o.head.sync();
      } catch (err) {
        this.#o.logger.error({ err, setting: 'dataDir' }, 'cannot fdatasync the chain head at close');
      }
      this.#o.journal.close();
      this.#o.head.close();
      this.#o.onClose?.();
    })();
    return this.#closing;
  }
}
