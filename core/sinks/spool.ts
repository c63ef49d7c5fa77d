/**
 * The spool: where events wait, fsync'd, while Kafka is unreachable or slower
 * than `kafka.ackDeadlineMs`. A {@link SegmentLog} plus a drain cursor; the
 * drainer reads from the cursor in order, and once Kafka acknowledged a batch
 * the cursor moves past it and fully drained segments are deleted.
 *
 * The cursor is rewritten in place without fsync: after a crash it can only
 * lag, which re-sends some events: duplicates with the same id, as allowed.
 */
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import { readLines, SegmentLog, type LogPosition } from './segment-log.ts';

/** Options of {@link Spool}. */
export interface SpoolOptions {
  dir: string;
  segmentBytes: number;
  groupCommitMs: number;
}

/** Durable FIFO of canonical event lines. */
export class Spool {
  readonly log: SegmentLog;
  #cursor: LogPosition;
  readonly #cursorFd: number;

  private constructor(log: SegmentLog, cursor: LogPosition, fd: number) {
    this.log = log;
    this.#cursor = cursor;
    this.#cursorFd = fd;
  }

  /** Opens (creating) the spool; throws SinkError SINK_ERR_DATA_DIR naming `dataDir` when it cannot. */
  static open(opts: SpoolOptions): Spool {
    const log = SegmentLog.open({ dir: opts.dir, segmentBytes: opts.segmentBytes, groupCommitMs: opts.groupCommitMs }, 'dataDir');
    const file = path.join(opts.dir, 'cursor');
    let cursor: LogPosition = { segment: log.segments()[0] ?? '', offset: 0 };
    try {
      const v = JSON.parse(readFileSync(file, 'utf8')) as Partial<LogPosition>;
      if (typeof v.segment === 'string' && typeof v.offset === 'number') cursor = { segment: v.segment, offset: v.offset };
    } catch {
      // no cursor yet: drain from the first segment
    }
    const fd = openSync(file, 'a+');
    closeSync(fd);
    const spool = new Spool(log, cursor, openSync(file, 'r+'));
    log.deleteBefore(cursor.segment);
    return spool;
  }

  /** Bytes on disk not yet drained (approximate: whole segments count until deleted). */
  get bytes(): number {
    return this.log.bytes - this.#cursor.offset + this.log.pendingBytes;
  }

  /** True when nothing is waiting: every durable line was drained and no append is in progress. */
  get empty(): boolean {
    if (this.log.busy) return false;
    const end = this.log.durableEnd;
    return this.#cursor.segment === end.segment ? this.#cursor.offset >= end.offset : this.log.bytes === 0 || (this.#cursor.segment > end.segment);
  }

  /** Appends lines durably (group commit). */
  append(lines: readonly string[]): Promise<void> {
    return this.log.append(lines);
  }

  /** Reads the next lines to drain, in order, without moving the cursor. */
  peek(maxLines: number, maxBytes: number, perLineOverhead = 0): { lines: string[]; next: LogPosition } {
    return readLines(this.log.dir, this.#cursor, this.log.durableEnd, maxLines, maxBytes, perLineOverhead);
  }

  /** Marks everything before `next` as delivered; false when the cursor did not move. */
  ack(next: LogPosition): boolean {
    if (next.segment === this.#cursor.segment && next.offset === this.#cursor.offset) return false;
    this.#cursor = next;
    const text = JSON.stringify(next).padEnd(255, ' ') + '\n';
    writeSync(this.#cursorFd, text, 0, 'utf8');
    this.log.deleteBefore(next.segment);
    return true;
  }

  /** Closes files (after flushing appends). */
  async close(): Promise<void> {
    await this.log.close();
    closeSync(this.#cursorFd);
  }
}
