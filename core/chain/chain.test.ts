import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { test } from 'node:test';
import { canonicalJson, canonicalJsonByWriter, CanonicalizationError } from './canonical.ts';
import { computeHash, GENESIS_HASH, seal } from './hash.ts';
import { ChainSealer } from './sealer.ts';
import { keyIdOf, signCheckpoint, verifyCheckpoint, type SigningKey } from './signing.ts';
import { SinkError } from '../sinks/errors.ts';
import type { EventDraft, KubetrailEvent } from '../events/model.ts';

const CANONICAL: [string, unknown, string][] = [
  ['keys sorted by UTF-16 code units', { b: 1, a: 2, B: 3, é: 4 }, '{"B":3,"a":2,"b":1,"é":4}'],
  ['undefined members omitted, undefined array items null', { a: undefined, b: [undefined, 1] }, '{"b":[null,1]}'],
  ['numbers as ECMAScript writes them', { n: [1e21, 0.1, -0, 5e-7, 100] }, '{"n":[1e+21,0.1,0,5e-7,100]}'],
  ['strings escaped like JSON.stringify', { s: 'a"b\\c\n\u0001' }, '{"s":"a\\"b\\\\c\\n\\u0001"}'],
  ['nested objects and arrays without whitespace', { z: { y: [{ b: true, a: null }] } }, '{"z":{"y":[{"a":null,"b":true}]}}'],
  ['Date through toJSON', { d: new Date(0) }, '{"d":"1970-01-01T00:00:00.000Z"}'],
];

for (const [name, value, expected] of CANONICAL) {
  test(`canonical JSON: ${name}`, () => assert.equal(canonicalJson(value), expected));
}

const REFUSED: [string, unknown, string][] = [
  ['NaN', { a: { b: [1, NaN] } }, 'a.b[1]'],
  ['Infinity', { x: Infinity }, 'x'],
  ['BigInt', { big: 1n }, 'big'],
];

for (const [name, value, path] of REFUSED) {
  test(`canonical JSON refuses ${name} and names where it is`, () => {
    assert.throws(() => canonicalJson(value), (err: unknown) => err instanceof CanonicalizationError && err.path === path);
  });
}

test('canonical JSON refuses a cycle instead of recursing forever', () => {
  const o: Record<string, unknown> = {};
  o['self'] = o;
  assert.throws(() => canonicalJson(o), CanonicalizationError);
});

const draft = (i: number): EventDraft<'api.request'> => ({
  type: 'api.request',
  actor: { username: 'u', groups: [], authn: 'token' },
  body: { verb: 'get', method: 'GET', path: `/api/v1/x/${i}`, status: 200, latencyMs: 1, bytesIn: 0, bytesOut: 1 },
});

function key(): SigningKey {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return { privateKey, publicKey, keyId: keyIdOf(publicKey), origin: 'dev', publicKeyFile: undefined };
}

test('a sealed line is the canonical JSON of the event, and its hash recomputes', () => {
  const s = new ChainSealer({ source: { component: 'webhook', instance: 'i', cluster: 'c' }, head: { seq: 0, hash: GENESIS_HASH } });
  const a = s.seal(draft(1));
  const b = s.seal(draft(2));
  assert.equal(a.line, canonicalJson(a.event));
  assert.equal(computeHash(a.event), a.event.chain?.hash);
  assert.deepEqual([a.event.chain?.seq, a.event.chain?.prev], [1, GENESIS_HASH]);
  assert.deepEqual([b.event.chain?.seq, b.event.chain?.prev], [2, a.event.chain?.hash]);
  assert.match(a.event.id, /^[0-9a-f]{8}-[0-9a-f]{4}-7/);
});

test('the hash marker is found even when the body holds its own "chain" member', () => {
  const e = { apiVersion: 'kubetrail.io/v1', id: 'x', time: 't', type: 'api.request', source: { component: 'proxy', instance: 'i', cluster: 'c' }, body: { chain: { hash: '' } } } as unknown as KubetrailEvent;
  const { event, line } = seal(e, 1, GENESIS_HASH);
  assert.equal(computeHash(JSON.parse(line) as KubetrailEvent), event.chain?.hash);
});

