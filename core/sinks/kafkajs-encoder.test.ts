import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { encoderBackend, KAFKAJS_ENCODER_MODULE, ROPE_MIN_BYTES, StockEncoder, type KafkajsEncoder, type KafkajsEncoderClass } from './kafkajs-encoder.ts';

const require = createRequire(import.meta.url);

/** kafkajs's own Encoder class, whose prototype the module changed. */
const PatchedEncoder = require(KAFKAJS_ENCODER_MODULE) as KafkajsEncoderClass;

/**
 * Encodes a produce request (v3, idempotent fields, 3 records of 15 KiB with
 * CloudEvents-like headers, fixed timestamps) with the kafkajs modules of
 * this process; returns the SHA-256 of its bytes. Also run, as source, in a
 * child process where kafkajs keeps its own Encoder.
 */
const ENCODE = `
const Produce = require('kafkajs/src/protocol/requests/produce/v3/request.js');
const Request = require('kafkajs/src/protocol/request.js');
const Long = require('kafkajs/src/utils/long.js');
const value = (i) => Buffer.from(JSON.stringify({ i, pad: 'x'.repeat(15 * 1024) }));
const messages = [0, 1, 2].map((i) => ({ key: 'k' + i, value: value(i), timestamp: 1700000000000 + i, headers: { ce_id: 'id-' + i, ce_type: 'io.kubetrail.v1.admission.review', 'content-type': 'application/json' } }));
const topicData = [{ topic: 't', partitions: [{ partition: 0, firstSequence: 7, messages }] }];
module.exports = async () => {
  const request = Produce({ acks: -1, timeout: 30000, producerId: Long.fromInt(42), producerEpoch: 1, compression: 0, topicData });
  const encoded = await Request({ correlationId: 9, clientId: 'kubetrail', request });
  return require('node:crypto').createHash('sha256').update(encoded.buffer).digest('hex');
};
`;

function encodeHere(): Promise<string> {
  const m = { exports: undefined as unknown as () => Promise<string> };
  new Function('module', 'require', ENCODE)(m, require);
  return m.exports();
}

test('kafkajs 2.2.4 gets the rope encoder on its own Encoder class', () => {
  assert.deepEqual(encoderBackend, { backend: 'rope' });
  const e = new PatchedEncoder();
  assert.ok(e instanceof PatchedEncoder);
  assert.equal((PatchedEncoder.prototype as unknown as { size: unknown }).size === (StockEncoder.prototype as unknown as { size: unknown }).size, false, 'the prototype was changed');
});

test('kafkajs loaded first (the producer worker: a static import links it first) still gets the changed prototype, same bytes', async () => {
  const stock = execFileSync(process.execPath, ['--input-type=commonjs', '-e', `${ENCODE}\nmodule.exports().then((h) => process.stdout.write(h));`], { cwd: import.meta.dirname, encoding: 'utf8' });
  const child = `
import { Kafka } from 'kafkajs';
import { encoderBackend } from ${JSON.stringify(new URL('./kafkajs-encoder.ts', import.meta.url).href)};
import { createRequire } from 'node:module';
const require = createRequire(${JSON.stringify(import.meta.url)});
const module = { exports: undefined };
new Function('module', 'require', ${JSON.stringify(ENCODE)})(module, require);
const Encoder = require('kafkajs/src/protocol/encoder.js');
const e = new Encoder().writeBytes(Buffer.alloc(${ROPE_MIN_BYTES}, 7));
process.stdout.write(JSON.stringify({ kafka: typeof Kafka, encoderBackend, held: Array.isArray(e.chunks), hash: await module.exports() }));
`;
  const out = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', child], { cwd: import.meta.dirname, encoding: 'utf8' })) as Record<string, unknown>;
  assert.deepEqual(out, { kafka: 'function', encoderBackend: { backend: 'rope' }, held: true, hash: stock });
});

