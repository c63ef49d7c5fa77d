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

const unfilledPrototype: KafkajsEncoder = Object.create(StockEncoder.prototype, {
  ensureAvailable: { value: ensureAvailable, writable: true, configurable: true },
}) as KafkajsEncoder;

/** kafkajs's Encoder with unfilled buffers: kafkajs's methods and statics, {@link ensureAvailable}, and an unfilled first buffer. */
export const UnfilledEncoder = function UnfilledEncoder(this: KafkajsEncoder, initialSize = 511): void {
  this.buf = Buffer.allocUnsafe(StockEncoder.nextPowerOfTwo(initialSize));
  this.offset = 0;
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
