/**
 * One reading of typed keys: the command line as an emacs-mode line editor
 * (GNU readline in bash, busybox's lineedit in ash) holds it. The keys
 * modelled are those both editors bind the same way by default; every other
 * control byte, escape sequence or non-ASCII byte makes the line *opaque* (the
 * gateway can no longer know what the shell holds). Keys that read the next
 * key as their argument (ctrl-v, ctrl-q, ctrl-], ctrl-x, meta) consume it, so
 * a quoted CR is not taken for an Enter — but because another shell might
 * take it for one, such a CR is reported as a *possible* Enter and judged.
 *
 * Bytes >= 0x80 are opaque because their meaning depends on the locale: in
 * the C locale readline turns them into meta keys (0xEC is M-l,
 * downcase-word), in UTF-8 they are characters that Backspace removes whole.
 */
import type { Step } from './tty-line.ts';

type State = 'GROUND' | 'ESC' | 'CSI' | 'SS3' | 'QUOTE' | 'ARG' | 'CX';

const PASTE_END = '\x1b[201~';

/** True for the bytes some shell takes as the end of a line. */
export function isEnterByte(code: number): boolean {
  return code === 0x0d || code === 0x0a;
}

/** True when the line ends with an unescaped backslash: the shell reads on (PS2). */
export function continues(text: string): boolean {
  let n = 0;
  for (let i = text.length - 1; i >= 0 && text[i] === '\\'; i--) n++;
  return n % 2 === 1;
}

/** The line as readline / busybox lineedit edit it. */
export class ReadlineLine {
  #chars: string[] = [];
  #cursor = 0;
  #opaque = false;
  /** ctrl-o loads the next history line once the current one has run. */
  #opaqueNext = false;
  /** Earlier lines ending in `\`, joined (backslash-newline removed, as the shell does). */
  #cont = '';
  #state: State = 'GROUND';
  #csi = '';
  #paste = false;
  #pasteEsc = '';
  readonly #maxLine: number;

  constructor(maxLine: number) {
    this.#maxLine = maxLine;
  }

  /** The whole logical line so far. */
  get text(): string {
    return this.#cont + this.#chars.join('');
  }

  get opaque(): boolean {
    return this.#opaque;
  }

  /** Inside a bracketed paste (where readline inserts CR and LF as text). */
  get pasting(): boolean {
    return this.#paste;
  }

  /** Whether earlier lines wait for this one (the shell shows PS2). */
  get continued(): boolean {
    return this.#cont !== '';
  }

  /** Forgets everything: ctrl-c, or a blocked line cleared remotely. */
  reset(): void {
    this.#chars = [];
    this.#cursor = 0;
    this.#opaque = false;
    this.#opaqueNext = false;
    this.#cont = '';
    this.#state = 'GROUND';
    this.#csi = '';
    this.#paste = false;
    this.#pasteEsc = '';
  }

  /** Feeds one byte (a latin1 character). */
  step(ch: string): Step {
    const code = ch.charCodeAt(0);
    if (this.#paste) return this.#pasteStep(ch, code);
    switch (this.#state) {
      case 'GROUND':
        return this.#ground(ch, code);
      case 'ESC':
        return this.#escStep(ch, code);
      case 'CSI':
      case 'SS3':
        return this.#seqStep(ch, code);
      default:
        // QUOTE / ARG / CX: this byte is the argument of the previous key.
        this.#state = 'GROUND';
        this.#opaque = true;
        return isEnterByte(code) ? this.#maybe() : null;
    }
  }

  #maybe(): Step {
    return { type: 'maybe', line: this.text, opaque: true };
  }

  #enter(): Step {
    const text = this.text;
    if (continues(text)) {
      this.#cont = text.slice(0, -1);
      this.#chars = [];
      this.#cursor = 0;
      return { type: 'continue' };
    }
    const step: Step = { type: 'enter', line: text, opaque: this.#opaque };
    const next = this.#opaqueNext;
    this.reset();
    this.#opaque = next;
    return step;
  }