test('the changed Encoder writes the same bytes as kafkajs own, through unfilled growth', () => {
  // Dirty Node's buffer pool so unfilled memory holds something other than zeros.
  for (let i = 0; i < 64; i++) Buffer.allocUnsafe(1000).fill(0xa5);
  type Writer = KafkajsEncoder & { writeInt32(v: number): void; writeString(v: string): void; writeBytes(v: Buffer): void; writeVarIntBytes(v: string): void; writeInt64(v: number): void };
  const write = (e: Writer): Buffer => {
    e.writeInt32(1);
    e.writeString('kubetrail');
    for (const n of [0, 1, 100, 600, 5000, 40_000]) e.writeBytes(Buffer.alloc(n, n % 251));
    e.writeVarIntBytes('x'.repeat(3000));
    e.writeInt64(123456789);
    return e.buffer;
  };
  const stock = write(new StockEncoder() as Writer);
  const unfilled = write(new PatchedEncoder() as Writer);
  assert.ok(stock.length > 45_000);
  assert.deepEqual(unfilled, stock);
});

test('a produce request is byte-identical to the one kafkajs encodes with its own Encoder', async () => {
  const here = await encodeHere();
  // A child process loads kafkajs without this module: the stock Encoder (and kafkajs's own CRC-32C).
  const stock = execFileSync(process.execPath, ['--input-type=commonjs', '-e', `${ENCODE}\nmodule.exports().then((h) => process.stdout.write(h));`], { cwd: import.meta.dirname, encoding: 'utf8' });
  assert.match(stock, /^[0-9a-f]{64}$/);
  assert.equal(here, stock);
  assert.notEqual(here, createHash('sha256').update('').digest('hex'));
});

test('large buffers and encoders are kept by reference and joined once, to the same bytes as kafkajs own', () => {
  type E = KafkajsEncoder & {
    writeInt8(v: number): E;
    writeInt32(v: number): E;
    writeBytes(v: Buffer | string | null): E;
    writeVarIntBytes(v: Buffer | string): E;
    writeEncoder(v: E): E;
    writeEncoderArray(v: E[]): E;
    writeArray(v: E[]): E;
    size(): number;
  };
  const big = (n: number, seed: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed) % 256));
  const build = (C: new () => KafkajsEncoder): { bytes: Buffer; size: number; again: Buffer; after: Buffer } => {
    const mk = (): E => new C() as E;
    const records = [0, 1, 2].map((i) => mk().writeInt8(i).writeVarIntBytes(big(ROPE_MIN_BYTES + i * 5000, i)).writeVarIntBytes('small').writeBytes(big(10, i)));
    const body = mk().writeInt32(7).writeEncoderArray(records);
    const batch = mk().writeInt32(1).writeEncoder(body);
    const outer = mk().writeBytes(batch.buffer).writeArray([mk().writeInt32(9), mk().writeBytes(big(ROPE_MIN_BYTES - 1, 9))]);
    const payload = mk().writeInt32(outer.size()).writeEncoder(outer);
    const size = payload.size();
    const bytes = Buffer.from(payload.buffer);
    const again = Buffer.from(payload.buffer);
    // Writing on after the bytes were taken extends them, and leaves what was taken as it was.
    payload.writeBytes(big(ROPE_MIN_BYTES * 2, 3)).writeInt8(5);
    return { bytes, size, again, after: Buffer.from(payload.buffer) };
  };
  const stock = build(StockEncoder);
  const rope = build(PatchedEncoder);
  assert.ok(stock.bytes.length > 3 * ROPE_MIN_BYTES);
  assert.equal(rope.size, stock.size);
  assert.equal(rope.size, stock.bytes.length);
  assert.deepEqual(rope.bytes, stock.bytes);
  assert.deepEqual(rope.again, stock.bytes);
  assert.deepEqual(rope.after, stock.after);
  assert.throws(() => (new PatchedEncoder() as E).writeEncoder({} as E), /instance of Encoder/);
  // The large value is held, not copied, until the bytes are asked for.
  const value = big(ROPE_MIN_BYTES, 1);
  const held = (new PatchedEncoder() as E).writeVarIntBytes(value) as E & { chunks?: Buffer[] };
  assert.ok(held.chunks?.includes(value));
  assert.equal(held.buffer.subarray(-value.length).compare(value), 0);
});
