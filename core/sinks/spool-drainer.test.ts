import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfig } from '../config.ts';
import { createLogger } from '../logger.ts';
import type { KubetrailEvent } from '../events/model.ts';
import type { RecordSource } from './kafka-record.ts';
import { sinkMetrics } from './metrics.ts';
import type { Spool } from './spool.ts';
import { Registry } from 'prom-client';
import { SpoolDrainer, type DrainClock, type DrainHost, type Outcome } from './spool-drainer.ts';

/** A clock that never waits: sleeps are recorded and resolve at once; a deadline passes only when told to. */
class ManualClock implements DrainClock {
  readonly slept: number[] = [];
  timeOutNext = 0;
  sleep(ms: number): Promise<void> {
    this.slept.push(ms);
    return Promise.resolve();
  }
  async deadline<T>(p: Promise<T>, _ms: number): Promise<Outcome<T>> {
    if (this.timeOutNext > 0) {
      this.timeOutNext--;
      return { ok: false, timedOut: true, err: undefined, promise: p };
    }
    try {
      return { ok: true, value: await p };
    } catch (err) {
      return { ok: false, timedOut: false, err, promise: p };
    }
  }
}

/** A spool of numbered lines in memory; `next` is how many lines a peek covered. */
function memorySpool(n: number): Spool & { acked: number } {
  const lines = Array.from({ length: n }, (_, i) => JSON.stringify({ id: `e${i}` }));
  let at = 0;
  const spool = {
    acked: 0,
    log: { busy: false, dir: '/nonexistent', flush: () => Promise.resolve() },
    get empty() {
      return at >= lines.length;
    },
    get bytes() {
      return lines.slice(at).join('\n').length;
    },
    peek(maxLines: number) {
      const got = lines.slice(at, at + maxLines);
      return { lines: got, next: at + got.length };
    },
    ack(next: number) {
      const moved = next > at;
      spool.acked += next - at;
      at = next;
      return moved;
    },
  };
  return spool as unknown as Spool & { acked: number };
}

function host(spool: Spool, send: (records: RecordSource[]) => Promise<unknown>): DrainHost & { drainedCalls: number; setAsideLines: string[]; spoolingNow: boolean } {
  const settings = loadConfig({ document: { kafka: { brokers: ['127.0.0.1:9'], batchMaxEvents: 8 } } }).kafka;
  assert.ok(settings);
  const h = {
    settings,
    spool,
    metrics: sinkMetrics(new Registry()),
    logger: createLogger({ level: 'silent' }),
    component: 'webhook',
    spoolingNow: true,
    drainedCalls: 0,
    setAsideLines: [] as string[],
    stuck: undefined as Promise<unknown> | undefined,
    spooling: () => h.spoolingNow,
    connected: () => true,
    connect: () => Promise.resolve(),
    render: (event: KubetrailEvent, line: string) => ({ event, line }) as unknown as RecordSource,
    send,
    setAside: (line: string) => void h.setAsideLines.push(line),
    sent: () => undefined,
    drained: () => {
      h.drainedCalls++;
      h.spoolingNow = false;
    },
  };
  return h;
}

const tooLarge = (): Error => Object.assign(new Error('broker refused'), { type: 'MESSAGE_TOO_LARGE' });

test('the drainer sends the spool in order in requests of at most batchMaxEvents, then hands back to direct production', async () => {
  const spool = memorySpool(20);
  const sent: string[][] = [];
  const h = host(spool, async (records) => void sent.push(records.map((r) => (r as unknown as { event: { id: string } }).event.id)));
  await new SpoolDrainer(h, new ManualClock()).start();
  assert.deepEqual(sent.map((r) => r.length), [8, 8, 4]);
  assert.deepEqual(sent.flat(), Array.from({ length: 20 }, (_, i) => `e${i}`));
  assert.equal(spool.acked, 20);
  assert.equal(h.drainedCalls, 1);
});

test('a record the broker refuses is isolated by halving the request and set aside; the rest of the spool still goes', async () => {
  const spool = memorySpool(8);
  const sizes: number[] = [];
  const h = host(spool, async (records) => {
    sizes.push(records.length);
    if (records.some((r) => (r as unknown as { event: { id: string } }).event.id === 'e5')) throw tooLarge();
  });
  await new SpoolDrainer(h, new ManualClock()).start();
  assert.deepEqual(h.setAsideLines, [JSON.stringify({ id: 'e5' })]);
  // 8 refused; 4 (e0-e3) sent, doubling again; 4 (e4-e7) and 2 (e4, e5) refused; e4 sent; 2 (e5, e6) refused; e5 alone set aside; the rest.
  assert.deepEqual(sizes, [8, 4, 4, 2, 1, 2, 1, 2], 'halved until the culprit was alone, doubled after each success');
  assert.equal(spool.acked, 8);
  assert.equal(h.drainedCalls, 1);
});

test('failed sends back off 100 ms doubling to 2 s, and a success resets the backoff; a timed-out request is waited for before the next', async () => {
  const spool = memorySpool(3);
  let failures = 7;
  const h = host(spool, async () => {
    if (failures-- > 0) throw new Error('broker not available');
  });
  const clock = new ManualClock();
  await new SpoolDrainer(h, clock).start();
  assert.deepEqual(clock.slept, [100, 200, 400, 800, 1600, 2000, 2000]);
  assert.equal(spool.acked, 3);

  const spool2 = memorySpool(2);
  let calls = 0;
  const h2 = host(spool2, async () => void calls++);
  const clock2 = new ManualClock();
  clock2.timeOutNext = 1;
  await new SpoolDrainer(h2, clock2).start();
  assert.equal(calls, 2, 'the timed-out request, then the same lines again once it settled');
  assert.equal(h2.stuck, undefined, 'the stuck request was waited for and cleared');
  assert.deepEqual(clock2.slept, [100]);
});