const INVALID: [string, unknown][] = [
  ['an unknown type', { type: 'nope', body: {} }],
  ['the reserved checkpoint type', { type: 'chain.checkpoint', body: {} }],
  ['a missing body', { type: 'api.request' }],
  ['a NaN in the body', { type: 'api.request', body: { latencyMs: NaN } }],
];

for (const [name, bad] of INVALID) {
  test(`a draft with ${name} is refused with SINK_ERR_INVALID_EVENT and consumes no sequence number`, () => {
    const s = new ChainSealer({ source: { component: 'webhook', instance: 'i', cluster: 'c' }, head: { seq: 7, hash: 'a'.repeat(64) } });
    assert.throws(() => s.seal(bad as EventDraft), (err: unknown) => err instanceof SinkError && err.code === 'SINK_ERR_INVALID_EVENT');
    assert.equal(s.seal(draft(1)).event.chain?.seq, 8);
  });
}

test('prepare() without commit() leaves the chain where it was', () => {
  const s = new ChainSealer({ source: { component: 'webhook', instance: 'i', cluster: 'c' }, head: { seq: 0, hash: GENESIS_HASH } });
  s.prepare(draft(1));
  const p = s.prepare(draft(2));
  assert.equal(p.sealed.event.chain?.seq, 1);
  p.commit();
  assert.equal(s.head.seq, 1);
});

test('checkpoints come every N events and sign the last link; the signature verifies only with the right key', () => {
  const k = key();
  const s = new ChainSealer({ source: { component: 'proxy', instance: 'inst', cluster: 'c' }, head: { seq: 0, hash: GENESIS_HASH }, signer: k, checkpointEvery: 3 });
  let last;
  for (let i = 0; i < 3; i++) last = s.seal(draft(i));
  assert.equal(s.checkpointDue, true);
  const cp = s.checkpoint() as { event: KubetrailEvent<'chain.checkpoint'> };
  assert.deepEqual([cp.event.body.seq, cp.event.body.hash, cp.event.chain?.seq], [3, last?.event.chain?.hash, 4]);
  assert.equal(verifyCheckpoint(k.publicKey, 'inst', 3, cp.event.body.hash, cp.event.body.signature), true);
  assert.equal(verifyCheckpoint(k.publicKey, 'other', 3, cp.event.body.hash, cp.event.body.signature), false, 'bound to the instance');
  assert.equal(verifyCheckpoint(key().publicKey, 'inst', 3, cp.event.body.hash, cp.event.body.signature), false, 'another key');
  assert.equal(s.checkpoint(), undefined, 'nothing new since the last checkpoint');
  assert.equal(signCheckpoint(k, 'inst', 3, cp.event.body.hash), cp.event.body.signature, 'Ed25519 is deterministic');
});

const FAST_SLOW: [string, unknown, string][] = [
  ['integer-like keys sort as strings, not in engine order', { b: { '10': 1, '9': 2, a: 3 } }, '{"b":{"10":1,"9":2,"a":3}}'],
  ['a __proto__ key is kept as a member', JSON.parse('{"__proto__":{"x":1},"a":2}') as unknown, '{"__proto__":{"x":1},"a":2}'],
  ['functions and symbols are dropped like undefined', { a: () => 1, b: Symbol('s'), c: [() => 1] }, '{"c":[null]}'],
];

for (const [name, value, expected] of FAST_SLOW) {
  test(`canonical JSON: ${name}`, () => assert.equal(canonicalJson(value), expected));
}

