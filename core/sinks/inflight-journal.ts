/**
 * The in-flight journal: the batch currently handed to Kafka, written (no
 * fsync) before the produce request and overwritten by the next one.
 *
 * Why: if the process is SIGKILLed after the broker stored a batch but
 * before the ack arrived, the chain head on disk is behind what Kafka holds.
 * A restarted process would then reuse those sequence numbers for different
 * events, and verify would see a fork. On start, a non-empty journal is
 * moved into the spool, so its events are re-sent (duplicates with the same
 * id and hash, which verify accepts) and the chain continues after them.
 * A write without fsync survives a killed process (the page cache stays);
 * it does not survive a power cut, which is a documented limit.
 */
import { closeSync, ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs';
import path from 'node:path';

/** File-backed record of the batch in flight. */
export class InflightJournal {
  readonly file: string;
  readonly #fd: number;
  #empty = true;
  #generation = 0;

  /** Opens (creating) `dir/inflight.ndjson`. */
  constructor(dir: string) {
    this.file = path.join(dir, 'inflight.ndjson');
    this.#fd = openSync(this.file, 'a+');
    closeSync(this.#fd);
    this.#fd = openSync(this.file, 'r+');
  }

  /** Lines left by a process that died with a batch in flight (complete lines only). */
  leftover(): string[] {
    const text = readFileSync(this.file, 'utf8');
    const end = text.lastIndexOf('\n');
    return end < 0 ? [] : text.slice(0, end).split('\n').filter((l) => l !== '');
  }

  /** Replaces the journal with `lines` (one write, no fsync); returns a generation for {@link clear}. */
  record(lines: readonly string[]): number {
    const buf = Buffer.from(lines.join('\n') + '\n', 'utf8');
    ftruncateSync(this.#fd, 0);
    writeSync(this.#fd, buf, 0, buf.length, 0);
    this.#empty = false;
    return ++this.#generation;
  }

  /** Empties the journal (nothing in flight), unless a newer batch than `generation` was recorded since. */
  clear(generation?: number): void {
    if (this.#empty || (generation !== undefined && generation !== this.#generation)) return;
    ftruncateSync(this.#fd, 0);
    this.#empty = true;
  }

  /** Empties and closes. */
  close(): void {
    try {
      ftruncateSync(this.#fd, 0);
      closeSync(this.#fd);
    } catch {
      // already closed
    }
  }
}
