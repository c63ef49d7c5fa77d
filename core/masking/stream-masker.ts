/**
 * The {@link StreamMasker}: a pure transform that replaces secrets in session
 * bytes as they flow. A secret split across two frames is still masked
 * because the masker holds back only the tail of a frame that could be the
 * start of a secret (a proper prefix of a pattern's start literal, or a
 * started match still growing); the caller releases that tail with `flush()`
 * when the bounded hold time (config.proxy.exec.maskHoldMs) passes without
 * more data. No I/O, no clock: the caller owns the timer.
 *
 * Matches are looked for in the bytes as they are and in the text a terminal
 * would show (escape sequences removed, terminal-text.ts), and the original
 * bytes a match covers are replaced. Block patterns (PEM keys) mask from
 * their opening line until their closing line or the stream's end.
 */
import type { MaskPattern } from './patterns.ts';
import { stripEscapes, visibleText } from './terminal-text.ts';

/** How common a character is in terminal output (lower is rarer); a rough static ranking. */
function commonness(c: string): number {
  if (/[JKQVWXYB]/.test(c)) return 1;
  if (/[A-Z_]/.test(c)) return 2;
  return 3;
}

/** The tail of a start literal beginning at its rarest character (the earliest, on ties). */
function prefilterNeedle(literal: string): string {
  let best = 0;
  for (let i = 1; i < literal.length; i++) {
    if (commonness(literal[i] as string) < commonness(literal[best] as string)) best = i;
  }
  return literal.slice(best);
}

/** Tail of a frame with escapes looked at for a held start: 64 bytes of text plus one escape sequence (terminal-text.ts bounds them at 256). */
const ESC_TAIL = 64 + 256;

/** Longest start literal the built-ins use ("aws_secret_access_key"); custom ones are capped to it for the boundary check. */
const MAX_START_LITERAL = 32;

/** What a masked secret is replaced with. */
export function maskReplacement(name: string): string {
  return `[masked:${name}]`;
}

/**
 * Masks one stream. `push` returns the bytes that are safe to release now and
 * keeps back at most the longest pattern's `maxLength` bytes that could be the
 * start of a secret; `flush` releases them (masking any complete match). Call
 * `flush` when the hold time passes and at end of stream.
 */
export class StreamMasker {
  readonly #patterns: readonly MaskPattern[];
  /**
   * Prefilter needles grouped by first byte: for each start literal, the tail
   * of it that begins at its rarest character (a literal present implies its
   * tail present, so this never misses). `Buffer.indexOf` runs memchr on the
   * first byte, so a rare first byte ('J' of "eyJ", 'X' of "ZXlK", 'B' of
   * "-----BEGIN") makes the scan of ordinary text fast; a group whose first
   * byte is absent is ruled out with one scan.
   */
  readonly #startGroups: { first: number; needles: Buffer[] }[];
  readonly #alwaysScan: boolean;
  readonly #sticky = new Map<MaskPattern, RegExp>();
  readonly #blocks: readonly MaskPattern[];
  #pending = '';
  /** Inside a block secret: everything is dropped until its close. */
  #block: MaskPattern | undefined;
  /** The end of the dropped block text, to find a close split across frames. */
  #blockTail = '';
  /** Secrets replaced so far, by pattern name. */
  readonly counts = new Map<string, number>();

  constructor(patterns: readonly MaskPattern[]) {
    this.#patterns = patterns;
    const groups = new Map<number, Buffer[]>();
    for (const p of patterns) {
      for (const st of p.starts) {
        const b = Buffer.from(prefilterNeedle(st), 'latin1');
        const g = groups.get(b[0] as number) ?? [];
        if (!g.some((x) => x.equals(b))) g.push(b);
        groups.set(b[0] as number, g);
      }
    }
    this.#startGroups = [...groups.entries()].map(([first, needles]) => ({ first, needles }));
    // A pattern without start literals cannot be pre-filtered: scan every frame.
    this.#alwaysScan = patterns.some((p) => p.starts.length === 0);
    for (const p of patterns) this.#sticky.set(p, new RegExp(p.regex.source, 'y'));
    this.#blocks = patterns.filter((p) => p.block !== undefined);
  }

  /** Bytes currently held back. */
  get pendingBytes(): number {
    return this.#pending.length;
  }

