/**
 * The stored form of a recorded chunk (base64, raw-deflated when that saves
 * at least 10%), and the encoder that makes it off the relay's thread.
 *
 * Deflating is the largest CPU cost of recording a fast stream (about 60 µs
 * per 32 KiB chunk of log lines at level 1, more for less repetitive text),
 * and the relay's event loop also has to decrypt, parse, re-encrypt and mask
 * every byte. {@link ChunkEncoder} therefore runs it in one worker thread
 * shared by every session of the process: the relay thread only copies the
 * chunk into a transferable buffer (a few µs) and gets the stored string
 * back. Chunk order is kept by the recorder, which awaits encodings in order.
 * Small chunks, and chunks of a stream that did not compress, are encoded
 * inline (base64 alone costs less than the round trip). If the worker cannot
 * start or dies, pending and later chunks are encoded inline: recording never
 * depends on the worker being alive.
 */
import { Worker } from 'node:worker_threads';
import { deflateRawSync } from 'node:zlib';

/** A chunk as session.data stores it. */
export interface EncodedChunk {
  data: string;
  encoding?: 'deflate-raw';
  /** Decoded size, when encoded. */
  size?: number;
}

/** An encoded chunk, and whether compression was tried and did not pay. */
export interface EncodeResult {
  chunk: EncodedChunk;
  incompressible: boolean;
}

/** Chunks shorter than this are stored as base64 without trying to compress. */
export const MIN_COMPRESS_BYTES = 256;

/**
 * Level 1 with zlib's default window and memLevel: measured here on 32 KiB
 * chunks, 1.6x faster than windowBits 12 / memLevel 4 for the same ratio on
 * logs and source text (the smaller hash table makes level 1 search longer).
 * The state (about 256 KiB) lives only for the call.
 */
const DEFLATE_OPTIONS = Object.freeze({ level: 1 });

/** Encodes one chunk synchronously (the worker runs this too). */
export function encodeChunk(data: Buffer, compress: boolean): EncodeResult {
  if (!compress || data.length < MIN_COMPRESS_BYTES) return { chunk: { data: data.toString('base64') }, incompressible: false };
  let z: Buffer;
  try {
    z = deflateRawSync(data, DEFLATE_OPTIONS);
  } catch {
    return { chunk: { data: data.toString('base64') }, incompressible: false };
  }
  if (z.length > data.length * 0.9) return { chunk: { data: data.toString('base64') }, incompressible: true };
  return { chunk: { data: z.toString('base64'), encoding: 'deflate-raw', size: data.length }, incompressible: false };
}

/** Shared-memory slots the relay thread copies chunks into for the worker. */
export const SLOT_BYTES = 64 * 1024;
const SLOTS = 32;

/** What the worker is started with. */
export interface EncoderWorkerData {
  slots: SharedArrayBuffer;
  slotBytes: number;
}
/** Request: [id, slot, length] per chunk, flattened. Reply: [id, stored data, decoded size, kind] per chunk, flattened. */
export type EncodeRequest = number[];
export type EncodeReply = (number | string)[];
/** 0: base64 of the raw bytes; 1: deflate-raw; 2: base64, compression tried and did not pay. */
export type ReplyKind = 0 | 1 | 2;

/** The worker's side: encodes the chunks a request names, in order. */
export function encodeRequest(view: Buffer, slotBytes: number, req: EncodeRequest): EncodeReply {
  const out: EncodeReply = [];
  for (let i = 0; i + 2 < req.length; i += 3) {
    const [id, slot, length] = [req[i] as number, req[i + 1] as number, req[i + 2] as number];
    const r = encodeChunk(view.subarray(slot * slotBytes, slot * slotBytes + length), true);
    out.push(id, r.chunk.data, length, r.chunk.encoding === 'deflate-raw' ? 1 : r.incompressible ? 2 : 0);
  }
  return out;
}

function fromReply(data: string, size: number, kind: ReplyKind): EncodeResult {
  return kind === 1 ? { chunk: { data, encoding: 'deflate-raw', size }, incompressible: false } : { chunk: { data }, incompressible: kind === 2 };
}

interface Job {
  data: Buffer;
  resolve: (r: EncodeResult) => void;
}

/**
 * Encodes chunks in one worker thread, falling back to inline encoding.
 * Chunks travel through a fixed set of shared-memory slots (a memcpy, no
 * ArrayBuffer per chunk for the GC), and the chunks copied during one turn
 * of the event loop go in one message (one cross-thread wake-up instead of
 * one per chunk: profiled, a postMessage per 32 KiB chunk cost the relay
 * thread ~30 µs, half of what deflating inline did). When every slot is
 * busy, chunks wait in order; the recorder's in-flight bound limits how many.
 */
