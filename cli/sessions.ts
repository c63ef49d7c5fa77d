/**
 * `kubetrail sessions`: lists recorded exec/attach/port-forward sessions
 * from the local log or Kafka.
 *
 *   kubetrail sessions [--config F] [--log-dir D | --brokers B [--topic T]...]
 *                      [--user U] [--namespace N] [--pod P] [--since 1h] [-o table|json]
 *
 * One row per session (from session.start and session.end); `-o json`
 * prints one native event per session and line: its session.end, or its
 * session.start while it is still open.
 */
import { parseCommandArgs } from './args.ts';
import { readEvents, type EventFilter } from '../core/events/reader.ts';
import { canonicalJson } from '../core/chain/canonical.ts';
import type { KubetrailEvent, SessionBody } from '../core/events/model.ts';
import { SOURCE_FLAGS, UsageError, parseSince, sourceFromFlags } from './events.ts';
import { INDEX_FLAGS, indexFor, queryOf } from './index-source.ts';

const USAGE = `usage: kubetrail sessions [--config F] [--log-dir D | --brokers B [--topic T]...]
                          [--user U] [--namespace N] [--pod P] [--since 1h] [-o table|json]
                          [--index FILE | --scan]
`;

/** What the listing knows of one session. */
export interface SessionSummary {
  id: string;
  start?: KubetrailEvent;
  end?: KubetrailEvent;
}

/** Groups session.start/end events by session id, in first-seen order. */
function summarize(events: Iterable<KubetrailEvent>): SessionSummary[] {
  const byId = new Map<string, SessionSummary>();
  for (const e of events) {
    if (e.type !== 'session.start' && e.type !== 'session.end') continue;
    const id = e.correlation?.session;
    if (id === undefined) continue;
    const s = byId.get(id) ?? { id };
    if (e.type === 'session.start') s.start = e;
    else s.end = e;
    byId.set(id, s);
  }
  return [...byId.values()];
}

const COLUMNS = ['SESSION', 'STARTED', 'USER', 'KIND', 'POD', 'COMMAND', 'EXIT', 'OUTCOME', 'DURATION', 'BYTES IN/OUT'] as const;

function cells(s: SessionSummary): string[] {
  const b = (s.end ?? s.start)?.body as SessionBody | undefined;
  const started = s.start?.time ?? s.end?.time ?? '';
  const cmd = b?.kind === 'portforward' ? `ports ${(b.ports ?? []).join(',')}` : (b?.command ?? []).join(' ');
  return [
    s.id,
    started,
    (s.start ?? s.end)?.actor?.username ?? '',
    b?.kind ?? '',
    b ? `${b.namespace}/${b.pod}` : '',
    cmd.length > 40 ? `${cmd.slice(0, 39)}…` : cmd,
    b?.exitCode === undefined ? '' : String(b.exitCode),
    s.end ? (b?.outcome ?? '') : 'open',
    b?.durationMs === undefined ? '' : `${(b.durationMs / 1000).toFixed(1)}s`,
    s.end ? `${b?.bytesIn ?? 0}/${b?.bytesOut ?? 0}` : '',
  ];
}

/** Runs `kubetrail sessions`. */
export async function run(argv: string[]): Promise<number> {
  const parsed = parseCommandArgs('sessions', USAGE, argv, {
        ...SOURCE_FLAGS,
        ...INDEX_FLAGS,
        user: { type: 'string' },
        namespace: { type: 'string', short: 'n' },
        pod: { type: 'string' },
        since: { type: 'string' },
        output: { type: 'string', short: 'o' },
        help: { type: 'boolean', short: 'h' },
      });
  if (typeof parsed === 'number') return parsed;
  const { values } = parsed;
  try {
    const output = values.output ?? 'table';
    if (output !== 'table' && output !== 'json') throw new UsageError('-o: expected table or json');
    const filter: EventFilter = { type: 'session' };
    if (values.user !== undefined) filter.user = values.user;
    if (values.namespace !== undefined) filter.namespace = values.namespace;
    if (values.since !== undefined) filter.since = parseSince(values.since);
    const source = sourceFromFlags(values);
    const events: KubetrailEvent[] = [];
    const index = await indexFor(values, source);
    // session.start and session.end only: the index need not read the (bulky) session.data lines back.
    const found = index !== undefined ? [...index.all({ ...queryOf(filter), includeData: false })] : readEvents({ source, filter });
    index?.close();
    for await (const e of found) {
      if (e.type === 'session.data') continue; // bulky and not needed for the listing
      if (values.pod !== undefined && (e.body as SessionBody).pod !== values.pod) continue;
      events.push(e);
    }
    const list = summarize(events);
    const out = process.stdout;
    if (output === 'json') {
      for (const s of list) out.write(canonicalJson(s.end ?? s.start) + '\n');
      return 0;
    }
    const rows = list.map(cells);
    const widths = COLUMNS.map((c, i) => Math.max(c.length, ...rows.map((r) => (r[i] ?? '').length)));
    const pad = (r: readonly string[]): string => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
    out.write(pad(COLUMNS) + '\n');
    for (const r of rows) out.write(pad(r) + '\n');
    return 0;
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`kubetrail sessions: ${err.message}\n${USAGE}`);
      return 2;
    }
    throw err;
  }
}
