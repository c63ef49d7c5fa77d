/**
 * Native CRC-32C for kafkajs. Every produce request carries a record batch
 * whose CRC-32C kafkajs computes in JavaScript, one byte at a time: about
 * 370 MB/s on this project's 2-core test machine, 41 µs for one 15 KiB
 * admission event, on the producer thread. @node-rs/crc32 computes the same
 * checksum with the CPU's CRC instructions (SSE 4.2 / ARMv8): 3 µs.
 *
 * kafkajs has no option for its checksum, so this module puts the native
 * function into Node's CommonJS module cache under the file name of kafkajs's
 * own `crc32C` module; kafkajs's record batch encoder then requires this one.
 * That works as long as the encoder has not been loaded yet in the thread:
 * kafkajs loads it lazily, with the first produce request's version, so
 * importing this module anywhere before the first produce is enough (a static
 * `import 'kafkajs'` beside it runs kafkajs's entry first, which is fine).
 * kafka-client.ts and the producer worker import it. When the native module
 * cannot be loaded (no prebuilt binary for the platform) or the encoder was
 * already loaded, kafkajs keeps its own checksum: `crc32cBackend` says which
 * one is in use. A wrong checksum
 * cannot go unnoticed: the broker validates every batch's CRC and refuses a
 * mismatch with CORRUPT_MESSAGE.
 */
import Module, { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** kafkajs's checksum module as its record batch encoder requires it (`require('../crc32C')`). */
export const KAFKAJS_CRC32C_MODULE = require.resolve('kafkajs/src/protocol/recordBatch/crc32C/index.js');

function install(): 'native' | 'kafkajs' {
  const cached = require.cache[KAFKAJS_CRC32C_MODULE];
  if (cached !== undefined) return cached.exports === nativeCrc32c ? 'native' : 'kafkajs';
  let native: (input: Buffer, initialState?: number) => number;
  try {
    native = (require('@node-rs/crc32') as { crc32c: typeof native }).crc32c;
  } catch {
    return 'kafkajs';
  }
  impl = native;
  const m = new Module(KAFKAJS_CRC32C_MODULE);
  m.filename = KAFKAJS_CRC32C_MODULE;
  m.loaded = true;
  m.exports = nativeCrc32c;
  require.cache[KAFKAJS_CRC32C_MODULE] = m;
  return 'native';
}

let impl: ((input: Buffer, initialState?: number) => number) | undefined;

/** CRC-32C of `buf` as kafkajs's module returns it (an unsigned 32-bit number). */
function nativeCrc32c(buf: Buffer): number {
  return (impl as (input: Buffer) => number)(buf) >>> 0;
}

/** Which CRC-32C kafkajs uses in this thread. */
export const crc32cBackend: 'native' | 'kafkajs' = install();