export class ChunkEncoder {
  #worker: Worker | undefined;
  #view: Buffer | undefined;
  #failed = false;
  #nextId = 0;
  readonly #free: number[] = [];
  /**
   * Chunks in a slot keep only the slot and length, not the caller's Buffer:
   * that is usually a view of a whole 64 KiB WebSocket message, and holding
   * it until the worker answers got those messages promoted to old space
   * (trace-gc: 22 mark-compacts instead of 4 per 256 MiB stream, and GC
   * threads at ~2.8 ms of CPU per MiB). The slot itself is the copy.
   */
  readonly #inSlot = new Map<number, { slot: number; length: number; resolve: Job['resolve'] }>();
  readonly #waiting: Job[] = [];
  #outbox: EncodeRequest = [];
  #sendScheduled = false;

  /** Chunks handed to the encoder and not yet encoded. */
  get pending(): number {
    return this.#inSlot.size + this.#waiting.length;
  }

  /**
   * Encodes `data` (compressing when `compress`). The result is synchronous
   * for small chunks, chunks not to compress, and when there is no worker.
   */
  encode(data: Buffer, compress: boolean): EncodeResult | Promise<EncodeResult> {
    if (!compress || data.length < MIN_COMPRESS_BYTES) return encodeChunk(data, false);
    if (data.length > SLOT_BYTES || !this.#ensureWorker()) return encodeChunk(data, true);
    return new Promise<EncodeResult>((resolve) => {
      const job = { data, resolve };
      if (this.#waiting.length > 0 || !this.#dispatch(job)) this.#waiting.push(job);
    });
  }

  /** Stops the worker; chunks still pending are encoded inline. */
  async close(): Promise<void> {
    const w = this.#worker;
    this.#worker = undefined;
    this.#drainInline();
    if (w) await w.terminate();
  }

  #dispatch(job: Job): boolean {
    const w = this.#worker;
    const view = this.#view;
    const slot = this.#free.pop();
    if (w === undefined || view === undefined || slot === undefined) return false;
    job.data.copy(view, slot * SLOT_BYTES);
    const id = this.#nextId++;
    if (this.#inSlot.size === 0) w.ref();
    this.#inSlot.set(id, { slot, length: job.data.length, resolve: job.resolve });
    this.#outbox.push(id, slot, job.data.length);
    if (!this.#sendScheduled) {
      this.#sendScheduled = true;
      setImmediate(() => this.#send());
    }
    return true;
  }

  #send(): void {
    this.#sendScheduled = false;
    const batch = this.#outbox;
    this.#outbox = [];
    if (batch.length > 0) this.#worker?.postMessage(batch);
  }

  #onReply(w: Worker, reply: EncodeReply): void {
    for (let i = 0; i + 3 < reply.length; i += 4) {
      const id = reply[i] as number;
      const job = this.#inSlot.get(id);
      if (job === undefined) continue;
      this.#inSlot.delete(id);
      this.#free.push(job.slot);
      job.resolve(fromReply(reply[i + 1] as string, reply[i + 2] as number, reply[i + 3] as ReplyKind));
    }
    while (this.#waiting.length > 0 && this.#free.length > 0) this.#dispatch(this.#waiting.shift() as Job);
    if (this.#inSlot.size === 0) w.unref();
  }

  #ensureWorker(): boolean {
    if (this.#worker !== undefined) return true;
    if (this.#failed) return false;
    const slots = new SharedArrayBuffer(SLOTS * SLOT_BYTES);
    let w: Worker;
    try {
      w = new Worker(new URL('./chunk-encoder-worker.ts', import.meta.url), { workerData: { slots, slotBytes: SLOT_BYTES } satisfies EncoderWorkerData });
    } catch {
      this.#failed = true;
      return false;
    }
    w.unref();
    w.on('message', (reply: EncodeReply) => this.#onReply(w, reply));
    const fail = (): void => {
      if (this.#worker !== w) return;
      this.#worker = undefined;
      this.#failed = true;
      this.#drainInline();
    };
    w.on('error', fail);
    w.on('exit', fail);
    this.#worker = w;
    this.#view = Buffer.from(slots);
    for (let i = SLOTS - 1; i >= 0; i--) this.#free.push(i);
    return true;
  }

  #drainInline(): void {
    const view = this.#view;
    const inSlot = [...this.#inSlot.values()];
    const waiting = [...this.#waiting];
    this.#inSlot.clear();
    this.#waiting.length = 0;
    this.#outbox = [];
    for (const j of inSlot) j.resolve(encodeChunk((view as Buffer).subarray(j.slot * SLOT_BYTES, j.slot * SLOT_BYTES + j.length), true));
    for (const j of waiting) j.resolve(encodeChunk(j.data, true));
  }
}

let shared: ChunkEncoder | undefined;

/** The process-wide encoder every recorder uses unless given its own. */
export function sharedChunkEncoder(): ChunkEncoder {
  shared ??= new ChunkEncoder();
  return shared;
}
