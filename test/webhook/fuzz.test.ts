/**
 * Fuzz: thousands of malformed AdmissionReviews (random mutations of a valid
 * one) against the running webhook. None may crash it or get a 5xx; a review
 * that is still valid after mutation must get a proper AdmissionReview answer
 * echoing its uid. The seed is printed so a failure can be replayed
 * (KUBETRAIL_FUZZ_SEED=n).
 */
import assert from 'node:assert/strict';
import https from 'node:https';
import { test } from 'node:test';
import { MemorySink } from '../../core/sinks/memory-sink.ts';
import { call, pod, review, startTestWebhook } from './support.ts';

/** mulberry32: a small deterministic PRNG. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function paths(v: Json, prefix: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
  out.push(prefix);
  if (Array.isArray(v)) v.forEach((x, i) => paths(x, [...prefix, i], out));
  else if (v !== null && typeof v === 'object') for (const [k, x] of Object.entries(v)) paths(x, [...prefix, k], out);
  return out;
}

function deep(n: number): Json {
  let v: Json = 'bottom';
  for (let i = 0; i < n; i++) v = i % 2 ? [v] : { d: v };
  return v;
}

test('thousands of malformed reviews: no crash, no 5xx, and valid ones still answered with their uid', async (t) => {
  const seed = Number(process.env['KUBETRAIL_FUZZ_SEED'] ?? Date.now() % 1_000_000);
  t.diagnostic(`fuzz seed ${seed}`);
  const rnd = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
  const sink = new MemorySink();
  const w = await startTestWebhook(sink, { webhook: { maxBodyBytes: 256 * 1024 } });
  t.after(() => w.close());
  const agent = new https.Agent({ keepAlive: true, maxSockets: 8 });
  t.after(() => agent.destroy());

  const randomValue = (): Json =>
    pick<() => Json>([
      () => null,
      () => true,
      () => -1,
      () => 1e308,
      () => 0.5,
      () => '',
      () => 'x'.repeat(Math.floor(rnd() * 300_000)),
      () => '\u0000\ud800\uffff',
      () => [],
      () => [1, 'a', null],
      () => ({}),
      () => ({ kind: 'Pod', metadata: 5 }),
      () => deep(Math.floor(rnd() * 400)),
      () => ({ username: 7, groups: 'agents', extra: { a: 'b' } }),
    ])();

  const mutate = (): { body: Buffer; uid: string | undefined } => {
    const base = review(pick([{}, { operation: 'UPDATE', oldObject: pod() }, { operation: 'DELETE', object: null, oldObject: pod() }, { operation: 'CONNECT', subResource: 'exec', object: { kind: 'PodExecOptions', command: ['sh'] } }])) as Json as { [k: string]: Json };
    const kind = rnd();
    if (kind < 0.55) {
      // Replace or delete values at 1-3 random paths.
      for (let i = 0, n = 1 + Math.floor(rnd() * 3); i < n; i++) {
        const all = paths(base).filter((p) => p.length > 0);
        const p = pick(all);
        let parent: any = base;
        for (const k of p.slice(0, -1)) parent = parent?.[k];
        if (parent === null || typeof parent !== 'object') continue;
        const last = p[p.length - 1] as string | number;
        if (rnd() < 0.3 && !Array.isArray(parent)) delete parent[last];
        else parent[last] = randomValue();
      }
      const req = base['request'] as { uid?: unknown } | undefined;
      return { body: Buffer.from(JSON.stringify(base)), uid: typeof req?.uid === 'string' ? req.uid : undefined };
    }
    const text = Buffer.from(JSON.stringify(base));
    if (kind < 0.7) return { body: text.subarray(0, Math.floor(rnd() * text.length)), uid: undefined }; // truncated JSON
    if (kind < 0.85) {
      // Invalid UTF-8 bytes spliced in (inside a string or between tokens).
      const at = Math.floor(rnd() * text.length);
      return { body: Buffer.concat([text.subarray(0, at), Buffer.from(pick([[0xff], [0xc3, 0x28], [0xed, 0xa0, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80]])), text.subarray(at)]), uid: undefined };
    }
    // Random bytes flipped.
    const b = Buffer.from(text);
    for (let i = 0, n = 1 + Math.floor(rnd() * 8); i < n; i++) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
    return { body: b, uid: undefined };
  };

  const N = 3000;
  const counts = new Map<number, number>();
  let answered = 0;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < N) {
      next++;
      const { body, uid } = mutate();
      const r = await call(`${w.url}/${rnd() < 0.5 ? 'validate' : 'mutate'}`, w.pki.ca.certPem, body, { agent });
      counts.set(r.status, (counts.get(r.status) ?? 0) + 1);
      assert.ok(r.status < 500, `5xx (${r.status}) for a fuzzed review (seed ${seed}): ${r.body.slice(0, 300)}`);
      assert.ok([200, 400, 413].includes(r.status), `unexpected status ${r.status}`);
      if (r.status === 200) {
        const res = r.json();
        assert.equal(res.kind, 'AdmissionReview');
        if (uid !== undefined) assert.equal(res.response.uid, uid);
        assert.equal(typeof res.response.allowed, 'boolean');
        answered++;
      } else {
        assert.equal(typeof r.json().message, 'string');
      }
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  t.diagnostic(`statuses: ${JSON.stringify(Object.fromEntries(counts))}; answered reviews: ${answered}`);
  assert.ok((counts.get(400) ?? 0) > N / 4, 'most fuzzed reviews are malformed');
  assert.ok(answered > 0, 'some mutations stay valid reviews and are answered');
  const bugs = w.logLines.filter((l) => /review failed unexpectedly|unexpected error before/.test(l));
  assert.deepEqual(bugs.slice(0, 3), [], 'no review took the internal-error path');
  // Still alive and correct afterwards.
  const ok = await call(`${w.url}/validate`, w.pki.ca.certPem, JSON.stringify(review({ userInfo: { username: 'alice', groups: [] } })));
  assert.equal(ok.status, 200);
  assert.equal(ok.json().response.allowed, true);
});
