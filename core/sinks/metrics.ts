/**
 * Pipeline metrics on the caller's prom-client registry. Several pipelines
 * (webhook and gateway in `kubetrail start`) may share one registry, so each
 * metric is created once per registry and labelled by component.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** The pipeline's metrics. */
export interface SinkMetrics {
  /** Events made durable, by component, sink (kafka|spool|local) and type. */
  durable: Counter<'component' | 'sink' | 'type'>;
  /** Events dropped because the spool was full with spool.overflow=drop. */
  dropped: Counter<'component'>;
  /** Events refused because the spool was full with spool.overflow=fail-closed. */
  refused: Counter<'component'>;
  /** Events the broker refused for what they are (e.g. larger than message.max.bytes), kept in the spool's rejected.ndjson. */
  rejected: Counter<'component'>;
  /** Events sent from the spool to Kafka. */
  drained: Counter<'component'>;
  /** Bytes waiting in the spool. */
  spoolBytes: Gauge<'component'>;
  /** 1 while new events go to the spool instead of Kafka. */
  spooling: Gauge<'component'>;
  /** emit() to durable, seconds. */
  latency: Histogram<'component' | 'sink'>;
  /** 1 for what the producer thread's kafkajs runs with: part crc32c|encoder, backend native|rope or kafkajs (its own). */
  kafkajsBackend: Gauge<'component' | 'part' | 'backend'>;
}

function once<T>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make();
}

/** Creates (or reuses) the pipeline metrics on `registry`. */
export function sinkMetrics(registry: Registry): SinkMetrics {
  const registers = [registry];
  return {
    durable: once(registry, 'kubetrail_events_durable_total', () => new Counter({ name: 'kubetrail_events_durable_total', help: 'Events made durable (Kafka ack, spool or local log fsync).', labelNames: ['component', 'sink', 'type'] as const, registers })),
    dropped: once(registry, 'kubetrail_events_dropped_total', () => new Counter({ name: 'kubetrail_events_dropped_total', help: 'Events dropped because the spool was full (spool.overflow=drop).', labelNames: ['component'] as const, registers })),
    refused: once(registry, 'kubetrail_events_refused_total', () => new Counter({ name: 'kubetrail_events_refused_total', help: 'Events refused because the spool was full (spool.overflow=fail-closed).', labelNames: ['component'] as const, registers })),
    rejected: once(registry, 'kubetrail_events_rejected_total', () => new Counter({ name: 'kubetrail_events_rejected_total', help: 'Events the broker refused (e.g. larger than message.max.bytes); kept in the spool dir, rejected.ndjson.', labelNames: ['component'] as const, registers })),
    drained: once(registry, 'kubetrail_spool_drained_total', () => new Counter({ name: 'kubetrail_spool_drained_total', help: 'Events sent from the spool to Kafka.', labelNames: ['component'] as const, registers })),
    spoolBytes: once(registry, 'kubetrail_spool_bytes', () => new Gauge({ name: 'kubetrail_spool_bytes', help: 'Bytes waiting in the spool.', labelNames: ['component'] as const, registers })),
    spooling: once(registry, 'kubetrail_spool_active', () => new Gauge({ name: 'kubetrail_spool_active', help: '1 while new events go to the spool instead of Kafka.', labelNames: ['component'] as const, registers })),
    kafkajsBackend: once(registry, 'kubetrail_kafkajs_backend_info', () => new Gauge({ name: 'kubetrail_kafkajs_backend_info', help: "1 for what the Kafka producer thread's kafkajs runs with (part crc32c: native or kafkajs; part encoder: rope or kafkajs).", labelNames: ['component', 'part', 'backend'] as const, registers })),
    latency: once(registry, 'kubetrail_event_durable_seconds', () => new Histogram({ name: 'kubetrail_event_durable_seconds', help: 'Time from emit() to durable.', labelNames: ['component', 'sink'] as const, buckets: [0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1, 5], registers })),
  };
}

/** Counter and histogram children of one component, cached: label lookups per event are measurable at 10k+ events/s. */
export class ComponentMetrics {
  readonly #m: SinkMetrics;
  readonly #component: string;
  readonly #durable = new Map<string, { inc: (n?: number) => void }>();
  readonly #latency = new Map<string, { observe: (v: number) => void }>();

  constructor(m: SinkMetrics, component: string) {
    this.#m = m;
    this.#component = component;
  }

  /** Counts `n` events of `type` made durable by `sink`. */
  durable(sink: 'kafka' | 'spool' | 'local', type: string, n = 1): void {
    const k = `${sink}|${type}`;
    let c = this.#durable.get(k);
    if (c === undefined) this.#durable.set(k, (c = this.#m.durable.labels({ component: this.#component, sink, type })));
    c.inc(n);
  }

  /** Observes one emit-to-durable latency in seconds. */
  latency(sink: 'kafka' | 'spool' | 'local', seconds: number): void {
    let h = this.#latency.get(sink);
    if (h === undefined) this.#latency.set(sink, (h = this.#m.latency.labels({ component: this.#component, sink })));
    h.observe(seconds);
  }
}