  #insert(ch: string): void {
    if (this.#chars.length >= this.#maxLine) {
      this.#opaque = true;
      return;
    }
    this.#chars.splice(this.#cursor, 0, ch);
    this.#cursor++;
  }

  #ground(ch: string, code: number): Step {
    if (code >= 0x20 && code < 0x7f) {
      this.#insert(ch);
      return null;
    }
    switch (code) {
      case 0x0d: // Enter (ctrl-m)
      case 0x0a: // ctrl-j: accept-line too
        return this.#enter();
      case 0x0f: // ctrl-o: operate-and-get-next runs the line, then loads the next history entry
        this.#opaqueNext = true;
        return this.#enter();
      case 0x7f: // DEL (Backspace)
      case 0x08: // ctrl-h
        if (this.#cursor > 0) this.#chars.splice(--this.#cursor, 1);
        return null;
      case 0x04: // ctrl-d: delete-char (EOF on an empty line: nothing left to judge)
        if (this.#cursor < this.#chars.length) this.#chars.splice(this.#cursor, 1);
        return null;
      case 0x15: // ctrl-u: kill backwards to the start of the line
        this.#chars.splice(0, this.#cursor);
        this.#cursor = 0;
        return null;
      case 0x17: {
        // ctrl-w: unix-word-rubout (whitespace-delimited, like busybox's ctrl-w)
        let i = this.#cursor;
        while (i > 0 && /\s/.test(this.#chars[i - 1] as string)) i--;
        while (i > 0 && !/\s/.test(this.#chars[i - 1] as string)) i--;
        this.#chars.splice(i, this.#cursor - i);
        this.#cursor = i;
        return null;
      }
      case 0x0b: // ctrl-k: kill to the end
        this.#chars.splice(this.#cursor);
        return null;
      case 0x01: // ctrl-a
        this.#cursor = 0;
        return null;
      case 0x05: // ctrl-e
        this.#cursor = this.#chars.length;
        return null;
      case 0x02: // ctrl-b
        if (this.#cursor > 0) this.#cursor--;
        return null;
      case 0x06: // ctrl-f
        if (this.#cursor < this.#chars.length) this.#cursor++;
        return null;
      case 0x0c: // ctrl-l: clear-screen, the line is kept
        return null;
      case 0x03: // ctrl-c: the shell discards the line, and any continued lines
        this.reset();
        return null;
      case 0x1b:
        this.#state = 'ESC';
        return null;
      case 0x16: // ctrl-v: quoted-insert
      case 0x11: // ctrl-q: quoted-insert (or flow control)
      case 0x1d: // ctrl-]: character-search reads the character to find
        this.#opaque = true;
        this.#state = code === 0x1d ? 'ARG' : 'QUOTE';
        return null;
      case 0x18: // ctrl-x: a prefix (ctrl-x ctrl-u undo, ctrl-x ctrl-e edit-and-execute ...)
        this.#opaque = true;
        this.#state = 'CX';
        return null;
      default:
        // Tab (completion), ctrl-p/n (history), ctrl-r/s (search), ctrl-y (yank),
        // ctrl-t (transpose), ctrl-_ (undo), ctrl-@ (mark), ctrl-g, ctrl-z, and any
        // byte >= 0x80: an edit that happens only in the remote shell.
        this.#opaque = true;
        return null;
    }
  }

  #escStep(ch: string, code: number): Step {
    if (ch === '[') {
      this.#state = 'CSI';
      this.#csi = '';
      return null;
    }
    if (ch === 'O') {
      this.#state = 'SS3';
      this.#csi = '';
      return null;
    }
    // A meta key (alt-b, alt-l, alt-., ESC ctrl-m = vi mode ...): remote edit.
    this.#opaque = true;
    this.#state = code === 0x1d ? 'ARG' : 'GROUND';
    // readline reads ESC CR as a meta key; busybox (and a tty) run the line.
    return isEnterByte(code) ? this.#maybe() : null;
  }

  #seqStep(ch: string, code: number): Step {
    if (this.#state === 'CSI' && code >= 0x20 && code <= 0x3f && this.#csi.length < 16) {
      this.#csi += ch;
      return null;
    }
    const ss3 = this.#state === 'SS3';
    this.#state = 'GROUND';
    if (code < 0x40 || code > 0x7e) {
      // Not a complete sequence: how the shell reads the rest is unknown.
      this.#opaque = true;
      return isEnterByte(code) ? this.#maybe() : this.#ground(ch, code);
    }
    const seq = this.#csi + ch;
    if (!ss3 && seq === '200~') {
      this.#paste = true;
      return null;
    }
    if (!ss3 && seq === '3~') {
      // Delete: the character under the cursor
      if (this.#cursor < this.#chars.length) this.#chars.splice(this.#cursor, 1);
      return null;
    }
    switch (ss3 || seq.length === 1 ? ch : '') {
      case 'C':
        if (this.#cursor < this.#chars.length) this.#cursor++;
        return null;
      case 'D':
        if (this.#cursor > 0) this.#cursor--;
        return null;
      case 'H':
        this.#cursor = 0;
        return null;
      case 'F':
        this.#cursor = this.#chars.length;
        return null;
      default:
        // Up/down (history), modified arrows (word moves), Insert, F-keys, and the rest.
        this.#opaque = true;
        return null;
    }
  }

  /** Bracketed paste: bash inserts everything literally until ESC [ 201 ~. */
  #pasteStep(ch: string, code: number): Step {
    if (this.#pasteEsc !== '' || code === 0x1b) {
      this.#pasteEsc += ch;
      if (this.#pasteEsc === PASTE_END) {
        this.#paste = false;
        this.#pasteEsc = '';
      } else if (!PASTE_END.startsWith(this.#pasteEsc)) {
        for (const c of this.#pasteEsc) this.#insert(c);
        this.#pasteEsc = '';
        this.#opaque = true;
      }
      return null;
    }
    if (isEnterByte(code)) {
      // Text to bash, but a shell that does not know bracketed paste runs the line here.
      const step: Step = { type: 'maybe', line: this.text, opaque: this.#opaque };
      this.#insert('\n');
      return step;
    }
    // Control bytes are text to bash and live keys to busybox: opaque either way.
    if (code < 0x20 || code >= 0x7f) this.#opaque = true;
    this.#insert(ch);
    return null;
  }
}
