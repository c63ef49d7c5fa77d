/**
 * The session recorder: turns what the relay saw into session.start,
 * session.data and session.end events on the sink. It consumes already-parsed
 * (and already-masked) bytes; it knows nothing of frames or WebSockets.
 *
 * Durability: group commit. Bytes of one stream are coalesced into a chunk of
 * at most `chunkBytes` and emitted when the chunk is full, the stream changes,
 * or `flushMs` passes — so a byte is handed to the sink at most `flushMs` after
 * the relay saw it, and the sink makes it durable (Kafka acks=all or fsync)
 * before `emit` resolves. session.end is emitted only after every data chunk
 * of the session is durable, so a session.end on record means a complete
 * recording (up to `maxRecordedBytes`, flagged by `recordTruncated`).
 */
import type { Actor, Decision, SessionBody, SessionDataBody, Target } from '../../core/events/model.ts';
import { guardrailDecision, sessionData, sessionEnd, sessionStart } from '../../core/events/builders.ts';
import type { EventSink } from '../../core/sinks/sink.ts';
import { sharedChunkEncoder, type ChunkEncoder, type EncodedChunk } from './chunk-encoder.ts';
import { StreamError } from './errors.ts';

/** Recorder options (from config.proxy.exec). */
export interface RecorderOptions {
  chunkBytes: number;
  flushMs: number;
  maxRecordedBytes: number;
  maxInflightBytes: number;
  /** Raw-deflate chunks (in the encoder's worker thread) when it saves at least 10%. */
  compression?: 'deflate-raw' | 'none';
  /** Where chunks are encoded; the process-wide {@link sharedChunkEncoder} by default. */
  encoder?: ChunkEncoder;
  /** Injectable clock (ms). */
  now?: () => number;
}

type DataStream = SessionDataBody['stream'];

/** Records one session. */
export class SessionRecorder {
  readonly #sink: EventSink;
  readonly #actor: Actor;
  readonly #target: Target;
  readonly #session: string;
  readonly #opts: RecorderOptions;
  readonly #now: () => number;
  readonly #encoder: ChunkEncoder;
  readonly #started: number;
  readonly #pendingEmits = new Set<Promise<unknown>>();
  readonly #offsets: Record<DataStream, number> = { stdin: 0, stdout: 0, stderr: 0, resize: 0 };
  #chunk = 0;
  #buf: Buffer[] = [];
  #bufLen = 0;
  #bufStream: DataStream | undefined;
  #bufT = 0;
  #timer: NodeJS.Timeout | undefined;
  #recorded = 0;
  #inflight = 0;
  #truncated = false;
  #failed: unknown;
  #drainWaiters: (() => void)[] = [];
  /** Emits of session.data are called in chunk order. */
  #order: Promise<void> = Promise.resolve();
  #skipCompression = 0;
  /** Called once when an emit fails: the caller must end the session (fail closed). */
  onError: ((err: StreamError) => void) | undefined;

  constructor(sink: EventSink, who: { actor: Actor; target: Target; session: string }, opts: RecorderOptions) {
    this.#sink = sink;
    this.#actor = who.actor;
    this.#target = who.target;
    this.#session = who.session;
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
    this.#encoder = opts.encoder ?? sharedChunkEncoder();
    this.#started = this.#now();
  }

  /** Milliseconds since the session started. */
  elapsed(): number {
    return this.#now() - this.#started;
  }

  /** Whether the recording stopped at its size bound. */
  get truncated(): boolean {
    return this.#truncated;
  }

  /** Chunks emitted so far. */
  get chunks(): number {
    return this.#chunk;
  }

  /** Bytes handed to the sink but not yet durable. */
  get inflightBytes(): number {
    return this.#inflight + this.#bufLen;
  }

  /** Whether the relay should pause its sources until {@link drained} resolves. */
  get congested(): boolean {
    return this.#inflight >= this.#opts.maxInflightBytes;
  }

  /** Resolves when in-flight recording bytes fall below the bound. */
  drained(): Promise<void> {
    if (!this.congested) return Promise.resolve();
    return new Promise((r) => this.#drainWaiters.push(r));
  }

  /** Envelope of every event of this session. */
  get #parts(): { actor: Actor; target: Target; correlation: { session: string } } {
    return { actor: this.#actor, target: this.#target, correlation: { session: this.#session } };
  }

  /** Emits session.start and waits until it is durable (a session is not opened unrecorded). */
  async start(body: SessionBody): Promise<void> {
    await this.#sink.emit(sessionStart(this.#parts, body));
  }

  /** Emits a guardrail.decision for a rule that fired (deny or audit). */
  async decision(d: Decision, input: unknown): Promise<void> {
    if (d.action !== 'deny' && d.action !== 'audit') return;
    await this.#track(
      this.#sink.emit(
        guardrailDecision(this.#parts, { policy: d.policy ?? '', rule: d.rule ?? '', action: d.action, message: d.message ?? '', input }),
      ),
      0,
    );
  }

