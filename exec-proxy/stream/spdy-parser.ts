/**
 * A passive SPDY/3.1 frame parser for one direction of a byte stream (the
 * tunnelled port-forward protocol carries SPDY inside WebSocket messages whose
 * boundaries mean nothing). It only observes: it learns stream ids, their
 * `streamtype` / `port` headers, and byte counts, and never changes a byte.
 *
 * States: HEADER (need 8 bytes) → BODY (need `length` bytes) → HEADER ...
 * Name/value blocks of one direction form one zlib stream primed with the
 * SPDY dictionary; we re-inflate the accumulated block bytes with a sync
 * flush (bounded by `maxHeaderBytes`, after which ports are no longer learnt).
 *
 * Observers (optional) see each SYN_STREAM's headers and each data frame's
 * payload as the frame completes; legacy SPDY exec (spdy-exec.ts) records
 * its streams through them. They get `undefined` headers once the bound is
 * passed, so a caller that must know every stream can fail closed.
 */
import { inflateSync, constants as zc } from 'node:zlib';
import { SPDY_DICTIONARY } from './spdy-dictionary.ts';
import { StreamError } from './errors.ts';

/** SPDY control frame types (spdystream spdy/types.go). */
const SPDY_TYPE = Object.freeze({ SYN_STREAM: 1, SYN_REPLY: 2, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, HEADERS: 8, WINDOW_UPDATE: 9 });

/** A frame the parser observed. */
export type SpdyFrame =
  | { readonly kind: 'control'; readonly type: number; readonly flags: number; readonly streamId?: number; readonly headers?: Record<string, string> }
  | { readonly kind: 'data'; readonly streamId: number; readonly flags: number; readonly length: number };

/** Parser options, defaults in {@link SPDY_DEFAULTS}. */
export interface SpdyParserOptions {
  maxFrameBytes: number;
  maxHeaderBytes: number;
}

/** Called as frames complete; an observer may throw (a StreamError) to fail the stream. */
export interface SpdyObserver {
  /** A SYN_STREAM: its id and headers (undefined past `maxHeaderBytes`). */
  synStream?(streamId: number, headers: Record<string, string> | undefined): void;
  /** A data frame: its stream, payload (a view of the received bytes) and FLAG_FIN. */
  data?(streamId: number, payload: Buffer, fin: boolean): void;
}

/** Defaults, in one place. */
const SPDY_DEFAULTS: Readonly<SpdyParserOptions> = Object.freeze({ maxFrameBytes: 16 * 1024 * 1024, maxHeaderBytes: 1024 * 1024 });

/** Parses a SPDY/3 byte stream passively. */
export class SpdyParser {
  readonly #opts: SpdyParserOptions;
  #state: 'HEADER' | 'BODY' | 'FAILED' = 'HEADER';
  #buf: Buffer[] = [];
  #bufLen = 0;
  #header: Buffer | undefined;
  #nvCompressed: Buffer[] = [];
  #nvCompressedLen = 0;
  #nvInflated = 0;
  /** Ports named by SYN_STREAM headers, in first-seen order. */
  readonly ports = new Set<number>();
  /** SYN_STREAMs seen. */
  streamsOpened = 0;
  /** Frames observed, for tests and diagnostics (bounded). */
  readonly frames: SpdyFrame[] = [];

  readonly #observer: SpdyObserver;

  constructor(options: Partial<SpdyParserOptions> = {}, observer: SpdyObserver = {}) {
    this.#opts = { ...SPDY_DEFAULTS, ...options };
    this.#observer = observer;
  }

