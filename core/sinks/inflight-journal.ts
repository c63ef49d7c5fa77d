/**
 * The in-flight journal: the batches handed to Kafka, written before each
 * produce request leaves (and fdatasync'd first with `kafka.journalSync`),
 * and kept on disk after Kafka acknowledged them until their slot is reused.
 *
 * Why: if the process dies after the broker stored a batch but before the
 * ack arrived, or the machine loses power before the chain head file (written
 * without fsync after every ack) reached the disk, the head on disk is behind
 * what Kafka holds. A restarted process would then reuse those sequence
 * numbers for different events, and verify would see a fork. On start, the
 * pipeline takes the newest link found in the journal as the chain head and
 * moves the journal's events that the head file does not cover into the
 * spool, so they are re-sent (duplicates with the same id and hash, which
 * verify accepts) and the chain continues after them. A killed process
 * leaves the journal in the page cache; with `kafka.journalSync` each batch
 * is also fdatasync'd before it is sent, so the journal on disk holds the
 * newest link that can be in Kafka even after a power cut.
 *
 * KafkaSink may hand the producer a second batch while the first is in
 * flight (sent as soon as the first is acknowledged), so the journal has two
 * slots, `inflight.ndjson` and `inflight-1.ndjson`, used in turn: a batch's
 * slot is rewritten only after that batch was acknowledged or spooled.
 * {@link leftover} returns the lines of both, in chain order.
 */
import { closeSync, fdatasync as fdatasyncCb, ftruncate as ftruncateCb, ftruncateSync, openSync, readFileSync, write as writeCb, writeSync } from 'node:fs';
import { promisify } from 'node:util';
import path from 'node:path';

const fdatasync = promisify(fdatasyncCb);
const ftruncate = promisify(ftruncateCb);
const write = promisify(writeCb) as (fd: number, buf: Uint8Array, off: number, len: number, pos: number) => Promise<{ bytesWritten: number }>;

const SLOTS = 2;
const DONE = Promise.resolve();

/** File-backed record of the batches in flight. */
export class InflightJournal {
  /** The first slot's file (the only one before there were two). */
  readonly file: string;
  readonly files: readonly string[];
  readonly #fds: number[];
  /** Generation held by each slot, 0 when empty. */
  readonly #held: number[] = new Array<number>(SLOTS).fill(-1);
  /** The write + fdatasync of each slot's batch. */
  readonly #writes: (Promise<void> | undefined)[] = new Array<Promise<void> | undefined>(SLOTS).fill(undefined);
  #generation = 0;

  readonly #fsync: boolean;

  /** Opens (creating) `dir/inflight.ndjson` and `dir/inflight-1.ndjson`; `fsync` as `kafka.journalSync`. */
  constructor(dir: string, opts: { fsync?: boolean } = {}) {
    this.#fsync = opts.fsync ?? false;
    this.files = Array.from({ length: SLOTS }, (_, i) => path.join(dir, i === 0 ? 'inflight.ndjson' : `inflight-${i}.ndjson`));
    this.file = this.files[0] as string;
    this.#fds = this.files.map((f) => {
      closeSync(openSync(f, 'a+'));
      return openSync(f, 'r+');
    });
  }

  /**
   * Lines left by a process that died with batches in flight (complete lines
   * only), ordered by chain sequence number (unparseable lines last).
   */
  leftover(): string[] {
    const lines: string[] = [];
    for (const f of this.files) {
      const text = readFileSync(f, 'utf8');
      const end = text.lastIndexOf('\n');
      if (end >= 0) for (const l of text.slice(0, end).split('\n')) if (l !== '') lines.push(l);
    }
    const seq = (l: string): number => {
      try {
        const s = (JSON.parse(l) as { chain?: { seq?: unknown } }).chain?.seq;
        return typeof s === 'number' ? s : Number.MAX_SAFE_INTEGER;
      } catch {
        return Number.MAX_SAFE_INTEGER;
      }
    };
    const keyed = lines.map((l) => ({ l, s: seq(l) }));
    keyed.sort((a, b) => a.s - b.s);
    return keyed.map((k) => k.l);
  }

  /**
   * Writes `lines` (strings, or their UTF-8 bytes with each line followed by
   * '\n', as the sink hands the producer thread) to the next slot and returns
   * a generation for {@link sync}, {@link release} and {@link clear}. Without
   * `fsync`, one truncate and one write on this thread (a killed process
   * keeps them: the page cache survives it). With `fsync`, the truncate,
   * write and fdatasync run on the libuv pool and {@link sync} resolves when
   * all are done; `lines` must not change until then. Throws when that slot
   * still holds a batch that was neither released nor cleared (more than two
   * in flight is a sink bug), or when the synchronous write fails.
   */
  record(lines: readonly string[] | Uint8Array): number {
    const generation = this.#generation + 1;
    const slot = generation % SLOTS;
    if ((this.#held[slot] as number) > 0) throw new Error('in-flight journal: both slots hold uncleared batches');
    const buf = lines instanceof Uint8Array ? lines : Buffer.from(lines.join('\n') + '\n', 'utf8');
    const fd = this.#fds[slot] as number;
    if (this.#fsync) {
      this.#writes[slot] = (async () => {
        await ftruncate(fd, 0);
        let off = 0;
        while (off < buf.length) off += (await write(fd, buf, off, buf.length - off, off)).bytesWritten;
        await fdatasync(fd);
      })();
      // A failure is reported through sync(); never an unhandled rejection.
      this.#writes[slot].catch(() => undefined);
    } else {
      ftruncateSync(fd, 0);
      writeSync(fd, buf, 0, buf.length, 0);
      this.#writes[slot] = DONE;
    }
    this.#held[slot] = generation;
    this.#generation = generation;
    return generation;
  }

  /** Resolves once the batch of `generation` is written (and, with `fsync`, on disk). */
  sync(generation: number): Promise<void> {
    const slot = generation % SLOTS;
    if (this.#held[slot] !== generation) return Promise.reject(new Error(`in-flight journal: generation ${generation} is not held`));
    return this.#writes[slot] as Promise<void>;
  }

  /**
   * Frees the slot of an acknowledged `generation` for reuse without erasing
   * it: until it is overwritten, it still shows the newest link that reached
   * Kafka should the chain head file be lost.
   */
  release(generation: number): void {
    for (let slot = 0; slot < SLOTS; slot++) if (this.#held[slot] === generation) this.#held[slot] = 0;
  }

  /** Empties the slot of `generation` (the spool holds its events now); without one, every slot. */
  clear(generation?: number): void {
    for (let slot = 0; slot < SLOTS; slot++) {
      const held = this.#held[slot] as number;
      if (generation === undefined ? held !== 0 : held === generation) {
        ftruncateSync(this.#fds[slot] as number, 0);
        this.#held[slot] = 0;
      }
    }
  }

  /** Closes the files, keeping what they hold (the pipeline's next start reads it against the chain head). */
  close(): void {
    for (const fd of this.#fds) {
      try {
        closeSync(fd);
      } catch {
        // already closed
      }
    }
  }
}
