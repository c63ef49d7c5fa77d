/**
 * A strict asciicast v2 reader written from the format's specification
 * (docs.asciinema.org/manual/asciicast/v2): newline-delimited JSON; line 1 a
 * header object with integer `version` 2, positive integer `width` and
 * `height`, optional integer `timestamp`, number `duration`, string
 * `command`/`title`, object `env`; every further line an array
 * `[time >= 0 (non-decreasing), code in "o"|"i"|"m"|"r", string data]`, with
 * "r" data as COLSxROWS. Throws on the first violation.
 */

/** A parsed asciicast v2 recording. */
export interface Asciicast {
  header: { version: 2; width: number; height: number; timestamp?: number; duration?: number; command?: string; title?: string; env?: Record<string, string> };
  events: [number, 'o' | 'i' | 'm' | 'r', string][];
}

/** Parses and validates asciicast v2 text. */
export function parseAsciicast(text: string): Asciicast {
  if (!text.endsWith('\n')) throw new Error('file must end with a newline');
  const lines = text.slice(0, -1).split('\n');
  const header = JSON.parse(lines[0] ?? '') as Record<string, unknown>;
  if (header === null || typeof header !== 'object' || Array.isArray(header)) throw new Error('header: not an object');
  if (header['version'] !== 2) throw new Error('header.version must be 2');
  for (const k of ['width', 'height']) {
    const v = header[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new Error(`header.${k} must be a positive integer`);
  }
  if ('timestamp' in header && !(typeof header['timestamp'] === 'number' && Number.isInteger(header['timestamp']))) throw new Error('header.timestamp must be an integer');
  if ('duration' in header && typeof header['duration'] !== 'number') throw new Error('header.duration must be a number');
  for (const k of ['command', 'title']) if (k in header && typeof header[k] !== 'string') throw new Error(`header.${k} must be a string`);
  if ('env' in header) {
    const env = header['env'];
    if (env === null || typeof env !== 'object' || Array.isArray(env) || Object.values(env).some((v) => typeof v !== 'string')) throw new Error('header.env must map strings to strings');
  }
  const events: Asciicast['events'] = [];
  let last = 0;
  for (const [i, line] of lines.slice(1).entries()) {
    const ev = JSON.parse(line) as unknown;
    if (!Array.isArray(ev) || ev.length !== 3) throw new Error(`line ${i + 2}: event must be a 3-element array`);
    const [t, code, data] = ev as [unknown, unknown, unknown];
    if (typeof t !== 'number' || t < 0) throw new Error(`line ${i + 2}: time must be a number >= 0`);
    if (t < last) throw new Error(`line ${i + 2}: time goes backwards`);
    last = t;
    if (code !== 'o' && code !== 'i' && code !== 'm' && code !== 'r') throw new Error(`line ${i + 2}: unknown event code ${String(code)}`);
    if (typeof data !== 'string') throw new Error(`line ${i + 2}: data must be a string`);
    if (code === 'r' && !/^\d+x\d+$/.test(data)) throw new Error(`line ${i + 2}: resize data must be COLSxROWS`);
    events.push([t, code, data]);
  }
  return { header: header as Asciicast['header'], events };
}
