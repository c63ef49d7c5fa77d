/**
 * The one interface behind which every event destination hides: Kafka, the
 * local log, the spool. Producers of events (webhook, proxy) see only this.
 */
import type { EventDraft, EventType, KubetrailEvent } from '../events/model.ts';

/** Where events go. */
export interface EventSink {
  /**
   * Assigns id, time, source and chain link, then resolves with the final
   * event only once it is durable (acknowledged by Kafka with acks=all, or
   * fsync'd to disk). Rejects with a SinkError when it cannot be made durable
   * (e.g. the spool is full with overflow=fail-closed).
   */
  emit<T extends EventType>(draft: EventDraft<T>): Promise<KubetrailEvent<T>>;
  /** Resolves when everything emitted so far is durable. */
  flush(): Promise<void>;
  /** Flushes, writes a final checkpoint, and releases resources. */
  close(): Promise<void>;
}
