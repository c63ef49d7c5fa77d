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
 * kafkajs has no option for either, so this module changes kafkajs's Encoder
 * in the thread that imports it (the producer worker does): its prototype
 * gets the growth and the parts kept by reference (below) whenever it is
 * imported; when it is imported before kafkajs's encoder module was loaded,
 * the module's export in Node's CommonJS cache is also replaced by a
 * constructor whose first buffer is unfilled (same prototype, `instanceof`
 * holds). A static `import ... from 'kafkajs'` anywhere in the same ES module
 * graph loads kafkajs first (Node links CommonJS imports before evaluating
 * any module), which is the producer worker's case. `encoderBackend` says
 * which applies.
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

/** kafkajs's Encoder class, as loaded (its prototype is changed below). */
const KafkajsEncoderClass = require(KAFKAJS_ENCODER_MODULE) as KafkajsEncoderClass;

/** kafkajs's Encoder as it was (zero-filled buffers, every write copied): the reference tests compare with. */
export const StockEncoder = function StockEncoder(this: KafkajsEncoder, initialSize = 511): void {
  this.buf = Buffer.alloc(KafkajsEncoderClass.nextPowerOfTwo(initialSize));
  this.offset = 0;
} as unknown as KafkajsEncoderClass;
Object.defineProperty(StockEncoder, 'prototype', {
  value: Object.create(Object.getPrototypeOf(KafkajsEncoderClass.prototype) as object, Object.getOwnPropertyDescriptors(KafkajsEncoderClass.prototype)),
});
Object.setPrototypeOf(StockEncoder, KafkajsEncoderClass);

/** Growth as kafkajs does it (next power of two past what is needed, written bytes copied), without the zero fill. */
function ensureAvailable(this: KafkajsEncoder, length: number): void {
  if (this.offset + length > this.buf.length) {
    const grown = Buffer.allocUnsafe(KafkajsEncoderClass.nextPowerOfTwo(this.offset + length));
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

/** Changes kafkajs's Encoder prototype: unfilled growth, parts kept by reference ({@link ropeMethods}), one join. */
function patchPrototype(): void {
  const proto = KafkajsEncoderClass.prototype as unknown as Record<string, unknown>;
  if (proto['size'] === ropeMethods.size) return;
  // Defaults for encoders built by kafkajs's own constructor (no parts yet).
  Object.defineProperty(proto, 'chunks', { value: undefined, writable: true, configurable: true });
  Object.defineProperty(proto, 'sealed', { value: 0, writable: true, configurable: true });
  Object.defineProperty(proto, 'ensureAvailable', { value: ensureAvailable, writable: true, configurable: true });
  for (const [k, value] of Object.entries(ropeMethods)) Object.defineProperty(proto, k, { value, writable: true, configurable: true });
  Object.defineProperty(proto, 'buffer', { get: ropeBuffer, configurable: true });
}

/** kafkajs's Encoder with an unfilled first buffer (its prototype, changed by {@link patchPrototype}). */
export const UnfilledEncoder = function UnfilledEncoder(this: RopeEncoder, initialSize = 511): void {
  this.buf = Buffer.allocUnsafe(KafkajsEncoderClass.nextPowerOfTwo(initialSize));
  this.offset = 0;
  this.chunks = undefined;
  this.sealed = 0;
} as unknown as KafkajsEncoderClass;
Object.defineProperty(UnfilledEncoder, 'prototype', { value: KafkajsEncoderClass.prototype });
// Statics (nextPowerOfTwo, sizeOfVarInt...) are inherited from kafkajs's class.
Object.setPrototypeOf(UnfilledEncoder, KafkajsEncoderClass);

function install(): 'unfilled' | 'prototype' {
  patchPrototype();
  if (!kafkajsLoaded) {
    const cached = require.cache[KAFKAJS_ENCODER_MODULE];
    if (cached !== undefined) {
      cached.exports = UnfilledEncoder;
      return 'unfilled';
    }
  }
  return 'prototype';
}

/**
 * What this thread's kafkajs uses: `unfilled` (this module's constructor and kafkajs's changed prototype) or
 * `prototype` (kafkajs was loaded first: its own constructor, whose first 512 bytes are zero-filled, and the changed prototype).
 */
export const encoderBackend: 'unfilled' | 'prototype' = install();
