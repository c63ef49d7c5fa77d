/**
 * The channel-frame parser: turns WebSocket messages of the Kubernetes
 * streaming protocols into typed frames, one direction at a time. It knows
 * nothing about recording or relaying; it only validates and classifies, with
 * stable error codes, like ws's receiver.js. Each channel has an explicit
 * state (open → closed); the parser as a whole goes INITIAL → OPEN → FAILED.
 *
 * Limits are options with their defaults in {@link PARSER_DEFAULTS}.
 */
import { CHANNEL, type StreamProtocol } from './protocol.ts';
import { StreamError } from './errors.ts';

/** A parsed message. */
export type ChannelFrame =
  | { readonly type: 'data'; readonly channel: number; readonly payload: Buffer }
  | { readonly type: 'close'; readonly channel: number };

/** Parser options. */
export interface ChannelParserOptions {
  /** Largest message accepted (bytes, after base64 decoding). */
  maxFrameBytes: number;
  /** Highest channel id allowed (4 for exec/attach, 2n-1 for n forwarded ports). */
  maxChannel: number;
  /** Whether `[255, id]` close signals are part of the protocol (v5 only). */
  closeSignals: boolean;
  /** Whether an empty message (channel byte only) is allowed (the server's first frame). */
  allowEmpty: boolean;
  /**
   * Whether a text message on a binary protocol is channel data like a binary
   * one. The API server reads client messages with x/net/websocket's
   * Message.Receive into []byte, which takes either opcode
   * (apimachinery/pkg/util/httpstream/wsstream/conn.go, Conn.handle), and the
   * Python client sends `write_stdin("...")` as text; client-go rejects text
   * from the server, so the upstream direction keeps this off.
   */
  acceptText: boolean;
}

/** Defaults, in one place. */
const PARSER_DEFAULTS: Readonly<ChannelParserOptions> = Object.freeze({
  maxFrameBytes: 16 * 1024 * 1024,
  maxChannel: CHANNEL.RESIZE,
  closeSignals: true,
  allowEmpty: true,
  acceptText: false,
});

type ParserState = 'INITIAL' | 'OPEN' | 'FAILED';

/** Parses one direction of a channel stream. */
export class ChannelParser {
  readonly #proto: Pick<StreamProtocol, 'encoding' | 'version'>;
  readonly #opts: ChannelParserOptions;
  readonly #closed = new Set<number>();
  #state: ParserState = 'INITIAL';

  constructor(proto: Pick<StreamProtocol, 'encoding' | 'version'>, options: Partial<ChannelParserOptions> = {}) {
    this.#proto = proto;
    this.#opts = { ...PARSER_DEFAULTS, ...options, closeSignals: (options.closeSignals ?? PARSER_DEFAULTS.closeSignals) && proto.version === 5 };
    if (!Number.isInteger(this.#opts.maxFrameBytes) || this.#opts.maxFrameBytes <= 0) throw new TypeError('maxFrameBytes must be a positive integer');
    if (!Number.isInteger(this.#opts.maxChannel) || this.#opts.maxChannel < 0 || this.#opts.maxChannel > 254) throw new TypeError('maxChannel must be 0..254');
  }

  /** The parser's state: INITIAL until the first frame, FAILED after any error. */
  get state(): ParserState {
    return this.#state;
  }

  /** Whether `channel` was half-closed by a close signal. */
  isClosed(channel: number): boolean {
    return this.#closed.has(channel);
  }

  /**
   * Parses one WebSocket message. Throws {@link StreamError} on a protocol
   * violation; after that the parser stays FAILED and rejects everything.
   */
  parse(data: Buffer, isBinary: boolean): ChannelFrame {
    if (this.#state === 'FAILED') throw new StreamError('STREAM_ERR_BAD_REQUEST', 'stream already failed');
    try {
      const frame = this.#parse(data, isBinary);
      this.#state = 'OPEN';
      return frame;
    } catch (err) {
      this.#state = 'FAILED';
      throw err;
    }
  }

  #parse(data: Buffer, isBinary: boolean): ChannelFrame {
    let channel: number;
    let payload: Buffer;
    if (this.#proto.encoding === 'binary') {
      // kubectl rejects text messages on binary protocols from the server; so do we, unless acceptText.
      if (!isBinary && !this.#opts.acceptText) throw new StreamError('STREAM_ERR_TEXT_FRAME', 'text message on a binary stream protocol');
      if (data.length === 0) throw new StreamError('STREAM_ERR_EMPTY_FRAME', 'message without a channel byte');
      channel = data[0] as number;
      payload = data.subarray(1);
    } else {
      if (data.length === 0) throw new StreamError('STREAM_ERR_EMPTY_FRAME', 'message without a channel character');
      const c = (data[0] as number) - 48;
      // The base64 protocols have no close signal; any non-digit is an unknown channel.
      if (c < 0 || c > 9) throw new StreamError('STREAM_ERR_UNKNOWN_CHANNEL', 'unknown channel');
      channel = c;
      const text = data.subarray(1).toString('latin1');
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 === 1) throw new StreamError('STREAM_ERR_BAD_BASE64', 'payload is not base64');
      payload = Buffer.from(text, 'base64');
    }
    if (payload.length > this.#opts.maxFrameBytes) throw new StreamError('STREAM_ERR_FRAME_TOO_LARGE', `message larger than ${this.#opts.maxFrameBytes} bytes`);
    if (channel === CHANNEL.CLOSE && this.#opts.closeSignals) {
      // v5: exactly [255, id]; any other length makes the API server drop the connection.
      if (payload.length !== 1) throw new StreamError('STREAM_ERR_BAD_CLOSE_SIGNAL', 'close signal must be exactly [255, channel]');
      const target = payload[0] as number;
      if (target > this.#opts.maxChannel) throw new StreamError('STREAM_ERR_UNKNOWN_CHANNEL', 'close signal for an unknown channel');
      this.#closed.add(target);
      return { type: 'close', channel: target };
    }
    if (channel > this.#opts.maxChannel) throw new StreamError('STREAM_ERR_UNKNOWN_CHANNEL', `unknown channel ${channel}`);
    if (payload.length === 0 && !this.#opts.allowEmpty) throw new StreamError('STREAM_ERR_EMPTY_FRAME', 'empty message');
    if (this.#closed.has(channel) && payload.length > 0) throw new StreamError('STREAM_ERR_DATA_AFTER_CLOSE', `data on channel ${channel} after its close signal`);
    return { type: 'data', channel, payload };
  }
}
