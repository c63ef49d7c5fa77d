/**
 * The tty line editor: rebuilds the command line a person (or an agent) types
 * into an interactive shell from the raw stdin bytes, so each line can be
 * checked against ExecPolicy before its Enter is forwarded.
 *
 * It follows what the common line editors (readline emacs mode, the kernel's
 * canonical mode) do with: printable text, Backspace/DEL and ctrl-h, ctrl-u,
 * ctrl-w, ctrl-k, ctrl-a/ctrl-e, Home/End, Delete, the left/right arrows,
 * ctrl-c (discards the line), bracketed paste, and Enter (CR or LF). Keys whose
 * effect lives only in the remote shell — history (up/down, ctrl-p/n), tab
 * completion, reverse search (ctrl-r), yank (ctrl-y) — make the line *opaque*:
 * kubetrail can no longer tell what the shell will run, and policy decides.
 */

/** One result of feeding bytes: text to forward, or an Enter to check first. */
export type LineEvent =
  | { readonly type: 'bytes'; readonly data: Buffer }
  | { readonly type: 'enter'; readonly line: string; readonly opaque: boolean; readonly data: Buffer };

type EscState = 'GROUND' | 'ESC' | 'CSI' | 'SS3' | 'PASTE';

/** Rebuilds typed lines; feed it stdin, get bytes and Enter events in order. */
export class LineEditor {
  #chars: string[] = [];
  #cursor = 0;
  #opaque = false;
  #esc: EscState = 'GROUND';
  #csi = '';
  #paste = false;
  readonly #maxLine: number;

  constructor(opts: { maxLineBytes?: number } = {}) {
    this.#maxLine = opts.maxLineBytes ?? 8192;
  }

  /** The line as rebuilt so far (for tests and diagnostics). */
  get line(): string {
    return this.#chars.join('');
  }

  /** Clears the line (after a blocked Enter, when ctrl-u was sent upstream). */
  reset(): void {
    this.#chars = [];
    this.#cursor = 0;
    this.#opaque = false;
  }

