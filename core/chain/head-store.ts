/**
 * Persists the head (seq, hash) of a source's chain in the data dir, so that a
 * restarted process with the same instance id continues the chain instead of
 * starting a new one at seq 1.
 *
 * The head is rewritten in place (one small pwrite, no fsync) after every
 * durable batch: a SIGKILL keeps it (the page cache survives the process); a
 * power cut may leave it behind, which is why the pipeline also takes the
 * highest link found at the tail of the local log / spool and in the
 * in-flight journal on start (fdatasync'd with kafka.journalSync), and the
 * KafkaSink fdatasyncs it once at close.
 */
import { closeSync, fdatasyncSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import { GENESIS_HASH } from './hash.ts';

/** The last link of a chain. */
export interface ChainHead {
  seq: number;
  hash: string;
}

const SIZE = 256;

/** File-backed chain head for one source. */
export class HeadStore {
  readonly file: string;
  readonly #fd: number;
  #last: ChainHead;

  /** Opens (creating) `dir/<name>.head`. Throws the fs error if the directory is unwritable. */
  constructor(dir: string, name: string) {
    mkdirSync(dir, { recursive: true });
    this.file = headFile(dir, name);
    this.#last = readHead(this.file) ?? { seq: 0, hash: GENESIS_HASH };
    this.#fd = openSync(this.file, 'a+');
    closeSync(this.#fd);
    this.#fd = openSync(this.file, 'r+');
  }

  /** The stored head ({0, 64 zeros} for a new chain). */
  get head(): ChainHead {
    return this.#last;
  }

  /** Records a newer head; older or equal seqs are ignored. */
  save(head: ChainHead): void {
    if (head.seq <= this.#last.seq) return;
    this.#last = { seq: head.seq, hash: head.hash };
    const text = JSON.stringify(this.#last).padEnd(SIZE - 1, ' ') + '\n';
    writeSync(this.#fd, text, 0, 'utf8');
  }

  /** Forces the stored head to disk (fdatasync). */
  sync(): void {
    fdatasyncSync(this.#fd);
  }

  /** Closes the file. */
  close(): void {
    try {
      closeSync(this.#fd);
    } catch {
      // already closed
    }
  }
}

/** The head stored in `dir` for the source named `name`, if any (read only). */
export function storedHead(dir: string, name: string): ChainHead | undefined {
  return readHead(headFile(dir, name));
}

function headFile(dir: string, name: string): string {
  return path.join(dir, `${name.replace(/[^A-Za-z0-9._-]/g, '_')}.head`);
}

function readHead(file: string): ChainHead | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
  if (text === '') return undefined;
  try {
    const v = JSON.parse(text) as { seq?: unknown; hash?: unknown };
    if (typeof v.seq === 'number' && Number.isSafeInteger(v.seq) && v.seq >= 0 && typeof v.hash === 'string' && /^[0-9a-f]{64}$/.test(v.hash)) {
      return { seq: v.seq, hash: v.hash };
    }
  } catch {
    // fall through: a torn head is treated as absent; the log/spool tail still counts
  }
  return undefined;
}
