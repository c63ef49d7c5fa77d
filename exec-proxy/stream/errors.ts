/**
 * Errors of the stream relay. Every error has a stable code, the WebSocket
 * close code it maps to, and an HTTP status for the few that happen before a
 * WebSocket exists. Messages are safe to show a client: no internal detail.
 */
import { KubetrailError } from '../../core/errors.ts';

/** Codes of stream errors. */
export type StreamErrorCode =
  | 'STREAM_ERR_TEXT_FRAME'
  | 'STREAM_ERR_UNKNOWN_CHANNEL'
  | 'STREAM_ERR_FRAME_TOO_LARGE'
  | 'STREAM_ERR_EMPTY_FRAME'
  | 'STREAM_ERR_BAD_CLOSE_SIGNAL'
  | 'STREAM_ERR_DATA_AFTER_CLOSE'
  | 'STREAM_ERR_BAD_BASE64'
  | 'STREAM_ERR_NO_SUBPROTOCOL'
  | 'STREAM_ERR_SPDY_UNSUPPORTED'
  | 'STREAM_ERR_BAD_REQUEST'
  | 'STREAM_ERR_UPSTREAM'
  | 'STREAM_ERR_DENIED'
  | 'STREAM_ERR_RECORDING'
  | 'STREAM_ERR_SPDY_FRAME';

/** WebSocket close codes used by the relay (RFC 6455 §7.4.1). */
export const CLOSE = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  PROTOCOL_ERROR: 1002,
  UNSUPPORTED_DATA: 1003,
  POLICY_VIOLATION: 1008,
  MESSAGE_TOO_BIG: 1009,
  INTERNAL_ERROR: 1011,
  BAD_GATEWAY: 1014,
});

const CLOSE_BY_CODE: Record<StreamErrorCode, number> = {
  STREAM_ERR_TEXT_FRAME: CLOSE.UNSUPPORTED_DATA,
  STREAM_ERR_UNKNOWN_CHANNEL: CLOSE.PROTOCOL_ERROR,
  STREAM_ERR_FRAME_TOO_LARGE: CLOSE.MESSAGE_TOO_BIG,
  STREAM_ERR_EMPTY_FRAME: CLOSE.PROTOCOL_ERROR,
  STREAM_ERR_BAD_CLOSE_SIGNAL: CLOSE.PROTOCOL_ERROR,
  STREAM_ERR_DATA_AFTER_CLOSE: CLOSE.PROTOCOL_ERROR,
  STREAM_ERR_BAD_BASE64: CLOSE.UNSUPPORTED_DATA,
  STREAM_ERR_NO_SUBPROTOCOL: CLOSE.PROTOCOL_ERROR,
  STREAM_ERR_SPDY_UNSUPPORTED: CLOSE.PROTOCOL_ERROR,
  STREAM_ERR_BAD_REQUEST: CLOSE.PROTOCOL_ERROR,
  STREAM_ERR_UPSTREAM: CLOSE.BAD_GATEWAY,
  STREAM_ERR_DENIED: CLOSE.POLICY_VIOLATION,
  STREAM_ERR_RECORDING: CLOSE.INTERNAL_ERROR,
  STREAM_ERR_SPDY_FRAME: CLOSE.PROTOCOL_ERROR,
};

const STATUS_BY_CODE: Partial<Record<StreamErrorCode, number>> = {
  STREAM_ERR_NO_SUBPROTOCOL: 400,
  STREAM_ERR_SPDY_UNSUPPORTED: 400,
  STREAM_ERR_BAD_REQUEST: 400,
  STREAM_ERR_UPSTREAM: 502,
  STREAM_ERR_DENIED: 403,
  STREAM_ERR_RECORDING: 503,
};

/** A stream relay error: `closeCode` for the WebSocket, `status` for HTTP. */
export class StreamError extends KubetrailError<StreamErrorCode> {
  readonly closeCode: number;
  constructor(code: StreamErrorCode, message: string, options: { cause?: unknown } = {}) {
    super(code, message, { status: STATUS_BY_CODE[code] ?? 400, ...options });
    this.closeCode = CLOSE_BY_CODE[code];
  }
}
