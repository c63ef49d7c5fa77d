/**
 * `kubetrail events`: lists recorded events from the local log or Kafka.
 *
 *   kubetrail events [--config F] [--log-dir D | --brokers B[,B] [--topic T]...]
 *                    [--user U] [--namespace N] [--type T] [--session S] [--since 1h|RFC3339]
 *                    [--follow] [--format native|k8s-audit|ocsf] [-o table|json]
 *
 * A table for people; `-o json` prints one event per line (NDJSON): the
 * native event, or its k8s-audit / OCSF rendering with `--format`.
 */
import { parseCommandArgs } from './args.ts';
import { loadConfig, type Config } from '../core/config.ts';
import { createLogger } from '../core/logger.ts';
import { readEvents, type EventFilter, type ReadSource } from '../core/events/reader.ts';
import { render, type WireFormat } from '../core/events/formats/index.ts';
import { canonicalJson } from '../core/chain/canonical.ts';
import type { KubetrailEvent } from '../core/events/model.ts';
import { verbOf } from '../core/index/fields.ts';
import { INDEX_FLAGS, indexFor, queryOf } from './index-source.ts';

/** Flags that select where events are read from (shared with `verify`). */
export const SOURCE_FLAGS = {
  config: { type: 'string' },
  'log-dir': { type: 'string' },
  brokers: { type: 'string' },
  topic: { type: 'string', multiple: true },
} as const;

/** A usage error: printed with the usage text, exit code 2. */
export class UsageError extends Error {}

/**
 * Where to read: `--log-dir`, else `--brokers` (TLS/SASL from the config's
 * kafka section if any), else the config: Kafka when `kafka` is set,
 * otherwise the local log under `dataDir`.
 */
export function sourceFromFlags(values: { config?: string | undefined; 'log-dir'?: string | undefined; brokers?: string | undefined; topic?: string[] | undefined }): ReadSource {
  if (values['log-dir'] !== undefined) {
    if (values.brokers !== undefined) throw new UsageError('use either --log-dir or --brokers');
    return { kind: 'local', dir: values['log-dir'] };
  }
  const cfg: Config = loadConfig({ env: process.env, ...(values.config !== undefined ? { file: values.config } : {}) });
  const log = createLogger({ level: 'error', destination: process.stderr });
  if (values.brokers !== undefined || cfg.kafka !== undefined) {
    const base = cfg.kafka ?? loadConfig({ document: { kafka: { brokers: ['placeholder:9092'] } } }).kafka;
    if (base === undefined) throw new UsageError('no kafka settings');
    const settings = { ...base, brokers: values.brokers !== undefined ? values.brokers.split(',').map((s) => s.trim()).filter(Boolean) : base.brokers };
    return { kind: 'kafka', settings, log, ...(values.topic !== undefined ? { topics: values.topic } : {}) };
  }
  return { kind: 'local', dir: cfg.dataDir };
}

/** Parses `--since`: a duration (90s, 15m, 1h, 2d) before now, or an RFC 3339 time. */
export function parseSince(s: string, now = Date.now()): Date {
  const m = /^(\d+)(s|m|h|d)$/.exec(s);
  if (m) {
    const n = Number(m[1]);
    const unit = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 's' | 'm' | 'h' | 'd'];
    return new Date(now - n * unit);
  }
  const t = Date.parse(s);
  if (Number.isNaN(t)) throw new UsageError(`--since: expected a duration like 1h or an RFC 3339 time, got ${JSON.stringify(s)}`);
  return new Date(t);
}

function decisionOf(e: KubetrailEvent): string {
  const d = (e.body as unknown as { decision?: { allowed: boolean } }).decision;
  if (d !== undefined) return d.allowed ? 'allow' : 'deny';
  const s = (e.body as unknown as { status?: unknown }).status;
  return typeof s === 'number' ? String(s) : '';
}

