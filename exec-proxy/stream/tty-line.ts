/**
 * One reading of typed keys: the line as the kernel's terminal driver holds
 * it in canonical mode (ICANON with Linux's default control characters), which
 * is what a shell without a line editor (dash, `bash --noediting`, busybox
 * built without editing) and a shell's type-ahead see. Here ctrl-a, arrows and
 * the other readline keys are plain characters, Backspace only removes the
 * last one, and ctrl-d hands what was typed to the shell without an Enter.
 */
import { continues, isEnterByte } from './readline-line.ts';

/**
 * What one byte did to a reading of the line: nothing (null), ran the line
 * (`enter`), may have run it (`maybe`: judged, but the reading keeps its
 * text), or ended a line that continues (`continue`: nothing runs yet).
 */
export type Step =
  | null
  | { readonly type: 'enter' | 'maybe'; readonly line: string; readonly opaque: boolean }
  | { readonly type: 'continue' };

/** The line as the terminal driver's canonical mode edits it. */
export class TtyLine {
  #chars: string[] = [];
  /** Handed to the shell by ctrl-d but not yet run. */
  #committed = '';
  #cont = '';
  #lnext = false;
  #opaque = false;
  readonly #maxLine: number;

  constructor(maxLine: number) {
    this.#maxLine = maxLine;
  }

  get text(): string {
    return this.#cont + this.#committed + this.#chars.join('');
  }

  get continued(): boolean {
    return this.#cont !== '';
  }

  reset(): void {
    this.#chars = [];
    this.#committed = '';
    this.#cont = '';
    this.#lnext = false;
    this.#opaque = false;
  }

  step(ch: string): Step {
    const code = ch.charCodeAt(0);
    if (this.#lnext) {
      // ctrl-v: the next byte is stored as is, CR and LF included (they do not end the line).
      this.#lnext = false;
      this.#append(ch);
      return null;
    }
    if (isEnterByte(code)) return this.#enter();
    switch (code) {
      case 0x7f: // VERASE
        this.#erase(1);
        return null;
      case 0x17: {
        // VWERASE
        let i = this.#chars.length;
        while (i > 0 && /\s/.test(this.#chars[i - 1] as string)) i--;
        while (i > 0 && !/\s/.test(this.#chars[i - 1] as string)) i--;
        this.#erase(this.#chars.length - i);
        return null;
      }
      case 0x15: // VKILL
        this.#chars = [];
        return null;
      case 0x16: // VLNEXT
        this.#lnext = true;
        return null;
      case 0x03: // VINTR, VQUIT, VSUSP: the signal flushes the line
      case 0x1c:
      case 0x1a:
        this.reset();
        return null;
      case 0x11: // VSTART / VSTOP (IXON) never reach the line
      case 0x13:
      case 0x12: // VREPRINT redraws it
        return null;
      case 0x04: // VEOF
        if (this.#chars.length > 0) {
          this.#committed += this.#chars.join('');
          this.#chars = [];
          return null;
        }
        // At the start of a line the shell reads end-of-file and may run what it holds.
        return this.#committed !== '' ? this.#enter() : null;
      default:
        this.#append(ch);
        return null;
    }
  }

  #append(ch: string): void {
    if (this.#chars.length >= this.#maxLine) this.#opaque = true;
    else this.#chars.push(ch);
  }

  #erase(n: number): void {
    for (let k = 0; k < n && this.#chars.length > 0; k++) {
      // With IUTF8 the driver erases a whole character; which one it is depends on the locale.
      if ((this.#chars.pop() as string).charCodeAt(0) >= 0x80) this.#opaque = true;
    }
  }

  #enter(): Step {
    const text = this.text;
    if (continues(text)) {
      this.#cont = text.slice(0, -1);
      this.#committed = '';
      this.#chars = [];
      return { type: 'continue' };
    }
    const step: Step = { type: 'enter', line: text, opaque: this.#opaque };
    this.reset();
    return step;
  }
}
