/**
 * The tty line editor: rebuilds, from the raw stdin bytes of an interactive
 * session, the command line a shell will run, so that the line can be checked
 * against ExecPolicy before the key that runs it is forwarded.
 *
 * The gateway cannot see which line editor is at the other end, so it keeps
 * two readings of the same keys and a line must pass in both:
 * {@link ReadlineLine} (bash's readline and busybox's lineedit, emacs mode)
 * and {@link TtyLine} (the kernel's canonical mode: dash, `--noediting`,
 * type-ahead). Every key a reading does not model makes that reading
 * *opaque*; the policy's `opaqueLines` then decides. A line that ends in `\`
 * is not run by the shell, so it is judged with the line that completes it.
 */
import { ReadlineLine } from './readline-line.ts';
import { TtyLine, type Step } from './tty-line.ts';

/** A line some shell would run now, as one reading rebuilt it. */
export interface TypedLine {
  readonly line: string;
  readonly opaque: boolean;
}

/**
 * One result of feeding bytes: bytes to forward, or a key after which a shell
 * may run a line (`lines`: every distinct reading that would run; empty when
 * the key only continues a line) — forward `data` only if the lines are allowed.
 */
export type LineEvent =
  | { readonly type: 'bytes'; readonly data: Buffer }
  | { readonly type: 'enter'; readonly lines: readonly TypedLine[]; readonly data: Buffer };

const PASTE_END = '\x1b[201~';

/**
 * ctrl-e ctrl-u, with the ctrl-e repeated: after an escape sequence it does
 * not know, busybox's read_key discards up to KEYCODE_BUFFER_SIZE - 1 (15)
 * further bytes, which would otherwise swallow the clearing keys and leave
 * the blocked line in place for the next Enter. Extra ctrl-e are harmless in
 * readline and busybox, and in canonical mode the ctrl-u kills them too.
 */
const CLEAR = '\x05'.repeat(16) + '\x15';

/** Rebuilds typed lines; feed it stdin, get bytes and Enter events in order. */
export class LineEditor {
  readonly #rl: ReadlineLine;
  readonly #tty: TtyLine;
  /** After a line blocked inside a bracketed paste: the rest of that paste is dropped. */
  #discard = '';
  #discarding = false;

  constructor(opts: { maxLineBytes?: number } = {}) {
    const max = opts.maxLineBytes ?? 8192;
    this.#rl = new ReadlineLine(max);
    this.#tty = new TtyLine(max);
  }

  /** The line as readline would hold it (for tests and diagnostics). */
  get line(): string {
    return this.#rl.text;
  }

  /**
   * Feeds stdin bytes, yielding them split at each key that may run a line.
   * The consumer decides each `enter` before taking the next event, and calls
   * {@link blocked} when it withholds the key.
   */
  *feed(data: Buffer): Generator<LineEvent> {
    const text = data.toString('latin1');
    let from = 0;
    for (let i = 0; i < text.length; i++) {
      const ch = text[i] as string;
      if (this.#discarding) {
        this.#discard = (this.#discard + ch).slice(-PASTE_END.length);
        if (this.#discard === PASTE_END) this.#discarding = false;
        from = i + 1;
        continue;
      }
      const a = this.#rl.step(ch);
      const b = this.#tty.step(ch);
      if (a === null && b === null) continue;
      if (i > from) yield { type: 'bytes', data: data.subarray(from, i) };
      from = i + 1;
      yield { type: 'enter', lines: linesOf(a, b), data: data.subarray(i, i + 1) };
    }
    if (from < text.length) yield { type: 'bytes', data: data.subarray(from) };
  }

  /**
   * The line just offered was denied: returns the keys that clear it in the
   * remote shell (sent instead of the withheld key) and forgets it. ctrl-e
   * ctrl-u (see CLEAR) clears a readline/busybox line wherever the cursor is
   * (and a canonical-mode line); earlier lines ended with `\` need ctrl-c; inside a
   * bracketed paste, the paste is ended first and the rest of it dropped.
   */
  blocked(): Buffer {
    let keys = '';
    if (this.#rl.pasting) {
      keys += PASTE_END;
      this.#discarding = true;
      this.#discard = '';
    }
    keys += CLEAR;
    if (this.#rl.continued || this.#tty.continued) keys += '\x03';
    this.#rl.reset();
    this.#tty.reset();
    return Buffer.from(keys, 'latin1');
  }
}

function linesOf(...steps: Step[]): TypedLine[] {
  const out: TypedLine[] = [];
  for (const s of steps) {
    if (s === null || s.type === 'continue') continue;
    if (!out.some((o) => o.line === s.line && o.opaque === s.opaque)) out.push({ line: s.line, opaque: s.opaque });
  }
  return out;
}
