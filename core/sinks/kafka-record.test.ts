import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { IHeaders, Message } from 'kafkajs';
import { MemorySink } from './memory-sink.ts';
import { admissionReview, apiRequest, sessionData, sessionStart } from '../events/builders.ts';
import { render, type WireFormat } from '../events/formats/index.ts';
import { decodeBatch, encodeBatch, toRecord, transferables, type RecordSource } from './kafka-record.ts';
import { InflightJournal } from './inflight-journal.ts';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const topics = { events: 'kt.events', sessions: 'kt.sessions' };
const actor = { username: 'agent-ç✓', groups: ['agents'], authn: 'token' as const };
const session = { session: 'sess-1' };

async function sources(format: WireFormat): Promise<RecordSource[]> {
  const sink = new MemorySink({ source: { component: 'webhook', instance: 'i/1 é', cluster: 'dev' } });
  const drafts = [
    admissionReview({ actor, target: { version: 'v1', resource: 'pods', namespace: 'agents', name: 'p' } }, { operation: 'CREATE', dryRun: false, webhook: 'validate', object: { metadata: { name: 'p', annotations: { note: 'multi-byte: ü € 😀, and a \n newline' } } }, decision: { allowed: true } }),
    apiRequest({ actor }, { verb: 'get', method: 'GET', path: '/version', status: 200, latencyMs: 1, bytesIn: 0, bytesOut: 10, userAgent: 'kubectl/😀' }),
    sessionStart({ actor, correlation: session }, { kind: 'exec', pod: 'web-0', namespace: 'agents', container: 'app', command: ['sh'], tty: true, decision: { allowed: true } }),
    sessionData({ actor, correlation: session }, { chunk: 0, stream: 'stdout', offset: 0, t: 1, data: 'aGVsbG8K' }),
  ];
  const out: RecordSource[] = [];
  for (const d of drafts) {
    const event = await sink.emit(d);
    const line = sink.lines.at(-1) as string;
    out.push({ event, line, rendered: render(event, line, format) });
  }
  return out;
}

const asText = (h: IHeaders): Record<string, string> => Object.fromEntries(Object.entries(h).map(([k, v]) => [k, String(v)]));

for (const format of ['native', 'k8s-audit', 'ocsf'] as const) {
  test(`a ${format} batch for the producer thread decodes to exactly the records toRecord describes, headers in order`, async () => {
    const items = await sources(format);
    const batch = encodeBatch(items, topics);
    // What crosses the thread: a structured clone with the buffers transferred.
    const { port1, port2 } = new MessageChannel();
    const received = new Promise<typeof batch>((resolve) => port2.once('message', (m: { batch: typeof batch }) => resolve(m.batch)));
    port1.postMessage({ batch }, transferables(batch));
    assert.equal(batch.lines.byteLength, 0, 'the lines buffer was transferred, not copied');
    const decoded = decodeBatch(await received);
    port1.close();
    port2.close();
    const got: { topic: string; m: Message }[] = decoded.flatMap((t) => t.messages.map((m) => ({ topic: t.topic, m })));
    const want = items.map((s) => toRecord(s.event, s.line, format, topics));
    assert.equal(want.filter((r) => r.topic === topics.sessions).length, 2, 'session events go to the sessions topic');
    // Records keep their order within each topic.
    for (const topic of [topics.events, topics.sessions]) {
      const w = want.filter((r) => r.topic === topic);
      const g = got.filter((r) => r.topic === topic);
      assert.equal(g.length, w.length);
      for (let i = 0; i < w.length; i++) {
        const wi = w[i]!;
        const gi = g[i]!.m;
        assert.equal(gi.key, wi.key);
        assert.equal(Buffer.from(gi.value as Buffer).toString('utf8'), wi.value);
        assert.deepEqual(Object.keys(gi.headers ?? {}), Object.keys(wi.headers), 'same header names in the same order');
        assert.deepEqual(asText(gi.headers ?? {}), asText(wi.headers));
      }
    }
    if (format !== 'native') assert.ok(got.some((r) => r.m.headers?.['kubetrail_native'] !== undefined), 'rendered records carry the native line');
  });
}

test('a batch whose line count does not match its columns is refused, not sent short', async () => {
  const items = await sources('native');
  const batch = encodeBatch(items, topics);
  batch.keys.push('extra');
  batch.ids.push('x');
  assert.throws(() => decodeBatch(batch), /lines holds 4 lines, expected 5/);
  const short = encodeBatch(items, topics);
  short.keys.pop();
  assert.throws(() => decodeBatch(short), /more than 3 lines/);
});

test('the in-flight journal writes the batch bytes the producer thread sends, and reads them back as lines', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'kt-journal-'));
  try {
    const items = await sources('native');
    const batch = encodeBatch(items, topics);
    const j = new InflightJournal(dir);
    await j.sync(j.record(batch.lines));
    assert.equal(j.files.map((f) => readFileSync(f, 'utf8')).join(''), items.map((s) => s.line).join('\n') + '\n');
    assert.deepEqual(j.leftover(), items.map((s) => s.line));
    j.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
