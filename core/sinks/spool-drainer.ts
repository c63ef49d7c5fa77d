/**
 * The spool drainer of a KafkaSink: while the sink is spooling, sends the
 * spool to Kafka in order, one request at a time, and tells the sink when the
 * spool is empty so it goes back to producing directly.
 *
 * - Requests grow from `kafka.batchMaxEvents` down-halved: a request the
 *   broker refuses for what it holds (a record over message.max.bytes) is
 *   halved until the culprit is alone, which is set aside (rejected.ndjson)
 *   so the rest flows; a success doubles the size again.
 * - A request that missed `kafka.ackDeadlineMs` is still being retried by
 *   kafkajs: nothing more is sent until it settles, so it cannot interleave
 *   with the spool.
 * - Failures back off 100 ms, doubling to 2 s.
 *
 * Time comes from a {@link DrainClock} so tests drive the loop without
 * sleeping; the sink's state (mode, connection, send) from its
 * {@link DrainHost}.
 */
import type { KubetrailEvent } from '../events/model.ts';
import type { Logger } from '../logger.ts';
import { recordErrorType, type KafkaSettings } from './kafka-client.ts';
import type { RecordSource } from './kafka-record.ts';
import type { SinkMetrics } from './metrics.ts';
import type { Spool } from './spool.ts';

/** How a promise ended within a deadline: its value, or its error, or the deadline passed first (the promise kept). */
export type Outcome<T> = { ok: true; value: T } | { ok: false; timedOut: boolean; err: unknown; promise: Promise<T> };

/** Time, as the drainer (and the sink) use it. */
export interface DrainClock {
  /** Resolves after `ms`; never keeps the process alive. */
  sleep(ms: number): Promise<void>;
  /** Settles with `p`'s outcome, or with `timedOut` once `ms` have passed. */
  deadline<T>(p: Promise<T>, ms: number): Promise<Outcome<T>>;
}

/** Real time. */
export const systemClock: DrainClock = {
  sleep: (ms) => new Promise((r) => setTimeout(r, ms).unref()),
  deadline: <T>(p: Promise<T>, ms: number) =>
    new Promise<Outcome<T>>((resolve) => {
      const timer = setTimeout(() => resolve({ ok: false, timedOut: true, err: undefined, promise: p }), ms);
      p.then(
        (value) => {
          clearTimeout(timer);
          resolve({ ok: true, value });
        },
        (err: unknown) => {
          clearTimeout(timer);
          resolve({ ok: false, timedOut: false, err, promise: p });
        },
      );
    }),
};

/** Estimated bytes of a record beyond its value (key, CloudEvents headers, record framing). */
export const RECORD_OVERHEAD_BYTES = 320;

/** What the drainer needs of its sink. */
export interface DrainHost {
  readonly settings: KafkaSettings;
  readonly spool: Spool;
  readonly metrics: SinkMetrics;
  readonly logger: Logger;
  readonly component: string;
  /** True while the sink is spooling and not stopped: the loop runs while this holds. */
  spooling(): boolean;
  connected(): boolean;
  connect(): Promise<void>;
  /** A request that missed its deadline and is still being retried, if any; the drainer clears it once it settles. */
  stuck: Promise<unknown> | undefined;
  /** The record to send for a spooled event. */
  render(event: KubetrailEvent, line: string): RecordSource;
  /** Sends one produce request of `records`. */
  send(records: RecordSource[]): Promise<unknown>;
  /** Keeps a line the broker refused for what it is out of the spool's way (rejected.ndjson), loudly. */
  setAside(line: string, errorType: string): void;
  /** A request from the spool was acknowledged: `acked` are in Kafka (a signed head may name them) and the spool has room again. */
  sent(acked: readonly KubetrailEvent[]): void;
  /** The spool is empty: the sink goes back to producing directly. */
  drained(): void;
}

/** The drain loop of one sink; {@link start} runs it unless it is running. */
export class SpoolDrainer {
  readonly #host: DrainHost;
  readonly #clock: DrainClock;
  #running: Promise<void> | undefined;
  /** How many spool lines go in one request; halved while the broker refuses records. */
  #limit: number;

