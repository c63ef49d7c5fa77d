import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildCanonicalView, canonicalJson, canonicalJsonByWriter, type ViewHook } from './canonical.ts';

// RFC 8785 (JSON Canonicalization Scheme) §3.2.2-3.2.3 and Appendix B: the canonical form the chain hashes.
const JCS: { name: string; input: string; canonical: string }[] = [
  {
    name: '§3.2.2 example (numbers, string escapes, literals)',
    input: '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001], "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/", "literals": [null, true, false]}',
    canonical: '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}',
  },
  {
    name: '§3.2.3 sorting by UTF-16 code units',
    input: '{"\\u20ac": "Euro Sign", "\\r": "Carriage Return", "\\ufb33": "Hebrew Letter Dalet With Dagesh", "1": "One", "\\ud83d\\ude00": "Emoji: Grinning Face", "\\u0080": "Control", "\\u00f6": "Latin Small Letter O With Diaeresis"}',
    canonical: '{"\\r":"Carriage Return","1":"One","\u0080":"Control","ö":"Latin Small Letter O With Diaeresis","€":"Euro Sign","😀":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
  },
  // Appendix B number serialization samples (IEEE-754 hex bit patterns given there, as decimal literals here).
  { name: 'Appendix B: zero and minus zero', input: '[0, -0]', canonical: '[0,0]' },
  { name: 'Appendix B: min and max doubles', input: '[5e-324, -5e-324, 1.7976931348623157e308, -1.7976931348623157e308]', canonical: '[5e-324,-5e-324,1.7976931348623157e+308,-1.7976931348623157e+308]' },
  { name: 'Appendix B: the 2^53 boundary', input: '[9007199254740992, -9007199254740992, 295147905179352830000]', canonical: '[9007199254740992,-9007199254740992,295147905179352830000]' },
  { name: 'Appendix B: exponent switch points', input: '[1e21, 999999999999999900000, 1e-7, 0.000001, 9.999999999999997e22, 1e23]', canonical: '[1e+21,999999999999999900000,1e-7,0.000001,9.999999999999997e+22,1e+23]' },
  { name: 'Appendix B: shortest round trip', input: '[4.294967295, 4.294967296, 4.294967297, 333333333.3333332, 0.0000011, 1.1e-7]', canonical: '[4.294967295,4.294967296,4.294967297,333333333.3333332,0.0000011,1.1e-7]' },
];

for (const v of JCS) {
  test(`RFC 8785 vector: ${v.name}`, () => {
    const value: unknown = JSON.parse(v.input);
    assert.equal(canonicalJson(value), v.canonical);
    assert.equal(canonicalJsonByWriter(value), v.canonical);
    assert.equal(canonicalJson(JSON.parse(v.canonical)), v.canonical, 'canonical is a fixed point');
  });
}

class Thing {
  x = 1;
}

// Hooks that try to slip a non-canonical value past the view: whatever they return, the bytes hashed are canonical.
const HOSTILE: { name: string; hook: ViewHook }[] = [
  { name: 'returns objects with unsorted keys', hook: (v) => (typeof v === 'object' && v !== null && !Array.isArray(v) ? { zz: 1, aa: 2, ...v } : v) },
  { name: 'returns a toJSON member', hook: (v, k) => (k === 'spec' ? { toJSON: () => 'x', a: 1 } : v) },
  { name: 'returns non-finite numbers', hook: (v) => (typeof v === 'string' ? Number.NaN : v) },
  { name: 'returns integer-like keys out of order', hook: (v) => (typeof v === 'object' && v !== null && !Array.isArray(v) ? { b: 1, '10': 2, '9': 3 } : v) },
  { name: 'returns class instances and Dates', hook: (v, k) => (k === 'metadata' ? new Thing() : k === 'spec' ? new Date(0) : v) },
  { name: 'returns undefined members and holes', hook: (v) => (Array.isArray(v) ? [1, undefined, 2] : typeof v === 'object' && v !== null ? { ...v, u: undefined } : v) },
  { name: 'returns a __proto__ key', hook: (v, k) => (k === 'spec' ? JSON.parse('{"__proto__": {"a": 1}, "b": 2}') : v) },
  { name: 'returns a BigInt', hook: (v) => (typeof v === 'string' ? 10n : v) },
  { name: 'keeps everything (nothing to copy)', hook: (v) => v },
];

test('a view cannot be falsely trusted: whatever the hook of buildCanonicalView returns, the canonical JSON is what the plain writer gives (or the same refusal)', () => {
  const input = { spec: { containers: [{ name: 'c', env: [{ name: 'A', value: 'x' }] }], b: 'y' }, metadata: { name: 'n', labels: { z: '1', a: '2' } }, kind: 'Pod' };
  for (const h of HOSTILE) {
    const built = buildCanonicalView(structuredClone(input), h.hook);
    if (built === undefined) continue; // refused: the caller builds its value the ordinary way
    const event = { body: { object: built.value }, id: 'x' };
    let writer: string | Error;
    try {
      writer = canonicalJsonByWriter(event);
    } catch (err) {
      writer = err as Error;
    }
    if (writer instanceof Error) assert.throws(() => canonicalJson(event), h.name);
    else assert.equal(canonicalJson(event), writer, h.name);
  }
});

test('random values through random hooks: the view serializes exactly as the writer', () => {
  let seed = 42;
  const rnd = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const keys = ['a', 'b', 'env', 'Z', 'é', '_', 'name', 'value', 'x1', '1', '10'];
  const gen = (d: number): unknown => {
    const r = rnd();
    if (d > 4 || r < 0.3) return [1.5, -0, 'str', true, null, 1e21, 'eyJ'][Math.floor(rnd() * 7)];
    if (r < 0.6) return Array.from({ length: Math.floor(rnd() * 4) }, () => gen(d + 1));
    const o: Record<string, unknown> = {};
    for (let i = 0; i < rnd() * 5; i++) o[keys[Math.floor(rnd() * keys.length)] as string] = gen(d + 1);
    return o;
  };
  const hook: ViewHook = (v) => {
    const r = rnd();
    if (r < 0.1) return gen(3);
    if (r < 0.15 && typeof v === 'object' && v !== null && !Array.isArray(v)) return Object.fromEntries(Object.entries(v).reverse());
    return v;
  };
  for (let i = 0; i < 2000; i++) {
    const built = buildCanonicalView(gen(0), hook);
    if (built === undefined) continue;
    assert.equal(canonicalJson({ v: built.value }), canonicalJsonByWriter({ v: built.value }));
  }
});
