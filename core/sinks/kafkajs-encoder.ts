/**
 * kafkajs's protocol encoder without zero-filled buffers, for the producer
 * thread.
 *
 * kafkajs builds every produce request through `Encoder`s: each starts with
 * a 512-byte `Buffer.alloc` (a zero-filled buffer of its own, several per
 * record: the record and each of its CloudEvents headers) and grows by
 * doubling with `Buffer.alloc`, and a request copies its record batch through
 * several of them (batch body, batch, partition, topic, request). For a 15 KiB
 * admission event that is about 150 KiB of zero-filled memory on the producer
 * thread. The zeros are never read: an Encoder exposes only
 * `buf.slice(0, offset)`, every byte below `offset` is written (or copied
 * from the previous buffer) before `offset` passes it, and nothing else in
 * kafkajs reads `buf`. So `Buffer.allocUnsafe` gives the same bytes on the
 * wire; small encoders then come out of Node's shared 8 KiB pool instead of
 * one allocation each.
 *
 * kafkajs has no option for this, so, like kafkajs-crc32c.ts, this module
 * replaces the encoder module's export in Node's CommonJS cache before
 * kafkajs is loaded (the producer worker imports it before kafkajs); kafkajs's
 * modules then construct this Encoder, whose prototype is kafkajs's own (same
 * methods, `instanceof` holds). If kafkajs was loaded first, only the growth
 * of kafkajs's Encoder is changed. `encoderBackend` says which.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** The encoder module as kafkajs's protocol modules require it (`require('../encoder')` and the like). */
export const KAFKAJS_ENCODER_MODULE = require.resolve('kafkajs/src/protocol/encoder.js');

/** What kafkajs's Encoder looks like from here. */
export interface KafkajsEncoder {
  buf: Buffer;
  offset: number;
  ensureAvailable(length: number): void;
  readonly buffer: Buffer;
}

/** kafkajs's Encoder class. */
export interface KafkajsEncoderClass {
  new (initialSize?: number): KafkajsEncoder;
  readonly prototype: KafkajsEncoder;
  nextPowerOfTwo(value: number): number;
}

const kafkajsLoaded = require.cache[require.resolve('kafkajs')] !== undefined;

/** kafkajs's own Encoder (zero-filled buffers). */
export const StockEncoder = require(KAFKAJS_ENCODER_MODULE) as KafkajsEncoderClass;

/** Growth as kafkajs does it (next power of two past what is needed, written bytes copied), without the zero fill. */
function ensureAvailable(this: KafkajsEncoder, length: number): void {
  if (this.offset + length > this.buf.length) {
    const grown = Buffer.allocUnsafe(StockEncoder.nextPowerOfTwo(this.offset + length));
    this.buf.copy(grown, 0, 0, this.offset);
    this.buf = grown;
  }
}

/** Buffers at least this long are kept by reference in a {@link RopeEncoder}, not copied. */
export const ROPE_MIN_BYTES = 2048;

/** The Encoder this module installs: kafkajs's, plus the parts already written that are kept by reference. */
interface RopeEncoder extends KafkajsEncoder {
  /** Written parts before `buf`, in order (kept by reference: never written to again). */
  chunks: Buffer[] | undefined;
  /** Their total length. */
  sealed: number;
}

/** Ends the current part: what `buf` holds so far joins `chunks`, and writing goes on in the rest of `buf`. */
function sealPart(e: RopeEncoder): void {
  if (e.offset === 0) return;
  (e.chunks ??= []).push(e.buf.subarray(0, e.offset));
  e.sealed += e.offset;
  e.buf = e.buf.subarray(e.offset);
  e.offset = 0;
}

function appendRef(e: RopeEncoder, b: Buffer): void {
  sealPart(e);
  (e.chunks ??= []).push(b);
  e.sealed += b.length;
}

function isEncoder(v: unknown): v is KafkajsEncoder {
  return v !== null && typeof v === 'object' && Buffer.isBuffer((v as { buf?: unknown }).buf);
}

/** Appends what encoder `v` holds: its parts by reference, small ones copied. */
function appendEncoder(e: RopeEncoder, v: KafkajsEncoder): void {
  const r = v as RopeEncoder;
  if (r.chunks === undefined || r.chunks.length === 0) {
    ropeMethods.writeBufferInternal.call(e, v.buf.subarray(0, v.offset));
    return;
  }
  sealPart(e);
  const chunks = (e.chunks ??= []);
  for (const c of r.chunks) chunks.push(c);
  if (r.offset > 0) chunks.push(r.buf.subarray(0, r.offset));
  e.sealed += r.sealed + r.offset;
}

