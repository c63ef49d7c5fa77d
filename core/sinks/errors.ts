/**
 * Errors of the event pipeline (sinks, spool, local log, Kafka). One class,
 * a literal-union `code`, the HTTP status a server should answer with when a
 * request could not be recorded. Messages name the config setting at fault
 * and never carry a credential.
 */
import { KubetrailError } from '../errors.ts';

/** Stable codes of pipeline errors. */
export type SinkErrorCode =
  /** spool.overflow=fail-closed and the spool is at spool.maxBytes: new work is refused. */
  | 'SINK_ERR_SPOOL_FULL'
  /** spool.overflow=drop and the spool is at spool.maxBytes: the event was dropped (counted in kubetrail_events_dropped_total). */
  | 'SINK_ERR_EVENT_DROPPED'
  /** The draft is not a valid event (unknown type, non-JSON value, missing body). */
  | 'SINK_ERR_INVALID_EVENT'
  /** dataDir (or a directory under it) cannot be created, written or fsync'd. */
  | 'SINK_ERR_DATA_DIR'
  /** Another process holds the lock on this data dir for the same component. */
  | 'SINK_ERR_LOCKED'
  /** kafka.brokers could not be reached (only fatal with kafka.onUnreachableAtStart=fail). */
  | 'SINK_ERR_KAFKA_UNREACHABLE'
  /** The broker refused kafka.sasl credentials. */
  | 'SINK_ERR_KAFKA_AUTH'
  /** kafka.ssl files could not be read or the TLS handshake failed. */
  | 'SINK_ERR_KAFKA_TLS'
  /** The signing key (signing.keyFile) is missing, unreadable or not Ed25519. */
  | 'SINK_ERR_SIGNING_KEY'
  /** emit() after close(). */
  | 'SINK_ERR_CLOSED'
  /** A write or fsync failed at run time. */
  | 'SINK_ERR_IO'
  /** A write failed earlier and the pipeline cannot make events durable yet: refused (no seq consumed) until it can. */
  | 'SINK_ERR_UNAVAILABLE';

/** An event could not be recorded, or the pipeline could not start. */
export class SinkError extends KubetrailError<SinkErrorCode> {
  /** The config setting at fault, when there is one (e.g. `kafka.sasl`). */
  readonly setting: string | undefined;
  constructor(code: SinkErrorCode, message: string, options: { setting?: string; cause?: unknown; status?: number } = {}) {
    super(code, message, { status: options.status ?? statusOf(code), cause: options.cause });
    this.setting = options.setting;
  }
}

function statusOf(code: SinkErrorCode): number {
  switch (code) {
    case 'SINK_ERR_INVALID_EVENT':
      return 400;
    case 'SINK_ERR_SPOOL_FULL':
    case 'SINK_ERR_EVENT_DROPPED':
    case 'SINK_ERR_CLOSED':
    case 'SINK_ERR_KAFKA_UNREACHABLE':
    case 'SINK_ERR_UNAVAILABLE':
      return 503;
    default:
      return 500;
  }
}
