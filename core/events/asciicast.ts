/**
 * Session recordings as asciicast v2 (https://docs.asciinema.org/manual/asciicast/v2/):
 * a JSON header line, then one `[time, code, data]` line per event — "o" for
 * output (stdout and stderr as the terminal showed them), "i" for input,
 * "r" for a resize ("COLSxROWS"). Pure: builds text from events.
 */
import { inflateRawSync } from 'node:zlib';
import type { KubetrailEvent, SessionBody, SessionDataBody } from './model.ts';

/** The stream bytes of a session.data chunk (inflating a compressed one). Throws on a corrupt chunk. */
export function chunkBytes(c: Pick<SessionDataBody, 'data' | 'encoding' | 'size'>): Buffer {
  const raw = Buffer.from(c.data, 'base64');
  if (c.encoding === undefined) return raw;
  if (c.encoding !== 'deflate-raw') throw new Error(`unknown chunk encoding ${String(c.encoding)}`);
  const out = inflateRawSync(raw, c.size !== undefined ? { maxOutputLength: Math.max(1, c.size) } : {});
  if (c.size !== undefined && out.length !== c.size) throw new Error('chunk size does not match its data');
  return out;
}

/** One session's events, gathered for replay. */
export interface SessionRecording {
  id: string;
  start?: KubetrailEvent<'session.start'>;
  end?: KubetrailEvent<'session.end'>;
  /** session.data in chunk order. */
  chunks: SessionDataBody[];
}

/** Gathers start, end and ordered chunks of one session; reports missing chunks. */
export function gatherRecording(id: string, events: Iterable<KubetrailEvent>): SessionRecording & { missing: number[] } {
  const rec: SessionRecording = { id, chunks: [] };
  const seen = new Map<number, SessionDataBody>();
  for (const e of events) {
    if (e.correlation?.session !== id) continue;
    if (e.type === 'session.start') rec.start = e as KubetrailEvent<'session.start'>;
    else if (e.type === 'session.end') rec.end = e as KubetrailEvent<'session.end'>;
    else if (e.type === 'session.data') {
      const b = e.body as SessionDataBody;
      seen.set(b.chunk, b);
    }
  }
  rec.chunks = [...seen.values()].sort((a, b) => a.chunk - b.chunk);
  const missing: number[] = [];
  const total = (rec.end?.body as SessionBody | undefined)?.chunks ?? (rec.chunks.at(-1)?.chunk ?? -1) + 1;
  for (let i = 0; i < total; i++) if (!seen.has(i)) missing.push(i);
  return { ...rec, missing };
}

/** The first terminal size of a recording: a resize chunk, the session.end size, else 80x24. */
export function terminalSize(rec: SessionRecording): { width: number; height: number } {
  for (const c of rec.chunks) {
    if (c.stream !== 'resize') continue;
    const s = parseResize(chunkBytes(c).toString('utf8'));
    if (s) return s;
  }
  const end = rec.end?.body as SessionBody | undefined;
  if (end?.width && end.height) return { width: end.width, height: end.height };
  return { width: 80, height: 24 };
}

function parseResize(text: string): { width: number; height: number } | undefined {
  for (const line of text.split('\n')) {
    try {
      const s = JSON.parse(line) as { Width?: unknown; Height?: unknown };
      if (typeof s.Width === 'number' && typeof s.Height === 'number') return { width: s.Width, height: s.Height };
    } catch {
      /* not a resize line */
    }
  }
  return undefined;
}

/**
 * Renders asciicast v2. Bytes are decoded as UTF-8 per stream with a
 * streaming decoder, so a character split across chunks stays whole; bytes
 * that are not UTF-8 become U+FFFD (asciicast is a text format — `kubetrail
 * replay` without --export writes the exact bytes).
 */
export function toAsciicast(rec: SessionRecording): string {
  const { width, height } = terminalSize(rec);
  const start = rec.start?.body as SessionBody | undefined;
  const header: Record<string, unknown> = {
    version: 2,
    width,
    height,
    timestamp: Math.floor(Date.parse(rec.start?.time ?? rec.end?.time ?? new Date(0).toISOString()) / 1000),
    title: `kubetrail session ${rec.id}${start ? ` ${start.kind} ${start.namespace}/${start.pod}` : ''}`,
    env: { TERM: 'xterm-256color', SHELL: '/bin/sh' },
  };
  if (start?.command?.length) header['command'] = start.command.join(' ');
  const end = rec.end?.body as SessionBody | undefined;
  if (end?.durationMs !== undefined) header['duration'] = end.durationMs / 1000;
  const lines = [JSON.stringify(header)];
  const decoders = { o: new TextDecoder('utf-8'), i: new TextDecoder('utf-8') };
  let last = 0;
  for (const c of rec.chunks) {
    // Times must not go backwards; chunks are ordered, their start times nearly so.
    const t = Math.max(last, c.t / 1000);
    last = t;
    const bytes = chunkBytes(c);
    if (c.stream === 'resize') {
      const s = parseResize(bytes.toString('utf8'));
      if (s) lines.push(JSON.stringify([round(t), 'r', `${s.width}x${s.height}`]));
      continue;
    }
    const code = c.stream === 'stdin' ? 'i' : 'o';
    const text = decoders[code].decode(bytes, { stream: true });
    if (text) lines.push(JSON.stringify([round(t), code, text]));
  }
  for (const code of ['o', 'i'] as const) {
    const rest = decoders[code].decode();
    if (rest) lines.push(JSON.stringify([round(last), code, rest]));
  }
  return lines.join('\n') + '\n';
}

function round(t: number): number {
  return Math.round(t * 1e6) / 1e6;
}
