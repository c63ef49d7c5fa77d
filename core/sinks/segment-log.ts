/**
 * An append-only log of newline-delimited canonical events in numbered
 * segment files (`000000000001.ndjson`, ...). The local log and the spool are
 * both this; it also owns group commit: appends that arrive while a write +
 * fdatasync is in progress (or within `groupCommitMs`) share the next one.
 *
 * Format: one native canonical event per line, UTF-8, `\n`-terminated. A line
 * without its `\n` at the end of the last segment is a torn write from a
 * crash; it was never acknowledged, so recovery truncates it.
 *
 * Over 400 lines because appending (group commit, segment roll) and recovery
 * (torn-tail truncation, cursor) must agree on one on-disk format and one set
 * of invariants; they are kept side by side so a change to one is checked
 * against the other.
 */
import { closeSync, constants, fdatasync, fsyncSync, ftruncateSync, mkdirSync, openSync, readdirSync, readSync, fstatSync, statSync, unlinkSync, write } from 'node:fs';
import path from 'node:path';
import { SinkError } from './errors.ts';

/** Options of {@link SegmentLog}. */
export interface SegmentLogOptions {
  dir: string;
  /** Start a new segment once the current one reaches this size. */
  segmentBytes: number;
  /** Extra wait (ms) before a write so more appends share its fsync; 0 relies on natural batching only. */
  groupCommitMs: number;
  /** Size/time retention (local log only); the spool deletes what it drained instead. */
  retention?: { bytes: number; hours: number };
  /** Injectable clock (retention). */
  now?: () => number;
}

/** A position in the log: segment file name and byte offset in it. */
export interface LogPosition {
  segment: string;
  offset: number;
}

interface Batch {
  lines: string[];
  bytes: number;
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: unknown) => void;
}

const SEGMENT_RE = /^(\d{12})\.ndjson$/;

/** Lists the segment files of a directory in log order. */
export function listSegments(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names.filter((n) => SEGMENT_RE.test(n)).sort();
}

function newBatch(): Batch {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // A batch nobody awaits (e.g. a checkpoint) must not crash the process on failure.
  promise.catch(() => undefined);
  return { lines: [], bytes: 0, promise, resolve, reject };
}

/** Writes all of `buf` at file offset `at` (explicit positions: the fd is opened r+ so recovery can truncate). */
function writeAll(fd: number, buf: Buffer, at: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const step = (off: number): void => {
      write(fd, buf, off, buf.length - off, at + off, (err, n) => {
        if (err) return reject(err);
        if (off + n < buf.length) return step(off + n);
        resolve();
      });
    };
    step(0);
  });
}

/**
 * The active segment is opened with O_DSYNC where the platform has it: each
 * write then returns only once its data (and the size needed to read it back)
 * is on stable storage, exactly what write + fdatasync gives, in one trip to
 * the libuv pool instead of two: about 10 % less CPU per event at 1,000
 * small events/s (`npm run bench:local-log`; docs/benchmarks.md, "Event
 * pipeline"). Without O_DSYNC (Windows) every write is followed by fdatasync.
 */
const O_DSYNC: number | undefined = constants.O_DSYNC;

function datasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fdatasync(fd, (err) => (err ? reject(err) : resolve())));
}

function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Append-only segmented NDJSON log with group commit. */
export class SegmentLog {
  readonly dir: string;
  readonly #opts: SegmentLogOptions;
  #fd = -1;
  #segment = '';
  #index = 0;
  /** Bytes of the current segment that are written and fdatasync'd. */
  #durableSize = 0;
  /** Sizes of closed segments, by name. */
  readonly #closed = new Map<string, number>();
  #pending: Batch = newBatch();
  #inflight: Batch | undefined;
  #writing = false;
  #closedLog = false;
  #lastLine: string | undefined;

  private constructor(opts: SegmentLogOptions) {
    this.dir = opts.dir;
    this.#opts = opts;
  }