  /** Feeds bytes; throws StreamError on a malformed stream. */
  push(data: Buffer): void {
    if (this.#state === 'FAILED') throw new StreamError('STREAM_ERR_SPDY_FRAME', 'SPDY stream already failed');
    this.#buf.push(data);
    this.#bufLen += data.length;
    try {
      for (;;) {
        if (this.#state === 'HEADER') {
          if (this.#bufLen < 8) return;
          this.#header = this.#take(8);
          const len = this.#header.readUInt32BE(4) & 0xffffff;
          if (len > this.#opts.maxFrameBytes) throw new StreamError('STREAM_ERR_FRAME_TOO_LARGE', 'SPDY frame too large');
          this.#state = 'BODY';
        }
        const h = this.#header as Buffer;
        const len = h.readUInt32BE(4) & 0xffffff;
        if (this.#bufLen < len) return;
        const body = this.#take(len);
        this.#frame(h, body);
        this.#state = 'HEADER';
      }
    } catch (err) {
      this.#state = 'FAILED';
      throw err instanceof StreamError ? err : new StreamError('STREAM_ERR_SPDY_FRAME', 'malformed SPDY frame', { cause: err });
    }
  }

  #take(n: number): Buffer {
    const all = this.#buf.length === 1 ? (this.#buf[0] as Buffer) : Buffer.concat(this.#buf, this.#bufLen);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.#buf = rest.length > 0 ? [rest] : [];
    this.#bufLen = rest.length;
    return out;
  }

  #record(f: SpdyFrame): void {
    if (this.frames.length < 1000) this.frames.push(f);
  }

  #frame(h: Buffer, body: Buffer): void {
    const first = h.readUInt32BE(0);
    const flags = h[4] as number;
    if ((first & 0x80000000) === 0) {
      this.#record({ kind: 'data', streamId: first & 0x7fffffff, flags, length: body.length });
      this.#observer.data?.(first & 0x7fffffff, body, (flags & 0x01) !== 0);
      return;
    }
    const version = (first >>> 16) & 0x7fff;
    const type = first & 0xffff;
    if (version !== 3) throw new StreamError('STREAM_ERR_SPDY_FRAME', `SPDY version ${version}`);
    if (type === SPDY_TYPE.SYN_STREAM || type === SPDY_TYPE.SYN_REPLY || type === SPDY_TYPE.HEADERS) {
      const skip = type === SPDY_TYPE.SYN_STREAM ? 10 : 4;
      if (body.length < skip) throw new StreamError('STREAM_ERR_SPDY_FRAME', 'short SPDY header frame');
      const streamId = body.readUInt32BE(0) & 0x7fffffff;
      const headers = this.#headers(body.subarray(skip));
      if (type === SPDY_TYPE.SYN_STREAM) {
        this.streamsOpened++;
        const port = Number(headers?.['port']);
        if (Number.isInteger(port) && port > 0 && port < 65536) this.ports.add(port);
        this.#observer.synStream?.(streamId, headers);
      }
      this.#record({ kind: 'control', type, flags, streamId, ...(headers ? { headers } : {}) });
      return;
    }
    this.#record({ kind: 'control', type, flags });
  }

  /** Inflates this block as the continuation of the direction's zlib stream. */
  #headers(block: Buffer): Record<string, string> | undefined {
    if (this.#nvCompressedLen + block.length > this.#opts.maxHeaderBytes) return undefined;
    this.#nvCompressed.push(block);
    this.#nvCompressedLen += block.length;
    const all = inflateSync(Buffer.concat(this.#nvCompressed), { dictionary: SPDY_DICTIONARY, finishFlush: zc.Z_SYNC_FLUSH });
    const mine = all.subarray(this.#nvInflated);
    this.#nvInflated = all.length;
    return decodeNameValues(mine);
  }
}

/** Decodes a SPDY/3 name/value block (32-bit counts and lengths; values NUL-joined). */
export function decodeNameValues(b: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  if (b.length < 4) throw new StreamError('STREAM_ERR_SPDY_FRAME', 'short name/value block');
  const n = b.readUInt32BE(0);
  let o = 4;
  for (let i = 0; i < n; i++) {
    if (o + 4 > b.length) throw new StreamError('STREAM_ERR_SPDY_FRAME', 'short name/value block');
    const kl = b.readUInt32BE(o);
    o += 4;
    const k = b.subarray(o, o + kl).toString('latin1');
    o += kl;
    if (o + 4 > b.length) throw new StreamError('STREAM_ERR_SPDY_FRAME', 'short name/value block');
    const vl = b.readUInt32BE(o);
    o += 4;
    const v = b.subarray(o, o + vl).toString('latin1');
    o += vl;
    if (o > b.length) throw new StreamError('STREAM_ERR_SPDY_FRAME', 'short name/value block');
    out[k] = v;
  }
  return out;
}

/** Encodes a SPDY/3 name/value block (uncompressed). */
export function encodeNameValues(h: Record<string, string>): Buffer {
  const parts: Buffer[] = [];
  const count = Buffer.alloc(4);
  count.writeUInt32BE(Object.keys(h).length);
  parts.push(count);
  for (const [k, v] of Object.entries(h)) {
    for (const s of [k, v]) {
      const l = Buffer.alloc(4);
      l.writeUInt32BE(Buffer.byteLength(s, 'latin1'));
      parts.push(l, Buffer.from(s, 'latin1'));
    }
  }
  return Buffer.concat(parts);
}
