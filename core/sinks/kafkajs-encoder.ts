/**
 * kafkajs's protocol encoder, copying less, in the producer thread
 * (kafka-producer-worker.ts imports this).
 *
 * Why: kafkajs builds every produce request through `Encoder`s, each
 * starting from a zero-filled 512-byte buffer and growing by doubling with
 * `Buffer.alloc`, and a request copies each record batch through about ten
 * of them (record, batch body, batch, partition, topic, request). Measured
 * figure (`npm run bench:kafkajs`, 2026-12-07): the producer thread's CPU per
 * 15 KiB admission event, kafkajs encoding a 30-event produce request with
 * the native CRC-32C, is 62–72 µs with kafkajs's Encoder and 23–28 µs with
 * this one.
 *
 * How, and why it is a patch: kafkajs has no option for its encoder, so this
 * module changes kafkajs's `Encoder.prototype` (kafkajs's own constructor
 * stays: the worker's static `import 'kafkajs'` loads kafkajs before any
 * module body runs). Growth is unfilled (`allocUnsafe`: an Encoder exposes
 * only what it wrote), and buffers of {@link ROPE_MIN_BYTES} or more written
 * into an encoder are kept by reference and joined once, when kafkajs asks
 * for the bytes. It is installed only on the kafkajs it was checked against
 * (VERIFIED_KAFKAJS) whose Encoder has every method it replaces;
 * otherwise kafkajs's Encoder stays and {@link encoderBackend} says why. The
 * producer thread reports it at start (log line and the
 * `kubetrail_kafkajs_backend_info` metric). kafkajs-encoder.test.ts checks
 * the bytes against stock kafkajs in a child process; kafkajs-layout.test.ts
 * fails when kafkajs's files change.
 */
import { createRequire } from 'node:module';
import { VERIFIED_KAFKAJS } from './kafkajs-crc32c.ts';

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

/** kafkajs's Encoder class, as loaded (its prototype is changed by {@link install}). */
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

/** What {@link install} replaces on kafkajs's Encoder: a kafkajs without one of them is left alone. */
const REPLACED = ['ensureAvailable', 'writeBufferInternal', 'writeBytes', 'writeEncoder', 'writeEncoderArray', 'size', 'buffer'] as const;

/** Which Encoder kafkajs uses in this thread, and why when it is kafkajs's own. */
export type EncoderBackend = { backend: 'rope' } | { backend: 'kafkajs'; reason: string };

function install(): EncoderBackend {
  const version = (require('kafkajs/package.json') as { version: string }).version;
  if (version !== VERIFIED_KAFKAJS) return { backend: 'kafkajs', reason: `kafkajs ${version} is not the verified ${VERIFIED_KAFKAJS}` };
  const proto = KafkajsEncoderClass.prototype as unknown as Record<string, unknown>;
  const missing: string[] = REPLACED.filter((k) => Object.getOwnPropertyDescriptor(proto, k) === undefined);
  if (typeof KafkajsEncoderClass.nextPowerOfTwo !== 'function') missing.push('nextPowerOfTwo');
  if (missing.length > 0) return { backend: 'kafkajs', reason: `kafkajs's Encoder has no ${missing.join(', ')}` };
  patchPrototype();
  return { backend: 'rope' };
}

/** Which Encoder kafkajs uses in this thread. */
export const encoderBackend: EncoderBackend = install();
