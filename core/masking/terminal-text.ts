/**
 * What a terminal shows of a stream: the text with escape sequences (colours,
 * cursor moves, titles) removed, and for each character kept, where it was.
 * Secrets are matched on this view so that `AKIA\e[31m...` is still seen as
 * one key, and the original bytes the match covers are what gets masked.
 */

/** The visible text of `raw`, with `map[i]` the index in `raw` of `text[i]`. */
export interface VisibleText {
  readonly text: string;
  readonly map: readonly number[];
  /** Where an escape sequence that `raw` ends inside starts (-1: none): it may hide part of a secret still to come. */
  readonly incomplete: number;
}

/** Longest escape sequence taken as one; past it the bytes count as text (bounds the hold-back). */
const MAX_SEQUENCE = 256;

/**
 * Removes ECMA-48 escape sequences: CSI (ESC [ params intermediates final),
 * OSC/DCS/SOS/PM/APC strings (ended by BEL or ESC \), and two-byte escapes
 * (ESC, intermediates, final). Pure; latin1 text in, latin1 text out.
 */
export function visibleText(raw: string): VisibleText {
  let text = '';
  const map: number[] = [];
  let incomplete = -1;
  let i = 0;
  while (i < raw.length) {
    if (raw.charCodeAt(i) !== 0x1b) {
      text += raw[i];
      map.push(i);
      i++;
      continue;
    }
    const end = sequenceEnd(raw, i);
    if (end === -1) {
      // Unfinished at the end of what we have.
      incomplete = i;
      break;
    }
    if (end === -2) {
      // Too long or malformed: the ESC is shown as a character would be.
      text += raw[i];
      map.push(i);
      i++;
      continue;
    }
    i = end;
  }
  return { text, map, incomplete };
}

/** Index after the sequence starting at `i` (an ESC); -1 unfinished; -2 not a sequence. */
function sequenceEnd(raw: string, i: number): number {
  const limit = Math.min(raw.length, i + MAX_SEQUENCE);
  if (i + 1 >= raw.length) return -1;
  const kind = raw[i + 1] as string;
  if (kind === '[') {
    for (let j = i + 2; j < limit; j++) {
      const c = raw.charCodeAt(j);
      if (c >= 0x40 && c <= 0x7e) return j + 1;
      if (c < 0x20 || c > 0x3f) return -2;
    }
    return limit === raw.length ? -1 : -2;
  }
  if (kind === ']' || kind === 'P' || kind === 'X' || kind === '^' || kind === '_') {
    for (let j = i + 2; j < limit; j++) {
      if (raw.charCodeAt(j) === 0x07) return j + 1;
      if (raw.charCodeAt(j) === 0x1b) {
        if (j + 1 >= raw.length) return -1;
        return raw[j + 1] === '\\' ? j + 2 : -2;
      }
    }
    return limit === raw.length ? -1 : -2;
  }
  for (let j = i + 1; j < limit; j++) {
    const c = raw.charCodeAt(j);
    if (c >= 0x30 && c <= 0x7e) return j + 1;
    if (c < 0x20 || c > 0x2f) return -2;
  }
  return limit === raw.length ? -1 : -2;
}

/** ECMA-48 escape sequences, for the quick {@link stripEscapes}. */
const ESCAPES = /\x1b(?:\[[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]|[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\)|[\x20-\x2f]*[\x30-\x7e])/g;

/**
 * The visible text without the index map: a quick check of whether a frame
 * holds a secret's start at all (the masker's prefilter). It may strip a
 * little more than {@link visibleText} (no length bound), never less of what
 * that keeps as text outside escape strings.
 */
export function stripEscapes(raw: string): string {
  return raw.replace(ESCAPES, '');
}