// The fast path (shares in-order objects, copies out-of-order ones) must give
// exactly what the plain writer gives, including where it hands over to it.
class Tagged {
  z = 1;
  a = 2;
}
const EQUIVALENT: [string, unknown][] = [
  ['sorted object holding an unsorted one', { a: 1, b: { d: 1, c: 2 }, c: [{ y: 1, x: 2 }] }],
  ['unsorted object with integer-like keys below a sorted one', { a: { b: 1, '2': 3, '10': 4 } }],
  ['sorted object with integer-like keys and a changed member', { '1': { z: 1, a: 2 }, a: 1 }],
  ['__proto__ key next to an out-of-order member', JSON.parse('{"__proto__":{"z":1,"a":2},"b":1}') as unknown],
  ['Date inside a sorted object', { a: new Date(0), b: 1 }],
  ['own toJSON member', { a: 1, toJSON: () => ({ z: 1, y: 2 }) }],
  ['class instance', { a: new Tagged() }],
  ['null-prototype object', Object.assign(Object.create(null) as object, { b: 1, a: { d: 1, c: 2 } })],
  ['Buffer', { a: Buffer.from('hi') }],
  ['array with holes, undefined and -0', { a: [1, , undefined, -0] }], // eslint-disable-line no-sparse-arrays
  ['strings needing escapes and lone surrogates', { 'k"\n': 'a\u2028\ud800b', é: '\u0000' }],
  ['top-level array and scalars', [{ b: 1, a: 2 }, 'x', 1.5, true, null]],
];
for (const [name, value] of EQUIVALENT) {
  test(`canonical JSON fast path equals the writer: ${name}`, () => assert.equal(canonicalJson(value), canonicalJsonByWriter(value)));
}

test('canonical JSON fast path equals the writer on random values', () => {
  let seed = 12345;
  const rnd = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const KEYS = ['a', 'b', 'kind', 'metadata', 'spec', 'Z', '0', '10', '9', 'é', 'name', 'value', '__proto__', '_x'];
  const gen = (depth: number): unknown => {
    const r = rnd(depth > 3 ? 5 : 8);
    if (r === 0) return rnd(1000) - 500;
    if (r === 1) return `s${rnd(100)}\n"`.slice(0, rnd(5));
    if (r === 2) return rnd(2) === 0;
    if (r === 3) return null;
    if (r === 4) return rnd(2) === 0 ? undefined : 0.5;
    if (r === 5) return Array.from({ length: rnd(4) }, () => gen(depth + 1));
    const o: Record<string, unknown> = {};
    for (let i = rnd(6); i > 0; i--) Object.defineProperty(o, KEYS[rnd(KEYS.length)] as string, { value: gen(depth + 1), enumerable: true, writable: true, configurable: true });
    return o;
  };
  for (let i = 0; i < 3000; i++) {
    const v = gen(0);
    assert.equal(canonicalJson(v), canonicalJsonByWriter(v), JSON.stringify(v));
  }
});

test('a sealed event is built with its members in canonical order (nothing to copy)', () => {
  const s = new ChainSealer({ source: { instance: 'i', component: 'webhook', cluster: 'c' }, head: { seq: 0, hash: GENESIS_HASH } });
  const a = s.seal({ ...draft(1), correlation: { request: 'r' }, target: { version: 'v1', resource: 'pods', name: 'p' } });
  const keys = Object.keys(a.event);
  assert.deepEqual(keys, [...keys].sort());
  assert.deepEqual(Object.keys(a.event.source), ['cluster', 'component', 'instance']);
  assert.equal(a.line, canonicalJsonByWriter(a.event));
});

test('a value marked as a canonical view is taken as it is by the fast path, never by the writer', async () => {
  const { markCanonicalView } = await import('./canonical.ts');
  // A deliberately false mark (keys out of order) shows the fast path does not walk a marked value again...
  const unsorted = { b: 1, a: 2 };
  markCanonicalView(unsorted);
  assert.equal(canonicalJson({ z: unsorted, y: 0 }), '{"y":0,"z":{"b":1,"a":2}}');
  // ...and the writer (what verify's reference is checked against) ignores marks.
  assert.equal(canonicalJsonByWriter({ z: unsorted, y: 0 }), '{"y":0,"z":{"a":2,"b":1}}');
});
