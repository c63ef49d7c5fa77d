/**
 * The kafkajs files kubetrail's changes to kafkajs depend on, pinned by
 * content. When kafkajs is upgraded this fails on purpose: re-check each
 * change against the new files (the tests of kafkajs-crc32c.ts and
 * kafkajs-encoder.ts, and whether kafkajs still needs them), then update the
 * hashes. At run time the modules also refuse any kafkajs but the verified
 * one and say so at start (log line, kubetrail_kafkajs_backend_info).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { VERIFIED_KAFKAJS } from './kafkajs-crc32c.ts';

const require = createRequire(import.meta.url);

const PINNED: [file: string, why: string, sha256: string][] = [
  ['kafkajs/src/protocol/encoder.js', 'kafkajs-encoder.ts replaces methods of its Encoder', '9977889e184a9e910e4f6098c36ec6a0ca36c183aa6ead0f24191b6aa1c9a777'],
  ['kafkajs/src/protocol/recordBatch/v0/index.js', "kafkajs-crc32c.ts relies on its lazy require('../crc32C')", '6d6b63a8959ff0b9ea1198b2d4ec0af940a4c92d5c793bb592310ab46f99df30'],
  ['kafkajs/src/protocol/recordBatch/crc32C/index.js', 'kafkajs-crc32c.ts takes its place in the module cache', '0826ea7387f25400b1a24bacdbba85db9c1f2e932f168874728a9ecaf1eb2379'],
  ['kafkajs/src/network/requestQueue/index.js', 'the producer thread drops the TimeoutNegativeWarning its negative setTimeout causes (kafka-producer.ts)', 'b55986089c14f8f7bfc377922e2e65b3e4c1e7c7af2752d3b10a75dfe9e9260c'],
];

test('kafkajs is the release the changes were verified against, and the files they depend on are unchanged', () => {
  assert.equal((require('kafkajs/package.json') as { version: string }).version, VERIFIED_KAFKAJS);
  for (const [file, why, sha256] of PINNED) {
    const actual = createHash('sha256').update(readFileSync(require.resolve(file))).digest('hex');
    assert.equal(actual, sha256, `${file} changed (${why}): re-check that change against the new kafkajs, then update this hash`);
  }
});
