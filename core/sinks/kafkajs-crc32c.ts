/**
 * Native CRC-32C for kafkajs, in the producer thread (the only thread that
 * encodes record batches; kafka-producer-worker.ts imports this first).
 *
 * Why: kafkajs checksums every record batch in JavaScript, a byte at a time.
 * Measured figure (`npm run bench:kafkajs`, 2026-12-07): the producer
 * thread's CPU per 15 KiB admission event, kafkajs encoding a 30-event
 * produce request, is 142–164 µs with kafkajs's own CRC and 62–72 µs with
 * this one (kafkajs's own Encoder in both).
 *
 * How, and why it is a patch: kafkajs has no option for its checksum, so this
 * module puts @node-rs/crc32's `crc32c` into Node's CommonJS module cache
 * under the file name of kafkajs's `crc32C` module; kafkajs's record batch
 * encoder, which kafkajs loads lazily at the first produce request, then
 * requires this one. It is installed only on the kafkajs it was checked
 * against ({@link VERIFIED_KAFKAJS}); anything else (another kafkajs, no
 * prebuilt native binary, the encoder already loaded) leaves kafkajs's own
 * checksum, and {@link crc32cBackend} says which one is in use with the
 * reason. The producer thread reports it at start (log line and the
 * `kubetrail_kafkajs_backend_info` metric). A wrong checksum cannot go
 * unnoticed: the broker validates every batch's CRC (CORRUPT_MESSAGE).
 * kafkajs-layout.test.ts fails when kafkajs's files change.
 */
import Module, { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** The kafkajs release whose record batch encoder and crc32C module this was checked against. */
export const VERIFIED_KAFKAJS = '2.2.4';

/** kafkajs's checksum module as its record batch encoder requires it (`require('../crc32C')`). */
export const KAFKAJS_CRC32C_MODULE = require.resolve('kafkajs/src/protocol/recordBatch/crc32C/index.js');

/** Which CRC-32C kafkajs uses in this thread, and why when it is kafkajs's own. */
export type Crc32cBackend = { backend: 'native' } | { backend: 'kafkajs'; reason: string };

let impl: ((input: Buffer) => number) | undefined;

/** CRC-32C of `buf` as kafkajs's module returns it (an unsigned 32-bit number). */
function nativeCrc32c(buf: Buffer): number {
  return (impl as (input: Buffer) => number)(buf) >>> 0;
}

function install(): Crc32cBackend {
  const version = (require('kafkajs/package.json') as { version: string }).version;
  if (version !== VERIFIED_KAFKAJS) return { backend: 'kafkajs', reason: `kafkajs ${version} is not the verified ${VERIFIED_KAFKAJS}` };
  const cached = require.cache[KAFKAJS_CRC32C_MODULE];
  if (cached !== undefined) return cached.exports === nativeCrc32c ? { backend: 'native' } : { backend: 'kafkajs', reason: 'kafkajs loaded its checksum module first' };
  try {
    impl = (require('@node-rs/crc32') as { crc32c: (input: Buffer) => number }).crc32c;
  } catch {
    return { backend: 'kafkajs', reason: '@node-rs/crc32 has no binary for this platform' };
  }
  const m = new Module(KAFKAJS_CRC32C_MODULE);
  m.filename = KAFKAJS_CRC32C_MODULE;
  m.loaded = true;
  m.exports = nativeCrc32c;
  require.cache[KAFKAJS_CRC32C_MODULE] = m;
  return { backend: 'native' };
}

/** Which CRC-32C kafkajs uses in this thread. */
export const crc32cBackend: Crc32cBackend = install();
