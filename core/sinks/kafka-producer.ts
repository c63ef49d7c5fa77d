/**
 * The Kafka producer of a KafkaSink, running in its own worker thread.
 *
 * Why a thread: kafkajs encodes every record, its headers and the batch
 * CRC32C in JavaScript — about 40 µs of CPU per 1 KiB record with the
 * CloudEvents headers, more than everything KafkaSink does per event
 * (sealing, canonical JSON, SHA-256, journal). On the emitting thread that
 * work is serial with sealing and with the component's own work (the
 * webhook's reviews). In a worker, the emitting thread seals and journals
 * the next batch while the previous one is encoded and in flight.
 *
 * Nothing about ordering or durability changes: KafkaSink still writes the
 * in-flight journal before each request, sends one request at a time,
 * resolves emits only on the broker's ack (acks=all) and applies its ack
 * deadline here, on its side; the worker only runs the idempotent kafkajs
 * producer (maxInFlightRequests 1) it used to run itself, one request after
 * the other. The sink may hand it the next batch while one is in flight, so
 * that batch is encoded and sent the moment the ack arrives. Errors cross the
 * thread boundary as plain objects keeping what the sink classifies on
 * (`name`, `type`, `code`, the `originalError`/`cause` chain); kafkajs logs
 * are forwarded to the sink's logger. If the thread dies, every pending and
 * later request fails, which sends events to the spool.
 */
import { Worker, type WorkerOptions } from 'node:worker_threads';
import type { Logger } from '../logger.ts';
import type { KafkaSettings } from './kafka-client.ts';
import type { Crc32cBackend } from './kafkajs-crc32c.ts';
import type { EncoderBackend } from './kafkajs-encoder.ts';
import { transferables, type WireBatch } from './kafka-record.ts';

/** Options of one produce request. */
export interface SendOptions {
  timeout: number;
  compression: 'none' | 'gzip';
}

/** Request from the sink to the worker. */
export type ProducerRequest =
  | { id: number; op: 'connect' }
  | { id: number; op: 'disconnect' }
  /** Answer every send not yet started "not sent" (the sink is spooling them). */
  | { id: number; op: 'cancel' }
  /** One produce request; the batch's buffers are transferred, not copied. */
  | { id: number; op: 'send'; opts: SendOptions; batch: WireBatch };

/** A serialized error: what classification reads, and the chain under it. */
export interface WireError {
  name?: string;
  type?: string;
  code?: string;
  message?: string;
  retriable?: boolean;
  cause?: WireError;
}

/** Message from the worker to the sink. */
export type ProducerReply =
  | { id: number; ok: true }
  | { id: number; ok: false; error: WireError }
  | { log: 'error' | 'warn' | 'debug'; fields: Record<string, unknown>; msg: string }
  /** Sent once, first: which of the changes to kafkajs the thread's kafkajs runs with. */
  | { backends: KafkajsBackends };

/** What the producer thread's kafkajs runs with: kafkajs-crc32c.ts and kafkajs-encoder.ts, or kafkajs's own and why. */
export interface KafkajsBackends {
  crc32c: Crc32cBackend;
  encoder: EncoderBackend;
}

type WithoutId<T> = T extends unknown ? Omit<T, 'id'> : never;

/** Turns a serialized error back into an Error with the same fields and chain. */
function fromWire(w: WireError): Error {
  const e = new Error(w.message ?? 'kafka producer error') as Error & { type?: string; code?: string; retriable?: boolean; originalError?: Error };
  if (w.name !== undefined) e.name = w.name;
  if (w.type !== undefined) e.type = w.type;
  if (w.code !== undefined) e.code = w.code;
  if (w.retriable !== undefined) e.retriable = w.retriable;
  if (w.cause !== undefined) e.originalError = fromWire(w.cause);
  return e;
}

/** Serializes an error and the chain under it (at most 6 deep, like the classifiers). */
export function toWire(err: unknown, depth = 0): WireError {
  if (err === null || typeof err !== 'object') return { message: String(err) };
  const e = err as { name?: unknown; type?: unknown; code?: unknown; message?: unknown; retriable?: unknown; originalError?: unknown; cause?: unknown };
  const w: WireError = {};
  if (typeof e.name === 'string') w.name = e.name;
  if (typeof e.type === 'string') w.type = e.type;
  if (typeof e.code === 'string') w.code = e.code;
  if (typeof e.message === 'string') w.message = e.message;
  if (typeof e.retriable === 'boolean') w.retriable = e.retriable;
  const next = e.originalError ?? e.cause;
  if (next !== undefined && next !== null && depth < 5) w.cause = toWire(next, depth + 1);
  return w;
}