function objectOf(e: KubetrailEvent): string {
  const t = e.target;
  if (t !== undefined) return `${t.resource ?? ''}${t.subresource ? `/${t.subresource}` : ''} ${t.namespace ? `${t.namespace}/` : ''}${t.name ?? ''}`.trim();
  const b = e.body as unknown as { pod?: string; namespace?: string };
  if (b.pod !== undefined) return `pods ${b.namespace ?? ''}/${b.pod}`;
  return '';
}

const COLUMNS = ['TIME', 'TYPE', 'USER', 'VERB', 'OBJECT', 'RESULT', 'SEQ'] as const;

function row(e: KubetrailEvent): string[] {
  return [e.time, e.type, e.actor?.username ?? '', verbOf(e), objectOf(e), decisionOf(e), String(e.chain?.seq ?? '')];
}

function pad(cells: readonly string[], widths: readonly number[]): string {
  return cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
}

const USAGE = `usage: kubetrail events [--config F] [--log-dir D | --brokers B [--topic T]...]
                        [--user U] [--namespace N] [--type T] [--session S] [--since 1h]
                        [--follow] [--format native|k8s-audit|ocsf] [-o table|json]
                        [--index FILE | --scan]
`;

/** Runs `kubetrail events`. */
export async function run(argv: string[]): Promise<number> {
  const parsed = parseCommandArgs('events', USAGE, argv, {
        ...SOURCE_FLAGS,
        ...INDEX_FLAGS,
        user: { type: 'string' },
        namespace: { type: 'string', short: 'n' },
        type: { type: 'string' },
        session: { type: 'string' },
        since: { type: 'string' },
        follow: { type: 'boolean', short: 'f' },
        format: { type: 'string' },
        output: { type: 'string', short: 'o' },
        help: { type: 'boolean', short: 'h' },
      });
  if (typeof parsed === 'number') return parsed;
  const { values } = parsed;
  try {
    const format = (values.format ?? 'native') as WireFormat;
    if (!['native', 'k8s-audit', 'ocsf'].includes(format)) throw new UsageError(`--format: expected native, k8s-audit or ocsf`);
    const output = values.output ?? 'table';
    if (output !== 'table' && output !== 'json') throw new UsageError('-o: expected table or json');
    const filter: EventFilter = {};
    if (values.user !== undefined) filter.user = values.user;
    if (values.namespace !== undefined) filter.namespace = values.namespace;
    if (values.type !== undefined) filter.type = values.type;
    if (values.session !== undefined) filter.session = values.session;
    if (values.since !== undefined) filter.since = parseSince(values.since);
    const source = sourceFromFlags(values);
    const ac = new AbortController();
    const stop = (): void => ac.abort();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    const out = process.stdout;
    // `kubetrail events | head` closing the pipe early ends the listing quietly (main.ts).
    // Without --follow the table is aligned over all rows; with it rows print as they come.
    const rows: string[][] = [];
    const widths = COLUMNS.map((c) => c.length);
    if (output === 'table' && values.follow) out.write(pad(COLUMNS, [24, 18, 20, 8, 40, 6, 6]) + '\n');
    // --follow tails the trail itself; a listing answers from the index when there is one (same events, same order).
    const index = values.follow ? undefined : await indexFor(values, source);
    const events = index !== undefined ? index.all(queryOf(filter)) : readEvents({ source, filter, follow: values.follow ?? false, signal: ac.signal });
    for await (const e of events) {
      if (output === 'json') {
        const text = format === 'native' ? canonicalJson(e) : render(e, canonicalJson(e), format).value;
        if (!out.write(text + '\n')) await new Promise((r) => out.once('drain', r));
      } else if (values.follow) {
        out.write(pad(row(e), [24, 18, 20, 8, 40, 6, 6]) + '\n');
      } else {
        const r = row(e);
        r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
        rows.push(r);
      }
    }
    index?.close();
    if (output === 'table' && !values.follow) {
      out.write(pad(COLUMNS, widths) + '\n');
      for (const r of rows) out.write(pad(r, widths) + '\n');
    }
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    return 0;
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`kubetrail events: ${err.message}\n${USAGE}`);
      return 2;
    }
    throw err;
  }
}