  constructor(host: DrainHost, clock: DrainClock = systemClock) {
    this.#host = host;
    this.#clock = clock;
    this.#limit = host.settings.batchMaxEvents;
  }

  /** The loop now running, if any (close waits for it). */
  get running(): Promise<void> | undefined {
    return this.#running;
  }

  /** Starts the loop if it is not running; resolves when it stops. */
  start(): Promise<void> {
    this.#running ??= this.#loop().finally(() => {
      this.#running = undefined;
      // An append may have landed after the loop decided to stop.
      if (this.#host.spooling()) void this.start();
    });
    return this.#running;
  }

  async #loop(): Promise<void> {
    const h = this.#host;
    const s = h.settings;
    let backoff = 100;
    const wait = async (): Promise<void> => {
      await this.#clock.sleep(backoff);
      backoff = Math.min(backoff * 2, 2000);
    };
    while (h.spooling()) {
      if (h.stuck !== undefined) {
        // A request that missed its deadline is still being retried by kafkajs;
        // sending more before it settles could interleave it with the spool.
        const r = await this.#clock.deadline(h.stuck, 500);
        if (!r.ok) continue;
        h.stuck = undefined;
      }
      if (!h.connected()) {
        const c = await this.#clock.deadline(h.connect(), s.connectTimeoutMs);
        if (!c.ok) {
          await wait();
          continue;
        }
      }
      const { lines, next } = h.spool.peek(
        this.#limit,
        // Non-native records carry the native line as a header as well as the rendered value.
        s.format === 'native' ? s.batchMaxBytes : Math.floor(s.batchMaxBytes / 2),
        RECORD_OVERHEAD_BYTES,
      );
      if (lines.length === 0) {
        if (h.spool.log.busy) {
          await h.spool.log.flush();
          continue;
        }
        const moved = h.spool.ack(next);
        if (h.spool.empty) {
          h.drained();
          return;
        }
        if (!moved) {
          // Durable bytes the reader cannot split into lines: only a damaged
          // spool file does this. Say so and retry slowly instead of spinning.
          h.logger.error({ spoolDir: h.spool.log.dir, setting: 'dataDir' }, 'spool has bytes that are not complete lines; drainer waiting');
          await this.#clock.sleep(1000);
        }
        continue;
      }
      const records: RecordSource[] = [];
      for (const line of lines) {
        try {
          records.push(h.render(JSON.parse(line) as KubetrailEvent, line));
        } catch (err) {
          // Only a damaged spool file gets here; the event's absence will show as a gap in verify.
          h.logger.error({ err, spoolDir: h.spool.log.dir }, 'unreadable line in the spool skipped');
        }
      }
      const r = records.length === 0 ? ({ ok: true, value: undefined } as const) : await this.#clock.deadline(h.send(records), s.ackDeadlineMs);
      if (r.ok) {
        h.spool.ack(next);
        h.sent(records.map((x) => x.event));
        h.metrics.drained.inc({ component: h.component }, records.length);
        h.metrics.spoolBytes.set({ component: h.component }, h.spool.bytes);
        this.#limit = Math.min(s.batchMaxEvents, this.#limit * 2);
        backoff = 100;
        continue;
      }
      const refused = r.timedOut ? undefined : recordErrorType(r.err);
      if (refused !== undefined) {
        // The broker refuses what was sent (e.g. a record over message.max.bytes):
        // retrying the same request can never succeed. Halve the request until the
        // culprit is alone, then set it aside so the rest of the spool can flow.
        if (lines.length > 1) {
          this.#limit = Math.max(1, Math.floor(lines.length / 2));
          continue;
        }
        h.setAside(lines[0] as string, refused);
        h.spool.ack(next);
        this.#limit = s.batchMaxEvents;
        continue;
      }
      if (r.timedOut) h.stuck = r.promise.catch(() => undefined);
      await wait();
    }
  }
}