/**
 * The Node flag the producer thread gets beyond its parent's: it drops the
 * TimeoutNegativeWarning kafkajs 2.2.4 causes on every broker connection
 * (RequestQueue's `throttledUntil` starts at -1; Node uses 1 ms, as older
 * Node did silently). Node's own per-thread option: every other warning is
 * still printed.
 */
export const PRODUCER_THREAD_EXEC_ARGV: readonly string[] = ['--disable-warning=TimeoutNegativeWarning'];

/**
 * Starts the worker with its parent's flags plus {@link PRODUCER_THREAD_EXEC_ARGV}.
 * A Worker re-validates an explicit execArgv and refuses some flags a parent
 * may carry (the test runner's, for one); then it gets only ours.
 */
function startWorker(url: URL, options: WorkerOptions): Worker {
  try {
    return new Worker(url, { ...options, execArgv: [...process.execArgv, ...PRODUCER_THREAD_EXEC_ARGV] });
  } catch (err) {
    if ((err as { code?: unknown }).code !== 'ERR_WORKER_INVALID_EXEC_ARGV') throw err;
    return new Worker(url, { ...options, execArgv: [...PRODUCER_THREAD_EXEC_ARGV] });
  }
}

/** The sink's handle on the producer thread. */
export class ProducerThread {
  readonly #worker: Worker;
  readonly #logger: Logger;
  readonly #pending = new Map<number, { resolve: () => void; reject: (err: Error) => void }>();
  #nextId = 1;
  #dead: Error | undefined;

  /** `onBackends` gets what the thread's kafkajs runs with, once, when the thread has started. */
  constructor(settings: KafkaSettings, logger: Logger, onBackends?: (b: KafkajsBackends) => void) {
    this.#logger = logger;
    this.#worker = startWorker(new URL('./kafka-producer-worker.ts', import.meta.url), { workerData: { settings }, stdout: false, stderr: false });
    this.#worker.on('message', (m: ProducerReply) => {
      if ('log' in m) {
        this.#logger[m.log](m.fields, m.msg);
        return;
      }
      if ('backends' in m) {
        onBackends?.(m.backends);
        return;
      }
      const p = this.#pending.get(m.id);
      if (p === undefined) return;
      this.#pending.delete(m.id);
      if (m.ok) p.resolve();
      else p.reject(fromWire(m.error));
    });
    this.#worker.on('error', (err) => this.#fail(err));
    this.#worker.on('exit', (code) => this.#fail(new Error(`kafka producer thread exited (code ${code})`)));
  }

  #fail(err: Error): void {
    if (this.#dead === undefined) this.#logger.error({ err }, 'kafka producer thread stopped; events go to the spool');
    this.#dead ??= err;
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
  }

  #call(msg: WithoutId<ProducerRequest>, transfer: ArrayBuffer[] = []): Promise<void> {
    if (this.#dead !== undefined) return Promise.reject(this.#dead);
    const id = this.#nextId++;
    return new Promise<void>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#worker.postMessage({ ...msg, id }, transfer);
    });
  }

  /**
   * Withdraws the sends queued behind the one in flight: they are answered
   * "not sent" (KubetrailNotSent). A send already started is not stopped.
   */
  cancelQueued(): void {
    if (this.#dead === undefined) this.#worker.postMessage({ id: 0, op: 'cancel' });
  }

  /** Connects the producer. */
  connect(): Promise<void> {
    return this.#call({ op: 'connect' });
  }

  /**
   * One produce request (acks=all) with the batch's records, in order; resolves on the
   * broker's ack. Requests are sent one at a time in the order of the calls:
   * a call while another is in flight queues behind it in the worker, and is
   * answered "not sent" if that one fails.
   */
  send(batch: WireBatch, opts: SendOptions): Promise<void> {
    // The batch's buffers move to the thread: the caller must not use them after this.
    return this.#call({ op: 'send', opts, batch }, transferables(batch));
  }

  /** Disconnects the producer (waiting at most `timeoutMs`) and ends the thread. */
  async disconnect(timeoutMs = 3000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([this.#call({ op: 'disconnect' }), new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))]);
    } finally {
      clearTimeout(timer);
      this.#dead ??= new Error('kafka producer closed');
      await this.#worker.terminate();
    }
  }
}
