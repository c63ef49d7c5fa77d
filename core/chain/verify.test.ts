import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { test } from 'node:test';
import { ChainSealer } from './sealer.ts';
import { GENESIS_HASH } from './hash.ts';
import { keyIdOf } from './signing.ts';
import { ChainVerifier, type VerifyRecord } from './verify.ts';

const { privateKey, publicKey } = generateKeyPairSync('ed25519');
const signer = { privateKey, publicKey: createPublicKey(privateKey), keyId: keyIdOf(publicKey), origin: 'dev' as const, publicKeyFile: undefined };

/** Lines of seq 1..n of one chain (no checkpoints). */
function chain(n: number): string[] {
  const s = new ChainSealer({ source: { cluster: 'c', component: 'proxy', instance: 'i' }, head: { seq: 0, hash: GENESIS_HASH }, signer, checkpointEvery: 1_000_000 });
  return Array.from({ length: n }, (_, i) => s.seal({ type: 'api.request', body: { verb: 'get', method: 'GET', path: `/x/${i}`, status: 200, latencyMs: 1, bytesIn: 0, bytesOut: 0 } }).line);
}

const lines = chain(12);
/** Records from `[stream, seq]` pairs. */
const recs = (pairs: [string, number][]): VerifyRecord[] =>
  pairs.map(([stream, seq], i) => ({ stream, position: String(i), line: lines[seq - 1] as string, format: 'native', value: lines[seq - 1] as string }));

// Two partitions of one source, as on a topic where events spread by key: p0 odd, p1 even seqs.
const BASE: [string, number][] = [
  ['p0', 1], ['p1', 2], ['p0', 3], ['p1', 4], ['p0', 5], ['p1', 6], ['p0', 7], ['p1', 8],
];

const CASES: { name: string; extra: [string, number][]; then?: [string, number][]; replayed: boolean; duplicates: number }[] = [
  { name: 'a re-send in one partition through to its newest event, then new events', extra: [['p0', 5], ['p0', 7]], then: [['p0', 9], ['p1', 10]], replayed: false, duplicates: 2 },
  { name: 'a re-send of the newest event alone', extra: [['p1', 8]], replayed: false, duplicates: 1 },
  { name: 'old events copied in that stop short of the newest, then new events', extra: [['p0', 3], ['p0', 5]], then: [['p0', 9], ['p1', 10]], replayed: true, duplicates: 2 },
  { name: 'old events copied in at the very end', extra: [['p1', 2], ['p1', 4]], replayed: true, duplicates: 2 },
  { name: 'copies out of the stream\'s own order', extra: [['p0', 7], ['p0', 5]], replayed: true, duplicates: 2 },
  { name: 'a copy that lands in another partition than its original', extra: [['p1', 7]], replayed: true, duplicates: 1 },
];

for (const c of CASES) {
  test(`verify on partitions: ${c.name} is ${c.replayed ? 'a replay' : 'counted as duplicates'}`, () => {
    const v = new ChainVerifier({ publicKeys: [publicKey], allowHeadGap: false });
    for (const r of recs([...BASE, ...c.extra, ...(c.then ?? [])])) v.add(r);
    const report = v.finish();
    assert.deepEqual(report.issues.map((i) => i.kind), c.replayed ? ['replayed'] : [], JSON.stringify(report.issues));
    assert.equal(report.sources[0]?.duplicates, c.duplicates);
  });
}

test('a verifier without any key is a TypeError at construction', () => {
  assert.throws(() => new ChainVerifier({}), TypeError);
});
