import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { test } from 'node:test';
// Before kafkajs loads its record batch encoder, as in the producer thread.
import { crc32cBackend, KAFKAJS_CRC32C_MODULE } from './kafkajs-crc32c.ts';
import 'kafkajs';

const require = createRequire(import.meta.url);

test('kafkajs gets the native CRC-32C, and it equals kafkajs own checksum on every input', () => {
  assert.deepEqual(crc32cBackend, { backend: 'native' });
  // What kafkajs's record batch encoder requires is the native function...
  const inUse = require(KAFKAJS_CRC32C_MODULE) as (b: Buffer) => number;
  const stockBody = require('kafkajs/src/protocol/recordBatch/crc32C/crc32C.js') as (b: Buffer) => number;
  const stock = (b: Buffer): number => stockBody(b) >>> 0;
  assert.equal(inUse.name, 'nativeCrc32c');
  // ...and it matches kafkajs's JavaScript implementation: standard check value, empty input, sizes around 8/16-byte strides, multi-KiB.
  // The standard check value has its top bit set: equal to 0xe3069283, not a negative int32, so the result is unsigned as
  // kafkajs's writeUInt32 needs (a range check after `>>> 0` could never fail).
  assert.equal(inUse(Buffer.from('123456789')), 0xe3069283);
  for (const n of [0, 1, 7, 8, 9, 15, 16, 17, 63, 1024, 15 * 1024 + 3, 256 * 1024]) {
    const b = randomBytes(n);
    assert.equal(inUse(b), stock(b), `length ${n}`);
  }
  // A view into a larger buffer (kafkajs encodes into slices) checks only its own bytes.
  const big = randomBytes(4096);
  const view = big.subarray(100, 3000);
  assert.equal(inUse(view), stock(Buffer.from(view)));
});

test('the record batch encoder kafkajs loaded uses it, and its batches carry the right checksum', async () => {
  const v0Path = require.resolve('kafkajs/src/protocol/recordBatch/v0/index.js');
  const { RecordBatch } = require(v0Path) as { RecordBatch: (o: { records: unknown[] }) => Promise<{ buffer: Buffer }> };
  // The encoder module's `require('../crc32C')` got the cached native module, not kafkajs's file.
  const children = require.cache[v0Path]?.children ?? [];
  const crcChild = children.find((c) => c.filename === KAFKAJS_CRC32C_MODULE);
  assert.ok(crcChild, 'the encoder required the crc32C module');
  assert.equal(crcChild.exports, require(KAFKAJS_CRC32C_MODULE));
  assert.equal(crcChild.exports.name, 'nativeCrc32c');
  const Record = require('kafkajs/src/protocol/recordBatch/record/v0/index.js') as (o: { value: Buffer }) => unknown;
  const stockBody = require('kafkajs/src/protocol/recordBatch/crc32C/crc32C.js') as (b: Buffer) => number;
  const batch = (await RecordBatch({ records: [Record({ value: randomBytes(2000) })] })).buffer;
  // firstOffset int64, then the batch as bytes (int32 length), partitionLeaderEpoch int32, magic int8, crc uint32, checksummed body.
  const crcAt = 8 + 4 + 4 + 1;
  assert.equal(batch.readUInt32BE(crcAt), stockBody(batch.subarray(crcAt + 4)) >>> 0);
});