  /** Records bytes of one stream (already masked). */
  data(stream: DataStream, bytes: Buffer): void {
    if (bytes.length === 0 || this.#failed !== undefined) return;
    if (this.#truncated) return;
    let b = bytes;
    if (this.#recorded + b.length > this.#opts.maxRecordedBytes) {
      b = b.subarray(0, this.#opts.maxRecordedBytes - this.#recorded);
      this.#truncated = true;
    }
    this.#recorded += b.length;
    if (this.#bufStream !== undefined && this.#bufStream !== stream) this.#flushBuf();
    while (b.length > 0) {
      if (this.#bufLen === 0) {
        this.#bufStream = stream;
        this.#bufT = this.elapsed();
      }
      const room = this.#opts.chunkBytes - this.#bufLen;
      const part = b.subarray(0, room);
      this.#buf.push(part);
      this.#bufLen += part.length;
      b = b.subarray(part.length);
      if (this.#bufLen >= this.#opts.chunkBytes) this.#flushBuf();
    }
    if (this.#bufLen > 0 && this.#timer === undefined) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#flushBuf();
      }, this.#opts.flushMs);
    }
  }

  #flushBuf(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    if (this.#bufLen === 0 || this.#bufStream === undefined) return;
    const data = this.#buf.length === 1 ? (this.#buf[0] as Buffer) : Buffer.concat(this.#buf, this.#bufLen);
    const stream = this.#bufStream;
    const body: SessionDataBody = { chunk: this.#chunk++, stream, offset: this.#offsets[stream], t: this.#bufT, data: '' };
    this.#offsets[stream] += data.length;
    this.#buf = [];
    this.#bufLen = 0;
    this.#bufStream = undefined;
    const prepared = this.#encode(data);
    // The step resolves as soon as emit is *called* (not when durable), keeping chunk order without serializing durability.
    // In-flight bytes are what memory holds: the raw chunk until it is compressed, then the stored form.
    let held = data.length;
    const step = this.#order.then(async () => {
      const enc = await prepared;
      const stored = enc.data.length;
      this.#inflight += stored - held;
      held = stored;
      return { emitted: this.#sink.emit(sessionData(this.#parts, { ...body, ...enc })) };
    });
    this.#order = step.then(
      () => undefined,
      () => undefined,
    );
    void this.#track(step.then((s) => s.emitted), data.length, () => held);
  }

  /**
   * The stored form of a chunk: raw-deflated (in the shared encoder's worker
   * thread) when that saves at least 10%. After a chunk that did not
   * compress, the next few are stored as base64 without trying.
   */
  #encode(data: Buffer): Promise<EncodedChunk> {
    let compress = this.#opts.compression === 'deflate-raw';
    if (compress && this.#skipCompression > 0) {
      this.#skipCompression--;
      compress = false;
    }
    return Promise.resolve(this.#encoder.encode(data, compress)).then((r) => {
      if (r.incompressible) this.#skipCompression = INCOMPRESSIBLE_BACKOFF;
      return r.chunk;
    });
  }

  #track(p: Promise<unknown>, bytes: number, heldAtEnd: () => number = () => bytes): Promise<void> {
    this.#inflight += bytes;
    const tracked = p.then(
      () => undefined,
      (err: unknown) => {
        if (this.#failed === undefined) {
          this.#failed = err;
          this.onError?.(new StreamError('STREAM_ERR_RECORDING', 'the session could not be recorded', { cause: err }));
        }
      },
    ).finally(() => {
      this.#inflight -= heldAtEnd();
      this.#pendingEmits.delete(tracked);
      if (!this.congested && this.#drainWaiters.length > 0) {
        const w = this.#drainWaiters;
        this.#drainWaiters = [];
        for (const f of w) f();
      }
    });
    this.#pendingEmits.add(tracked);
    return tracked;
  }

  /**
   * Flushes every buffered chunk, waits until all are durable, then emits
   * session.end (and waits for it). Rejects when the recording failed.
   */
  async end(body: SessionBody): Promise<void> {
    this.#flushBuf();
    while (this.#pendingEmits.size > 0) await Promise.all([...this.#pendingEmits]);
    const final: SessionBody = { ...body, chunks: this.#chunk, ...(this.#truncated ? { recordTruncated: true } : {}) };
    if (this.#failed !== undefined) final.outcome = 'error';
    await this.#sink.emit(sessionEnd(this.#parts, final));
    if (this.#failed !== undefined) throw new StreamError('STREAM_ERR_RECORDING', 'the session could not be recorded', { cause: this.#failed });
  }
}

/** Chunks to skip compressing after one that did not compress (random or already-compressed data). */
const INCOMPRESSIBLE_BACKOFF = 16;
