import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { inflateRawSync } from 'node:zlib';
import { ChunkEncoder, encodeChunk, MIN_COMPRESS_BYTES, SLOT_BYTES, type EncodeResult } from './chunk-encoder.ts';

function decode(r: EncodeResult): Buffer {
  const raw = Buffer.from(r.chunk.data, 'base64');
  return r.chunk.encoding === 'deflate-raw' ? inflateRawSync(raw) : raw;
}

const logLines = Buffer.from('2026-11-26T10:00:00Z INFO GET /api/v1/pods 200\n'.repeat(700));

test('a chunk is stored deflated only when that saves at least 10%, and decodes to the same bytes', () => {
  const cases: { name: string; data: Buffer; compress: boolean; encoding: 'deflate-raw' | undefined; incompressible: boolean }[] = [
    { name: 'log lines', data: logLines, compress: true, encoding: 'deflate-raw', incompressible: false },
    { name: 'random bytes', data: randomBytes(32 * 1024), compress: true, encoding: undefined, incompressible: true },
    { name: 'below the minimum size', data: logLines.subarray(0, MIN_COMPRESS_BYTES - 1), compress: true, encoding: undefined, incompressible: false },
    { name: 'compression off', data: logLines, compress: false, encoding: undefined, incompressible: false },
  ];
  for (const c of cases) {
    const r = encodeChunk(c.data, c.compress);
    assert.equal(r.chunk.encoding, c.encoding, c.name);
    assert.equal(r.incompressible, c.incompressible, c.name);
    if (c.encoding) assert.equal(r.chunk.size, c.data.length, c.name);
    assert.deepEqual(decode(r), c.data, c.name);
  }
});

test('the worker encodes many chunks, more than it has slots, each to its own bytes', async () => {
  const enc = new ChunkEncoder();
  try {
    // Views into one larger buffer, as the recorder hands them over; 100 chunks > 32 slots.
    const big = Buffer.concat(Array.from({ length: 100 }, (_, i) => Buffer.from(`chunk ${i} `.repeat(4000)).subarray(0, 30000)));
    const chunks = Array.from({ length: 100 }, (_, i) => big.subarray(i * 30000, (i + 1) * 30000));
    const results = await Promise.all(chunks.map((c) => enc.encode(c, true)));
    results.forEach((r, i) => {
      assert.equal(r.chunk.encoding, 'deflate-raw');
      assert.deepEqual(decode(r), chunks[i]);
    });
    assert.equal(enc.pending, 0);
  } finally {
    await enc.close();
  }
});

test('chunks larger than a slot, and chunks pending when the encoder closes, are encoded inline', async () => {
  const enc = new ChunkEncoder();
  const large = Buffer.concat([logLines, logLines, logLines]);
  assert.ok(large.length > SLOT_BYTES);
  const inline = enc.encode(large, true);
  assert.ok(!(inline instanceof Promise), 'a chunk over the slot size is encoded synchronously');
  assert.deepEqual(decode(inline), large);
  const pending = enc.encode(logLines, true);
  await enc.close();
  assert.deepEqual(decode(await pending), logLines);
  // After close the encoder keeps working, inline.
  assert.deepEqual(decode(await enc.encode(logLines, true)), logLines);
});
