/**
 * `npm run bench:canonical`: cost of the hash chain's canonical JSON
 * (core/chain/canonical.ts) per event, on a realistic `admission.review`
 * event carrying a 15 KiB Pod (the webhook's case: the object as parsed from
 * the AdmissionReview) and on the 1 KiB `api.request` event of bench:sink.
 *
 * Rows, measured in the same run:
 * - before: the previous implementation (a sorted copy of every object, then
 *   JSON.stringify), kept here verbatim as the reference point;
 * - after: canonicalJson as it is now;
 * - writer only: the plain recursive writer (the slow path / reference);
 * - JSON.stringify: the engine, NOT canonical (insertion order): the floor
 *   any serializer of the same bytes sits on;
 * - seal(): canonical JSON + SHA-256 + the line, what the pipeline pays.
 * Every implementation's output is checked equal before timing.
 */
import { canonicalJson, canonicalJsonByWriter } from '../../core/chain/canonical.ts';
import { GENESIS_HASH, seal } from '../../core/chain/hash.ts';
import type { EventDraft, KubetrailEvent } from '../../core/events/model.ts';
import { ChainSealer } from '../../core/chain/sealer.ts';
import { reviewBody } from './webhook.ts';

// ---- the implementation before this change (commit 22b02e5), for the "before" row
const BEFORE_SLOW = Symbol('slow');
function sortedCopyBefore(v: unknown, depth: number): unknown {
  if (typeof v !== 'object' || v === null) {
    if ((typeof v === 'number' && !Number.isFinite(v)) || typeof v === 'bigint') throw BEFORE_SLOW;
    return v;
  }
  if (depth > 256) throw BEFORE_SLOW;
  if (Array.isArray(v)) {
    const out: unknown[] = new Array(v.length);
    for (let i = 0; i < v.length; i++) out[i] = sortedCopyBefore(v[i], depth + 1);
    return out;
  }
  if (typeof (v as { toJSON?: unknown }).toJSON === 'function') throw BEFORE_SLOW;
  const keys = Object.keys(v);
  if (keys.length > 1) keys.sort();
  const out: Record<string, unknown> = {};
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i] as string;
    const c = k.charCodeAt(0);
    if ((c >= 48 && c <= 57) || k === '__proto__') throw BEFORE_SLOW;
    out[k] = sortedCopyBefore((v as Record<string, unknown>)[k], depth + 1);
  }
  return out;
}
function canonicalBefore(v: unknown): string {
  try {
    return JSON.stringify(sortedCopyBefore(v, 0));
  } catch (err) {
    if (err !== BEFORE_SLOW) throw err;
    return canonicalJsonByWriter(v);
  }
}
// ----

const review = JSON.parse(reviewBody()) as { request: { uid: string; object: unknown } };
// Events as the pipeline seals them (ChainSealer: members in its order, source frozen).
const sealer = new ChainSealer({ source: { component: 'webhook', instance: 'kt-0a1b2c3d4e5f', cluster: 'prod' }, head: { seq: 41, hash: GENESIS_HASH } });
const podEvent = sealer.seal({
  type: 'admission.review',
  actor: { username: 'agent-ci', uid: 'agent-ci-uid', groups: ['agents', 'system:authenticated'], authn: 'apiserver' },
  target: { group: '', version: 'v1', resource: 'pods', namespace: 'agents', name: 'shop-web-7d4b9c' },
  correlation: { admissionUid: review.request.uid, session: '01930000-0000-7000-8000-000000000000' },
  body: { operation: 'CREATE', dryRun: false, kind: { group: '', version: 'v1', kind: 'Pod' }, object: review.request.object, decision: { allowed: true, warnings: [] }, matchedPolicies: ['agents-pod-security'], latencyMs: 1, webhook: 'validate' },
} as EventDraft<'admission.review'>).event;
const smallEvent = sealer.seal({
  type: 'api.request',
  actor: { username: 'agent-ci', groups: ['agents'], authn: 'token' },
  target: { version: 'v1', resource: 'configmaps', namespace: 'agents', name: 'cm-7' },
  body: { verb: 'get', method: 'GET', path: '/api/v1/namespaces/agents/configmaps/cm-7', status: 200, latencyMs: 2, bytesIn: 0, bytesOut: 700, userAgent: 'x'.repeat(560) },
}).event;

function measure(fns: Record<string, () => unknown>, slices = 21, sliceMs = 40): Record<string, { median: number; min: number }> {
  const names = Object.keys(fns);
  const per: Record<string, number[]> = {};
  for (const n of names) {
    per[n] = [];
    const f = fns[n] as () => unknown;
    const end = performance.now() + 100;
    while (performance.now() < end) f(); // warm-up
  }
  for (let s = 0; s < slices; s++) {
    for (const n of names) {
      const f = fns[n] as () => unknown;
      let count = 0;
      const t0 = process.hrtime.bigint();
      const stop = performance.now() + sliceMs;
      while (performance.now() < stop) {
        for (let i = 0; i < 10; i++) f();
        count += 10;
      }
      (per[n] as number[]).push(Number(process.hrtime.bigint() - t0) / count);
    }
  }
  const out: Record<string, { median: number; min: number }> = {};
  for (const n of names) {
    const xs = (per[n] as number[]).sort((a, b) => a - b);
    out[n] = { median: xs[Math.floor(xs.length / 2)] as number, min: xs[0] as number };
  }
  return out;
}

const fmt = (ns: number): string => `${(ns / 1000).toFixed(2).padStart(7)} µs`;

process.stdout.write(`bench:canonical  node=${process.version}\n`);
for (const [name, ev] of [
  ['admission.review, 15 KiB Pod (as parsed from the review)', podEvent],
  ['api.request, 1 KiB (bench:sink event)', smallEvent],
] as const) {
  const ref = canonicalBefore(ev);
  for (const [n, f] of [['after', canonicalJson], ['writer', canonicalJsonByWriter]] as const) {
    if (f(ev) !== ref) throw new Error(`${n} differs from the previous canonical form on ${name}`);
  }
  const { chain: _c, ...unsealed } = ev as KubetrailEvent;
  const m = measure({
    before: () => canonicalBefore(ev),
    after: () => canonicalJson(ev),
    writer: () => canonicalJsonByWriter(ev),
    native: () => JSON.stringify(ev),
    seal: () => seal(unsealed as Omit<KubetrailEvent, 'chain'>, 42, GENESIS_HASH),
  });
  const row = (label: string, k: keyof typeof m, extra = ''): void =>
    void process.stdout.write(`  ${label.padEnd(56)} ${fmt(m[k]!.median)}/event (min ${fmt(m[k]!.min).trim()})${extra}\n`);
  process.stdout.write(`${name}: ${Buffer.byteLength(ref)} bytes canonical\n`);
  row('before: sorted copy of every object + JSON.stringify', 'before');
  row('after: copy only out-of-order objects + JSON.stringify', 'after', `   before/after = ${(m['before']!.median / m['after']!.median).toFixed(2)}x`);
  row('writer only (recursive; the reference)', 'writer');
  row('JSON.stringify, NOT canonical (the floor)', 'native', `   after/floor = ${(m['after']!.median / m['native']!.median).toFixed(2)}x`);
  row('seal(): canonical + SHA-256 + line', 'seal');
}
