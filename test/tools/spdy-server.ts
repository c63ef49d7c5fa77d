/**
 * The server side of SPDY/3.1 that the test doubles need (fake kubelet, fake
 * exec upstream's port-forward): building control and data frames, a header
 * compressor that writes zlib stored blocks primed with the SPDY dictionary,
 * and an incremental reader of the client's frames that inflates SYN_STREAM
 * header blocks. Deliberately separate from the product's passive parser
 * (exec-proxy/stream/spdy-parser.ts) except for the name/value block codec,
 * so a parser bug cannot hide behind its own test double.
 */
import { inflateSync, constants as zc } from 'node:zlib';
import { SPDY_DICTIONARY } from '../../exec-proxy/stream/spdy-dictionary.ts';
import { decodeNameValues, encodeNameValues } from '../../exec-proxy/stream/spdy-parser.ts';

function adler32(b: Buffer): number {
  let a = 1;
  let c = 0;
  for (const x of b) {
    a = (a + x) % 65521;
    c = (c + a) % 65521;
  }
  return ((c << 16) | a) >>> 0;
}

/** One direction's header compression: a zlib stream of stored blocks primed with the SPDY dictionary; each call continues it. */
export class StoredZlib {
  #started = false;
  block(data: Buffer): Buffer {
    const parts: Buffer[] = [];
    if (!this.#started) {
      // CMF 0x78, FLG with FDICT; FCHECK makes (CMF*256+FLG) % 31 == 0; then the dictionary's Adler-32.
      let flg = 0x20;
      flg += 31 - ((0x78 * 256 + flg) % 31);
      const dictId = Buffer.alloc(4);
      dictId.writeUInt32BE(adler32(SPDY_DICTIONARY));
      parts.push(Buffer.from([0x78, flg]), dictId);
      this.#started = true;
    }
    const len = Buffer.alloc(5);
    len[0] = 0; // BFINAL=0, BTYPE=00 (stored); we stay byte-aligned
    len.writeUInt16LE(data.length, 1);
    len.writeUInt16LE(~data.length & 0xffff, 3);
    // An empty stored block after the data, as a zlib sync flush emits: Go's flate
    // returns buffered output only when it meets it, and must not read past the frame.
    parts.push(len, data, Buffer.from([0x00, 0x00, 0x00, 0xff, 0xff]));
    return Buffer.concat(parts);
  }
}

/** A SPDY/3 control frame of `type`. */
export function controlFrame(type: number, flags: number, body: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt32BE(0x80030000 + type);
  h.writeUInt32BE(((flags & 0xff) << 24) | body.length, 4);
  return Buffer.concat([h, body]);
}

/** A data frame on `streamId` (flags 1 = FIN). */
export function dataFrame(streamId: number, flags: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt32BE(streamId & 0x7fffffff);
  h.writeUInt32BE(((flags & 0xff) << 24) | payload.length, 4);
  return Buffer.concat([h, payload]);
}

/** A SYN_REPLY with no headers for `streamId`. */
export function synReply(out: StoredZlib, streamId: number): Buffer {
  const body = Buffer.alloc(4);
  body.writeUInt32BE(streamId);
  return controlFrame(2, 0, Buffer.concat([body, out.block(encodeNameValues({}))]));
}

/** A frame from the client. */
export type ClientFrame =
  | { kind: 'syn'; id: number; headers: Record<string, string> }
  | { kind: 'control'; type: number; body: Buffer }
  | { kind: 'data'; id: number; flags: number; body: Buffer };

/** Reads the client's frames from a byte stream; SYN_STREAM headers share one inflate context, as SPDY requires. */
export class SpdyFrameReader {
  #buf = Buffer.alloc(0);
  readonly #compressed: Buffer[] = [];
  #inflated = 0;

  /** Adds bytes and returns every frame now complete. */
  push(chunk: Buffer): ClientFrame[] {
    this.#buf = Buffer.concat([this.#buf, chunk]);
    const frames: ClientFrame[] = [];
    while (this.#buf.length >= 8) {
      const len = this.#buf.readUInt32BE(4) & 0xffffff;
      if (this.#buf.length < 8 + len) break;
      const first = this.#buf.readUInt32BE(0);
      const flags = this.#buf[4] as number;
      const body = this.#buf.subarray(8, 8 + len);
      this.#buf = this.#buf.subarray(8 + len);
      if (!(first & 0x80000000)) {
        frames.push({ kind: 'data', id: first & 0x7fffffff, flags, body });
        continue;
      }
      const type = first & 0xffff;
      if (type !== 1) {
        frames.push({ kind: 'control', type, body });
        continue;
      }
      this.#compressed.push(body.subarray(10));
      const all = inflateSync(Buffer.concat(this.#compressed), { dictionary: SPDY_DICTIONARY, finishFlush: zc.Z_SYNC_FLUSH });
      const headers = decodeNameValues(all.subarray(this.#inflated));
      this.#inflated = all.length;
      frames.push({ kind: 'syn', id: body.readUInt32BE(0) & 0x7fffffff, headers });
    }
    return frames;
  }
}