/**
 * What changes from kafkajs's Encoder: a buffer of at least
 * {@link ROPE_MIN_BYTES} written into an encoder (a record's value, an
 * encoder written into its parent: record into batch, batch into partition,
 * partition into topic, topic into request) is kept by reference as the next
 * part instead of being copied, and the parts are joined once, when kafkajs
 * asks for the encoder's `buffer` (the record batch, for its CRC and its
 * bytes, and the whole request, for the socket). kafkajs copied a record
 * batch into each of those encoders in turn (about ten copies of every
 * record per request, each in a new buffer); now three. Nothing written is
 * written to again: kafkajs never writes to an encoder or a buffer after
 * writing it into another, and an encoder only writes past its `offset`.
 */
const ropeMethods = {
  writeBufferInternal(this: RopeEncoder, buffer: Buffer): void {
    const n = buffer.length;
    if (n >= ROPE_MIN_BYTES) {
      appendRef(this, buffer);
      return;
    }
    this.ensureAvailable(n);
    buffer.copy(this.buf, this.offset, 0);
    this.offset += n;
  },
  writeBytes(this: RopeEncoder & { writeInt32(v: number): unknown }, value: unknown): RopeEncoder {
    if (Buffer.isBuffer(value) && value.length >= ROPE_MIN_BYTES) {
      // kafkajs first grows its buffer to hold the bytes; kept by reference, they need no room.
      this.writeInt32(value.length);
      appendRef(this, value);
      return this;
    }
    return stockWriteBytes.call(this, value) as RopeEncoder;
  },
  writeEncoder(this: RopeEncoder, value: unknown): RopeEncoder {
    if (!isEncoder(value)) throw new Error('value should be an instance of Encoder');
    appendEncoder(this, value);
    return this;
  },
  writeEncoderArray(this: RopeEncoder, value: unknown): RopeEncoder {
    if (!Array.isArray(value) || !value.every(isEncoder)) throw new Error('all values should be an instance of Encoder[]');
    for (const v of value) appendEncoder(this, v);
    return this;
  },
  size(this: RopeEncoder): number {
    return this.sealed + this.offset;
  },
};

const stockWriteBytes = (StockEncoder.prototype as unknown as { writeBytes: (v: unknown) => unknown }).writeBytes;

/** The bytes written, as one buffer (the parts are joined once, and the encoder goes on from the joined buffer). */
function ropeBuffer(this: RopeEncoder): Buffer {
  if (this.chunks === undefined || this.chunks.length === 0) return this.buf.slice(0, this.offset);
  const parts = this.chunks;
  if (this.offset > 0) parts.push(this.buf.subarray(0, this.offset));
  const whole = Buffer.concat(parts, this.sealed + this.offset);
  this.chunks = undefined;
  this.sealed = 0;
  this.buf = whole;
  this.offset = whole.length;
  return whole;
}

const unfilledPrototype: KafkajsEncoder = Object.create(StockEncoder.prototype, {
  ensureAvailable: { value: ensureAvailable, writable: true, configurable: true },
  ...Object.fromEntries(Object.entries(ropeMethods).map(([k, value]) => [k, { value, writable: true, configurable: true }])),
  buffer: { get: ropeBuffer, configurable: true },
}) as KafkajsEncoder;

/** kafkajs's Encoder with unfilled buffers and parts kept by reference: kafkajs's methods and statics, {@link ensureAvailable}, {@link ropeMethods}. */
export const UnfilledEncoder = function UnfilledEncoder(this: RopeEncoder, initialSize = 511): void {
  this.buf = Buffer.allocUnsafe(StockEncoder.nextPowerOfTwo(initialSize));
  this.offset = 0;
  this.chunks = undefined;
  this.sealed = 0;
} as unknown as KafkajsEncoderClass;
Object.defineProperty(UnfilledEncoder, 'prototype', { value: unfilledPrototype });
Object.defineProperty(unfilledPrototype, 'constructor', { value: UnfilledEncoder, writable: true, configurable: true });
// Statics (nextPowerOfTwo, sizeOfVarInt...) are inherited from kafkajs's class.
Object.setPrototypeOf(UnfilledEncoder, StockEncoder);

function install(): 'unfilled' | 'growth-only' {
  if (!kafkajsLoaded) {
    const cached = require.cache[KAFKAJS_ENCODER_MODULE];
    if (cached !== undefined) {
      cached.exports = UnfilledEncoder;
      return 'unfilled';
    }
  }
  // kafkajs already holds its Encoder class: change its growth only.
  StockEncoder.prototype.ensureAvailable = ensureAvailable;
  return 'growth-only';
}

/** Which encoder kafkajs uses in this thread: `unfilled` (constructor and growth) or `growth-only` (kafkajs was loaded first). */
export const encoderBackend: 'unfilled' | 'growth-only' = install();
