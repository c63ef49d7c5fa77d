import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compileMaskingPolicy, maskReplacement, patternsFor, StreamMasker } from './stream.ts';
import { PolicyError } from '../policy/errors.ts';
import type { Actor } from '../events/model.ts';

const doc = (spec: Record<string, unknown>): unknown => ({ apiVersion: 'kubetrail.io/v1alpha1', kind: 'MaskingPolicy', metadata: { name: 'm' }, spec });

// Test secrets built at run time so no secret-looking literal sits in the repository.
const AWS = 'AKIA' + 'Z'.repeat(4) + '7'.repeat(12);
const JWT = ['eyJ' + 'hbGciOiJSUzI1NiJ9', 'eyJ' + 'zdWIiOiJhZ2VudCJ9xx', 'c2lnbmF0dXJlLXNpZ25hdHVyZQ'].join('.');
const PEM = ['-----BEGIN RSA PRIVATE KEY-----', 'MIIBOgIBAAJBAK' + 'x'.repeat(60), 'y'.repeat(40) + '==', '-----END RSA PRIVATE KEY-----'].join('\n');
const SA = 'ZXlK' + 'aGJHY2lPaUpTVXpJMU5pSXNJbXRwWkNJNklp'.repeat(3);

function run(masker: StreamMasker, chunks: Buffer[]): string {
  const out = chunks.map((c) => masker.push(c));
  out.push(masker.flush());
  return Buffer.concat(out).toString('latin1');
}

test('every built-in secret is masked wherever the stream is split, and nothing else changes', () => {
  const policy = compileMaskingPolicy(doc({}), 'test.yaml');
  const pats = patternsFor([policy], { namespace: 'x', user: { username: 'u', groups: [], authn: 'token' } }, 'stdout');
  const cases = [
    { name: 'aws-access-key', secret: AWS },
    { name: 'jwt', secret: JWT },
    { name: 'pem-private-key', secret: PEM },
    { name: 'k8s-sa-token', secret: SA },
  ];
  for (const c of cases) {
    // Filler on both sides so that some cuts give frames longer than the masker's 64-byte tail window.
    const pad = 'filler text; '.repeat(8);
    const text = `${pad}before ${c.secret} after ${pad}\n`;
    const expected = `${pad}before ${maskReplacement(c.name)} after ${pad}\n`;
    const buf = Buffer.from(text, 'latin1');
    for (let cut = 0; cut <= buf.length; cut++) {
      const got = run(new StreamMasker(pats), [buf.subarray(0, cut), buf.subarray(cut)]);
      assert.equal(got, expected, `${c.name} split at ${cut}`);
    }
    // one byte per frame: the worst case
    const bytes = [...buf].map((b) => Buffer.from([b]));
    assert.equal(run(new StreamMasker(pats), bytes), expected, `${c.name} byte by byte`);
  }
});

test('text without secrets passes through unchanged and is not held back', () => {
  const pats = patternsFor([compileMaskingPolicy(doc({}), 't')], { namespace: 'x', user: { username: 'u', groups: [], authn: 'token' } }, 'stdout');
  const m = new StreamMasker(pats);
  const chunk = Buffer.from('total 0\ndrwxr-xr-x 2 root root 40 ls\n');
  assert.equal(m.push(chunk).toString(), chunk.toString());
  assert.equal(m.pendingBytes, 0);
  // A single keystroke echo that is not a secret prefix is released at once.
  assert.equal(m.push(Buffer.from('l')).toString(), 'l');
  // One that could start a secret ("A" of AKIA) is held until flush.
  assert.equal(m.push(Buffer.from('A')).length, 0);
  assert.equal(m.flush().toString(), 'A');
});

test('custom patterns with startsWith are masked across frames', () => {
  const p = compileMaskingPolicy(doc({ builtins: [], patterns: [{ name: 'acme', regex: 'acme_[a-z0-9]{16}', startsWith: ['acme_'], maxLength: 21 }] }), 't');
  const m = new StreamMasker(p.patterns);
  assert.equal(run(m, [Buffer.from('key=acme_0123'), Buffer.from('456789abcdef done')]), 'key=[masked:acme] done');
  assert.equal(m.counts.get('acme'), 1);
});

test('bad MaskingPolicy documents are rejected with field paths', () => {
  const cases = [
    { spec: { builtins: ['nope'] }, path: 'spec.builtins.0' },
    { spec: { patterns: [{ name: 'x', regex: '(' }] }, path: 'spec.patterns.0.regex' },
    { spec: { patterns: [{ name: 'x', regex: 'a*' }] }, path: 'spec.patterns.0.regex' },
    { spec: { streams: ['stdout', 'video'] }, path: 'spec.streams.1' },
    { spec: { unknownField: 1 }, path: 'spec' },
  ];
  for (const c of cases) {
    assert.throws(
      () => compileMaskingPolicy(doc(c.spec), 'bad.yaml'),
      (e: unknown) => e instanceof PolicyError && e.issues.some((i) => i.path === c.path && i.file === 'bad.yaml'),
      JSON.stringify(c.spec),
    );
  }
});

test('policies select by namespace and stream', () => {
  const p = compileMaskingPolicy(doc({ match: { namespaces: ['prod'] }, streams: ['stdout'] }), 't');
  const u: Actor = { username: 'u', groups: [], authn: 'token' };
  assert.ok(patternsFor([p], { namespace: 'prod', user: u }, 'stdout').length > 0);
  assert.equal(patternsFor([p], { namespace: 'dev', user: u }, 'stdout').length, 0);
  assert.equal(patternsFor([p], { namespace: 'prod', user: u }, 'stdin').length, 0);
});