  /** Feeds a frame; returns what can be released now (possibly empty). */
  push(chunk: Buffer): Buffer {
    if (this.#patterns.length === 0) return chunk;
    if (this.#block !== undefined) {
      const rest = this.#consumeBlock(this.#pending + chunk.toString('latin1'));
      this.#pending = '';
      return rest === undefined ? Buffer.alloc(0) : this.#slowPushText(rest);
    }
    // An escape sequence can split a start literal ("AK\e[1mIA"): a frame with escapes is
    // prefiltered on its visible text too.
    const esc = chunk.indexOf(0x1b) !== -1;
    if (!this.#alwaysScan && !this.#mayContainStart(chunk) && !this.#pending.includes('\x1b') && (!esc || !this.#mayContainStart(Buffer.from(stripEscapes(chunk.toString('latin1')), 'latin1')))) {
      // Fast path (the common case): no start literal anywhere in the frame.
      // What is pending (a held partial literal) can only complete across the
      // boundary, so look at the boundary alone; if nothing starts there either,
      // release it and treat the frame like any other.
      let prefix = '';
      if (this.#pending.length > 0) {
        // A short frame may extend a partial literal without completing it: work on it whole.
        if (chunk.length < 64 || (esc && chunk.subarray(0, ESC_TAIL).indexOf(0x1b) !== -1)) return this.#slowPush(chunk);
        const boundary = this.#pending + chunk.subarray(0, MAX_START_LITERAL).toString('latin1');
        if (this.#startsIn(boundary)) return this.#slowPush(chunk);
        prefix = this.#pending;
        this.#pending = '';
      }
      const tail = chunk.subarray(Math.max(0, chunk.length - (esc ? ESC_TAIL : 64))).toString('latin1');
      // No start literal in the frame: no match can be growing, only (a) applies.
      const h = esc ? this.#holdAt(tail, false) : this.#holdIndex(tail, false);
      const cut = chunk.length - (tail.length - h);
      this.#pending = tail.slice(h);
      const body = h === tail.length ? chunk : chunk.subarray(0, cut);
      return prefix ? Buffer.concat([Buffer.from(this.#mask(prefix), 'latin1'), body]) : body;
    }
    return this.#slowPush(chunk);
  }

  #startsIn(text: string): boolean {
    for (const p of this.#patterns) for (const s of p.starts) if (text.includes(s)) return true;
    return false;
  }

  #slowPush(chunk: Buffer): Buffer {
    return this.#slowPushText(this.#pending + chunk.toString('latin1'));
  }

  #slowPushText(text: string): Buffer {
    const h = this.#holdAt(text);
    this.#pending = text.slice(h);
    return Buffer.from(this.#mask(text.slice(0, h)), 'latin1');
  }

  /** {@link #holdIndex} on the visible text, mapped back; an unfinished escape at the end is held too. */
  #holdAt(text: string, growing = true): number {
    if (!text.includes('\x1b')) return this.#holdIndex(text, growing);
    const v = visibleText(text);
    const h = this.#holdIndex(v.text, growing);
    let hold = h >= v.text.length ? text.length : (v.map[h] as number);
    if (v.incomplete !== -1 && v.incomplete < hold) hold = v.incomplete;
    return hold;
  }

  /** Drops block text up to and including its close; returns what follows it, or undefined while still inside. */
  #consumeBlock(text: string): string | undefined {
    const block = (this.#block as MaskPattern).block as NonNullable<MaskPattern['block']>;
    const v = visibleText(text);
    const tail = this.#blockTail;
    const m = block.close.exec(tail + v.text);
    if (m === null) {
      this.#blockTail = (tail + v.text).slice(-64);
      return undefined;
    }
    const endVisible = m.index + m[0].length - tail.length;
    this.#block = undefined;
    this.#blockTail = '';
    return text.slice(endVisible <= 0 ? 0 : (v.map[endVisible - 1] as number) + 1);
  }

  /** The earliest block opening in `text` (on its visible text), in `text`'s indices. */
  #findOpen(text: string): { start: number; end: number; pattern: MaskPattern } | undefined {
    let best: { start: number; end: number; pattern: MaskPattern } | undefined;
    if (this.#blocks.length === 0 || !text.includes('-')) return undefined;
    const v = visibleText(text);
    for (const p of this.#blocks) {
      const m = (p.block as NonNullable<MaskPattern['block']>).open.exec(v.text);
      if (m === null) continue;
      const start = v.map[m.index] as number;
      if (best === undefined || start < best.start) best = { start, end: (v.map[m.index + m[0].length - 1] as number) + 1, pattern: p };
    }
    return best;
  }

  /** Releases everything held back, masked. */
  flush(): Buffer {
    if (this.#pending.length === 0 || this.#block !== undefined) {
      // Inside a block at the end of the stream: the rest of it is never shown.
      this.#pending = '';
      return Buffer.alloc(0);
    }
    const text = this.#pending;
    this.#pending = '';
    return Buffer.from(this.#mask(text), 'latin1');
  }

  /**
   * A secret split across two streams (the start held back here, on stdout;
   * the rest arriving on stderr): when the held text followed by `next`
   * holds a match that starts in the held text, the held part of it becomes
   * the replacement here and the number of bytes of `next` it covers is
   * returned, for the other stream to drop. 0 when there is none.
   */
  spliceInto(next: Buffer): number {
    const held = this.#pending.length;
    if (held === 0 || this.#block !== undefined) return 0;
    const text = this.#pending + next.subarray(0, 64 * 1024).toString('latin1');
    const m = this.#ranges(text).find(([start, end]) => start < held && end > held);
    if (m === undefined) return 0;
    const [start, end, name] = m;
    this.counts.set(name, (this.counts.get(name) ?? 0) + 1);
    this.#pending = this.#pending.slice(0, start) + maskReplacement(name);
    return end - held;
  }

  #mayContainStart(chunk: Buffer): boolean {
    for (const g of this.#startGroups) {
      if (g.needles.length > 2 && chunk.indexOf(g.first) === -1) continue;
      for (const n of g.needles) if (chunk.indexOf(n) !== -1) return true;
    }
    return false;
  }

  /** Masks `text`: block secrets first (they may swallow the rest), then token matches. */
  #mask(text: string): string {
    let out = '';
    let rest = text;
    for (;;) {
      if (this.#block !== undefined) {
        const after = this.#consumeBlock(rest);
        if (after === undefined) return out;
        rest = after;
      }
      const open = this.#findOpen(rest);
      if (open === undefined) return out + this.#maskTokens(rest);
      this.counts.set(open.pattern.name, (this.counts.get(open.pattern.name) ?? 0) + 1);
      out += this.#maskTokens(rest.slice(0, open.start)) + maskReplacement(open.pattern.name);
      this.#block = open.pattern;
      this.#blockTail = '';
      rest = rest.slice(open.end);
    }
  }

  /** Every match in `text`, found in the raw bytes or in the visible text, as [start, end, pattern name] sorted by start. */
  #ranges(text: string): [number, number, string][] {
    const hasEsc = text.includes('\x1b');
    const v = hasEsc ? visibleText(text) : undefined;
    const ranges: [number, number, string][] = [];
    for (const p of this.#patterns) {
      if (p.starts.length > 0 && !p.starts.some((st) => text.includes(st) || (v !== undefined && v.text.includes(st)))) continue;
      for (const m of text.matchAll(p.regex)) ranges.push([m.index, m.index + m[0].length, p.name]);
      if (v === undefined) continue;
      for (const m of v.text.matchAll(p.regex)) ranges.push([v.map[m.index] as number, (v.map[m.index + m[0].length - 1] as number) + 1, p.name]);
    }
    return ranges.sort((a, b) => a[0] - b[0] || b[1] - a[1]);
  }

  /** Replaces every match by its pattern's replacement. */
  #maskTokens(text: string): string {
    const ranges = this.#ranges(text);
    if (ranges.length === 0) return text;
    let out = '';
    let pos = 0;
    let i = 0;
    while (i < ranges.length) {
      const [start, , name] = ranges[i] as [number, number, string];
      let end = (ranges[i] as [number, number, string])[1];
      // Overlapping matches (raw and visible, or two patterns) are one secret.
      while (++i < ranges.length && (ranges[i] as [number, number, string])[0] < end) end = Math.max(end, (ranges[i] as [number, number, string])[1]);
      out += text.slice(pos, start) + maskReplacement(name);
      this.counts.set(name, (this.counts.get(name) ?? 0) + 1);
      pos = end;
    }
    return out + text.slice(pos);
  }

  /**
   * Index from which `text` must be held back (text.length: nothing).
   * `growing` false skips (b), for text known to hold no start literal.
   */
  #holdIndex(text: string, growing = true): number {
    const n = text.length;
    let hold = n;
    for (const p of this.#patterns) {
      if (p.starts.length === 0) continue;
      // (a) the text ends with a proper prefix of a start literal
      for (const s of p.starts) {
        for (let k = Math.min(s.length - 1, n); k >= 1; k--) {
          if (n - k < hold && text.endsWith(s.slice(0, k))) {
            hold = n - k;
            break;
          }
        }
      }
      if (!growing) continue;
      // (b) a start literal inside the trailing run of match characters: the match may still grow
      const floor = Math.max(0, n - p.maxLength);
      let r = n;
      while (r > floor && p.chars.test(text[r - 1] as string)) r--;
      let pos = r;
      while (pos < n && pos < hold) {
        let best = -1;
        for (const s of p.starts) {
          const i = text.indexOf(s, pos);
          if (i !== -1 && (best === -1 || i < best)) best = i;
        }
        if (best === -1) break;
        // A match already complete and followed by more text cannot grow: skip past it.
        const sticky = this.#sticky.get(p) as RegExp;
        sticky.lastIndex = best;
        const m = sticky.exec(text);
        if (m !== null && best + m[0].length < n) {
          pos = best + m[0].length;
          continue;
        }
        if (best < hold) hold = best;
        break;
      }
    }
    return hold;
  }
}