  /**
   * Opens the log, creating its directory, truncating a torn last line, and
   * enforcing retention. Throws SinkError SINK_ERR_DATA_DIR naming `setting`
   * when the directory cannot be created or written.
   */
  static open(opts: SegmentLogOptions, setting = 'dataDir'): SegmentLog {
    const log = new SegmentLog(opts);
    try {
      mkdirSync(opts.dir, { recursive: true });
      const segs = listSegments(opts.dir);
      for (const s of segs.slice(0, -1)) log.#closed.set(s, statSync(path.join(opts.dir, s)).size);
      const last = segs.at(-1);
      if (last !== undefined) {
        log.#index = Number(SEGMENT_RE.exec(last)?.[1] ?? 0);
        log.#segment = last;
        log.#fd = openSync(path.join(opts.dir, last), constants.O_RDWR | (O_DSYNC ?? 0));
        log.#durableSize = recoverTail(log.#fd, (line) => (log.#lastLine = line));
        if (log.#lastLine === undefined) log.#lastLine = lastLineOfClosed(opts.dir, segs.slice(0, -1));
      } else {
        log.#roll();
      }
      log.#enforceRetention();
    } catch (err) {
      if (err instanceof SinkError) throw err;
      throw new SinkError('SINK_ERR_DATA_DIR', `${setting}: cannot write the log directory ${opts.dir} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { setting, cause: err });
    }
    return log;
  }

  /** Last complete line found when the log was opened (used to recover the chain head). */
  get lastLineAtOpen(): string | undefined {
    return this.#lastLine;
  }

  /** Total bytes on disk (durable). */
  get bytes(): number {
    let n = this.#durableSize;
    for (const s of this.#closed.values()) n += s;
    return n;
  }

  /** Bytes accepted by append() but not yet durable. */
  get pendingBytes(): number {
    return this.#pending.bytes;
  }

  /** True while appends are waiting or being written. */
  get busy(): boolean {
    return this.#writing || this.#pending.lines.length > 0;
  }

  /** End of the durable data: readers never read past it. */
  get durableEnd(): LogPosition {
    return { segment: this.#segment, offset: this.#durableSize };
  }

  /** Segment names in order (closed ones, then the current one). */
  segments(): string[] {
    return [...this.#closed.keys(), this.#segment];
  }

  /**
   * Appends lines (each one canonical event, without `\n`); resolves once
   * they are written and fdatasync'd. Lines of one call stay contiguous and
   * in order; calls are written in call order.
   */
  append(lines: readonly string[]): Promise<void> {
    if (this.#closedLog) return Promise.reject(new SinkError('SINK_ERR_CLOSED', 'log is closed'));
    const b = this.#pending;
    for (const l of lines) {
      b.lines.push(l);
      b.bytes += Buffer.byteLength(l) + 1;
    }
    if (!this.#writing) void this.#run();
    return b.promise;
  }

  async #run(): Promise<void> {
    this.#writing = true;
    try {
      if (this.#opts.groupCommitMs > 0) await new Promise((r) => setTimeout(r, this.#opts.groupCommitMs));
      while (this.#pending.lines.length > 0) {
        const b = this.#pending;
        this.#pending = newBatch();
        this.#inflight = b;
        try {
          const buf = Buffer.from(b.lines.join('\n') + '\n', 'utf8');
          await writeAll(this.#fd, buf, this.#durableSize);
          if (O_DSYNC === undefined) await datasync(this.#fd);
          this.#durableSize += buf.length;
          b.resolve();
        } catch (err) {
          // The bytes may be partly on disk: cut them off so the log stays line-aligned.
          try {
            ftruncateSync(this.#fd, this.#durableSize);
          } catch {
            // nothing more to do; the error is reported below
          }
          b.reject(new SinkError('SINK_ERR_IO', `cannot write ${path.join(this.dir, this.#segment)} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { setting: 'dataDir', cause: err }));
        }
        if (this.#durableSize >= this.#opts.segmentBytes) {
          try {
            this.#roll();
          } catch {
            // The current segment stays open and in use (#roll): the next write tries again.
            continue;
          }
          try {
            this.#enforceRetention();
          } catch (err) {
            this.#pending.reject(new SinkError('SINK_ERR_IO', `cannot delete old segments (retention) in ${this.dir}`, { setting: 'dataDir', cause: err }));
            this.#pending = newBatch();
          }
        }
      }
    } finally {
      this.#inflight = undefined;
      this.#writing = false;
    }
  }

  /**
   * Starts the next segment. The new file is created (and its directory
   * entry made durable) before the current one is given up: when that fails
   * (ENOSPC, EMFILE) the log keeps appending to the current segment and a
   * later roll tries again, instead of being left without an open file.
   */
  #roll(): void {
    const segment = `${String(this.#index + 1).padStart(12, '0')}.ndjson`;
    const file = path.join(this.dir, segment);
    const fd = openSync(file, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | (O_DSYNC ?? 0));
    try {
      // The new directory entry must be durable too, or a crash could lose a whole segment.
      fsyncDir(this.dir);
    } catch (err) {
      closeSync(fd);
      try {
        unlinkSync(file);
      } catch {
        // left empty: an empty segment reads as no lines
      }
      throw err;
    }
    if (this.#fd >= 0) {
      closeSync(this.#fd);
      this.#closed.set(this.#segment, this.#durableSize);
    }
    this.#index += 1;
    this.#segment = segment;
    this.#fd = fd;
    this.#durableSize = 0;
  }

  /** Deletes closed segments before `segment` (the spool, once drained past them). */
  deleteBefore(segment: string): void {
    for (const name of [...this.#closed.keys()]) {
      if (name >= segment) break;
      unlinkSync(path.join(this.dir, name));
      this.#closed.delete(name);
    }
  }

  /**
   * Deletes closed segments past the size or age bound (oldest first). Runs
   * on open and on every roll; the local log sink also calls it on a timer so
   * a quiet log still ages out.
   */
  enforceRetention(): void {
    this.#enforceRetention();
  }

  #enforceRetention(): void {
    const r = this.#opts.retention;
    if (r === undefined) return;
    const now = (this.#opts.now ?? Date.now)();
    const oldest = now - r.hours * 3600_000;
    for (const name of [...this.#closed.keys()]) {
      const p = path.join(this.dir, name);
      if (this.bytes <= r.bytes && statSync(p).mtimeMs >= oldest) break;
      unlinkSync(p);
      this.#closed.delete(name);
    }
  }

  /** Resolves when everything appended so far is durable. */
  async flush(): Promise<void> {
    for (;;) {
      if (this.#pending.lines.length > 0) await this.#pending.promise.catch(() => undefined);
      else if (this.#inflight !== undefined) await this.#inflight.promise.catch(() => undefined);
      else if (this.#writing) await new Promise((r) => setImmediate(r));
      else return;
    }
  }

  /** Flushes and closes the current segment. */
  async close(): Promise<void> {
    await this.flush();
    this.#closedLog = true;
    if (this.#fd >= 0) closeSync(this.#fd);
    this.#fd = -1;
  }
}

/** Truncates a torn last line; returns the durable size; reports the last complete line. */
function recoverTail(fd: number, onLast: (line: string) => void): number {
  const size = fstatSync(fd).size;
  if (size === 0) return 0;
  const chunk = 1 << 20;
  let end = size;
  let tail = Buffer.alloc(0);
  // Read backwards until the last '\n' and the one before it are found.
  while (end > 0) {
    const start = Math.max(0, end - chunk);
    const buf = Buffer.alloc(end - start);
    readSync(fd, buf, 0, buf.length, start);
    tail = Buffer.concat([buf, tail]);
    end = start;
    const lastNl = tail.lastIndexOf(0x0a);
    if (lastNl >= 0 && (tail.lastIndexOf(0x0a, lastNl - 1) >= 0 || end === 0)) break;
  }
  const base = size - tail.length;
  const lastNl = tail.lastIndexOf(0x0a);
  const durable = lastNl < 0 ? base : base + lastNl + 1;
  if (durable < size) ftruncateSync(fd, durable);
  if (lastNl >= 0) {
    const prevNl = tail.lastIndexOf(0x0a, lastNl - 1);
    onLast(tail.subarray(prevNl + 1, lastNl).toString('utf8'));
  }
  return durable;
}

function lastLineOfClosed(dir: string, segs: string[]): string | undefined {
  for (let i = segs.length - 1; i >= 0; i--) {
    const fd = openSync(path.join(dir, segs[i] as string), 'r');
    try {
      let line: string | undefined;
      recoverTailReadOnly(fd, (l) => (line = l));
      if (line !== undefined) return line;
    } finally {
      closeSync(fd);
    }
  }
  return undefined;
}

function recoverTailReadOnly(fd: number, onLast: (line: string) => void): void {
  const size = fstatSync(fd).size;
  if (size === 0) return;
  const buf = Buffer.alloc(Math.min(size, 16 << 20));
  readSync(fd, buf, 0, buf.length, size - buf.length);
  const lastNl = buf.lastIndexOf(0x0a);
  if (lastNl < 0) return;
  const prevNl = buf.lastIndexOf(0x0a, lastNl - 1);
  onLast(buf.subarray(prevNl + 1, lastNl).toString('utf8'));
}

/**
 * Reads complete lines from `pos` up to `end` (exclusive), at most
 * `maxLines` lines / about `maxBytes` bytes. Returns the lines and the
 * position after the last one returned. Segments are read in name order.
 */
export function readLines(dir: string, pos: LogPosition, end: LogPosition, maxLines: number, maxBytes: number, perLineOverhead = 0): { lines: string[]; next: LogPosition } {
  const lines: string[] = [];
  let cur = { ...pos };
  let bytes = 0;
  const segs = listSegments(dir);
  while (lines.length < maxLines && bytes < maxBytes) {
    if (cur.segment === '' || !segs.includes(cur.segment)) {
      const nextSeg = segs.find((s) => s > cur.segment);
      if (nextSeg === undefined || nextSeg > end.segment) break;
      cur = { segment: nextSeg, offset: 0 };
    }
    const limit = cur.segment === end.segment ? end.offset : statSync(path.join(dir, cur.segment)).size;
    if (cur.offset >= limit) {
      if (cur.segment >= end.segment) break;
      const nextSeg = segs.find((s) => s > cur.segment);
      if (nextSeg === undefined) break;
      cur = { segment: nextSeg, offset: 0 };
      continue;
    }
    const want = Math.min(limit - cur.offset, Math.max(maxBytes - bytes, 64 * 1024));
    const buf = Buffer.alloc(want);
    const fd = openSync(path.join(dir, cur.segment), 'r');
    let n: number;
    try {
      n = readSync(fd, buf, 0, want, cur.offset);
    } finally {
      closeSync(fd);
    }
    let start = 0;
    let progressed = false;
    let full = false;
    for (;;) {
      const nl = buf.indexOf(0x0a, start);
      if (nl < 0 || nl >= n) break;
      const cost = nl + 1 - start + perLineOverhead;
      // Never exceed maxBytes, except with a single line (it must go somehow).
      if (lines.length > 0 && bytes + cost > maxBytes) {
        full = true;
        break;
      }
      lines.push(buf.subarray(start, nl).toString('utf8'));
      bytes += cost;
      start = nl + 1;
      progressed = true;
      if (lines.length >= maxLines) break;
    }
    if (full) {
      cur = { segment: cur.segment, offset: cur.offset + start };
      break;
    }
    if (!progressed) {
      if (want < limit - cur.offset) {
        // A single line longer than the read window: read it whole.
        const big = Buffer.alloc(limit - cur.offset);
        const fd2 = openSync(path.join(dir, cur.segment), 'r');
        try {
          readSync(fd2, big, 0, big.length, cur.offset);
        } finally {
          closeSync(fd2);
        }
        const nl = big.indexOf(0x0a);
        if (nl < 0) break;
        lines.push(big.subarray(0, nl).toString('utf8'));
        bytes += nl + 1;
        cur = { segment: cur.segment, offset: cur.offset + nl + 1 };
        continue;
      }
      break;
    }
    cur = { segment: cur.segment, offset: cur.offset + start };
  }
  return { lines, next: cur };
}