  /**
   * Feeds stdin bytes. Returns them split at each Enter: `bytes` events can be
   * forwarded at once; an `enter` event carries the line and the Enter byte(s),
   * which must be forwarded only if the line is allowed.
   */
  feed(data: Buffer): LineEvent[] {
    const out: LineEvent[] = [];
    let from = 0;
    const text = data.toString('latin1');
    for (let i = 0; i < text.length; i++) {
      const ch = text[i] as string;
      const code = ch.charCodeAt(0);
      if (this.#esc !== 'GROUND' && this.#esc !== 'PASTE') {
        this.#escape(ch);
        continue;
      }
      if (code === 0x1b) {
        this.#esc = 'ESC';
        continue;
      }
      if (this.#esc === 'PASTE' || this.#paste) {
        // Bracketed paste: text is literal, but an Enter inside still runs the line.
        if (ch !== '\r' && ch !== '\n') {
          this.#insert(ch);
          continue;
        }
      }
      if (ch === '\r' || ch === '\n') {
        if (i > from) out.push({ type: 'bytes', data: data.subarray(from, i) });
        // CR LF typed together is one Enter.
        const end = ch === '\r' && text[i + 1] === '\n' ? i + 2 : i + 1;
        out.push({ type: 'enter', line: this.line, opaque: this.#opaque, data: data.subarray(i, end) });
        this.reset();
        from = end;
        i = end - 1;
        continue;
      }
      this.#control(ch, code);
    }
    if (from < text.length) out.push({ type: 'bytes', data: data.subarray(from) });
    return out;
  }

  #insert(ch: string): void {
    if (this.#chars.length >= this.#maxLine) {
      // Past the limit the line cannot be checked faithfully.
      this.#opaque = true;
      return;
    }
    this.#chars.splice(this.#cursor, 0, ch);
    this.#cursor++;
  }

  #control(ch: string, code: number): void {
    switch (code) {
      case 0x7f: // DEL (what terminals send for Backspace)
      case 0x08: // ctrl-h
        if (this.#cursor > 0) {
          this.#chars.splice(this.#cursor - 1, 1);
          this.#cursor--;
        }
        return;
      case 0x15: // ctrl-u: kill to start of line
        this.#chars.splice(0, this.#cursor);
        this.#cursor = 0;
        return;
      case 0x17: {
        // ctrl-w: kill the word before the cursor (whitespace-delimited, as readline's unix-word-rubout)
        let i = this.#cursor;
        while (i > 0 && /\s/.test(this.#chars[i - 1] as string)) i--;
        while (i > 0 && !/\s/.test(this.#chars[i - 1] as string)) i--;
        this.#chars.splice(i, this.#cursor - i);
        this.#cursor = i;
        return;
      }
      case 0x0b: // ctrl-k: kill to end
        this.#chars.splice(this.#cursor);
        return;
      case 0x01: // ctrl-a
        this.#cursor = 0;
        return;
      case 0x05: // ctrl-e
        this.#cursor = this.#chars.length;
        return;
      case 0x02: // ctrl-b
        if (this.#cursor > 0) this.#cursor--;
        return;
      case 0x06: // ctrl-f
        if (this.#cursor < this.#chars.length) this.#cursor++;
        return;
      case 0x03: // ctrl-c: the shell discards the line
        this.reset();
        return;
      case 0x09: // tab: completion happens remotely
      case 0x10: // ctrl-p: history
      case 0x0e: // ctrl-n: history
      case 0x12: // ctrl-r: reverse search
      case 0x19: // ctrl-y: yank
      case 0x14: // ctrl-t: transpose (remote effect we do not model)
        this.#opaque = true;
        return;
      default:
        if (code >= 0x20) this.#insert(ch);
      // Other control bytes (ctrl-d, ctrl-l, ctrl-z ...) do not change the line text.
    }
  }

  #escape(ch: string): void {
    if (this.#esc === 'ESC') {
      if (ch === '[') {
        this.#esc = 'CSI';
        this.#csi = '';
      } else if (ch === 'O') {
        this.#esc = 'SS3';
      } else {
        // Meta-key combinations (alt-b, alt-d, alt-.) edit remotely in ways we do not model.
        this.#esc = this.#paste ? 'PASTE' : 'GROUND';
        this.#opaque = true;
      }
      return;
    }
    if (this.#esc === 'SS3') {
      this.#esc = this.#paste ? 'PASTE' : 'GROUND';
      this.#arrow(ch);
      return;
    }
    // CSI: parameters until a final byte 0x40..0x7e
    const code = ch.charCodeAt(0);
    if (code < 0x40 || code > 0x7e) {
      this.#csi += ch;
      if (this.#csi.length > 16) {
        this.#esc = 'GROUND';
        this.#opaque = true;
      }
      return;
    }
    this.#esc = this.#paste ? 'PASTE' : 'GROUND';
    const seq = this.#csi + ch;
    if (seq === '200~') {
      this.#paste = true;
      this.#esc = 'PASTE';
    } else if (seq === '201~') {
      this.#paste = false;
      this.#esc = 'GROUND';
    } else if (seq === '3~') {
      // Delete: the character under the cursor
      if (this.#cursor < this.#chars.length) this.#chars.splice(this.#cursor, 1);
    } else if (seq === '1~' || seq === '7~') this.#cursor = 0;
    else if (seq === '4~' || seq === '8~') this.#cursor = this.#chars.length;
    else if (seq.length === 1 || /^1;\d[A-H]$/.test(seq)) this.#arrow(seq.slice(-1));
    else this.#opaque = true;
  }

  #arrow(final: string): void {
    switch (final) {
      case 'C':
        if (this.#cursor < this.#chars.length) this.#cursor++;
        return;
      case 'D':
        if (this.#cursor > 0) this.#cursor--;
        return;
      case 'H':
        this.#cursor = 0;
        return;
      case 'F':
        this.#cursor = this.#chars.length;
        return;
      default:
        // Up/down (history) and anything else: the remote line changed in a way we cannot see.
        this.#opaque = true;
    }
  }
}
