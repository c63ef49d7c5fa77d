/**
 * `npm run bench:index`: the embedded index over a synthetic trail of
 * BENCH_EVENTS (default 1,000,000) events written as a local log.
 * Prints the ingest rate (feedIndex from the log: read, parse, insert, FTS),
 * the file size, and p50/p99 of typical console queries (first page of 50,
 * newest first), each against a full scan of the same log for the same
 * filter in the same run (what `kubetrail events` did before the index).
 *
 * BENCH_EVENTS, BENCH_REPEAT (query repetitions, default 40),
 * BENCH_SCANS (how many of the queries also get a full scan, default all).
 * Needs no harness.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { EventIndex, type IndexQuery } from '../../core/index/event-index.ts';
import { feedIndex } from '../../core/index/feed.ts';
import { readEvents } from '../../core/events/reader.ts';
import { indexedFields } from '../../core/index/fields.ts';
import type { KubetrailEvent } from '../../core/events/model.ts';
import { writeTrail } from '../support/trail.ts';

const N = Number(process.env['BENCH_EVENTS'] ?? 1_000_000);
const REPEAT = Number(process.env['BENCH_REPEAT'] ?? 40);
const SCANS = Number(process.env['BENCH_SCANS'] ?? Infinity);
const dir = mkdtempSync(path.join(tmpdir(), 'kubetrail-bench-index-'));
const dataDir = path.join(dir, 'data');
const START = Date.parse('2026-01-01T00:00:00Z');

try {
  let t0 = performance.now();
  // writeTrail spaces events 1 ms apart; the time range queries below scale with that.
  const bytes = writeTrail(dataDir, N, START);
  process.stdout.write(`trail: ${N} events, ${(bytes / 1048576).toFixed(0)} MiB local log, written in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);

  const index = new EventIndex(path.join(dir, 'events.sqlite'));
  t0 = performance.now();
  const fed = await feedIndex({ index, source: { kind: 'local', dir: dataDir } });
  const ingestS = (performance.now() - t0) / 1000;
  const size = statSync(path.join(dir, 'events.sqlite')).size + (statSync(path.join(dir, 'events.sqlite-wal'), { throwIfNoEntry: false })?.size ?? 0);
  process.stdout.write(`ingest: ${fed.added} events in ${ingestS.toFixed(1)} s = ${Math.round(fed.added / ingestS)} events/s; index ${(size / 1048576).toFixed(0)} MiB\n\n`);

  const mid = START + Math.floor(N / 2);
  const queries: { name: string; q: IndexQuery; keep: (e: KubetrailEvent) => boolean }[] = [
    { name: 'user', q: { user: 'u7' }, keep: (e) => e.actor?.username === 'u7' },
    { name: 'user + namespace', q: { user: 'u7', namespace: 'ns49' }, keep: (e) => e.actor?.username === 'u7' && indexedFields(e).namespace === 'ns49' },
    { name: 'group + verb', q: { group: 'team-3', verb: 'delete' }, keep: (e) => e.actor?.groups.includes('team-3') === true && indexedFields(e).verb === 'delete' },
    { name: 'resource + decision deny', q: { resource: 'deployments', decision: 'deny' }, keep: (e) => e.target?.resource === 'deployments' && indexedFields(e).decision === 'deny' },
    { name: 'policy', q: { policy: 'no-curl' }, keep: (e) => indexedFields(e).policy === 'no-curl' },
    { name: 'approval required', q: { approval: 'required' }, keep: (e) => indexedFields(e).approval === 'required' },
    { name: 'exec command', q: { command: 'tar' }, keep: (e) => indexedFields(e).command.split(' ').includes('tar') },
    { name: 'typed line', q: { line: 'passwd' }, keep: (e) => indexedFields(e).lines.includes('passwd') },
    { name: 'free text', q: { text: 'replicas below' }, keep: (e) => indexedFields(e).text.includes('replicas below') },
    { name: 'time range (1% of the trail)', q: { since: new Date(mid), until: new Date(mid + N / 100) }, keep: (e) => Date.parse(e.time) >= mid && Date.parse(e.time) < mid + N / 100 },
    { name: 'namespace in 3 visible', q: { namespace: 'ns10', namespaces: ['ns10', 'ns20', 'ns30'] }, keep: (e) => indexedFields(e).namespace === 'ns10' },
    { name: 'rare: user + namespace + type session.start', q: { user: 'u3', namespace: 'ns21', type: 'session.start' }, keep: (e) => e.type === 'session.start' && e.actor?.username === 'u3' && indexedFields(e).namespace === 'ns21' },
  ];
  const pct = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] ?? NaN;
  const rows: string[][] = [['query', 'matches', 'index p50 ms', 'index p99 ms', 'full scan ms', 'scan / index p99']];
  let scanned = 0;
  for (const { name, q, keep } of queries) {
    const times: number[] = [];
    let first: string[] = [];
    for (let i = 0; i < REPEAT; i++) {
      const a = performance.now();
      const page = index.query({ ...q, limit: 50 });
      times.push(performance.now() - a);
      first = page.events.map((e) => e.id);
    }
    const matches = index.countMatching(q);
    let scanMs = NaN;
    if (scanned++ < SCANS) {
      const a = performance.now();
      const kept: string[] = [];
      for await (const e of readEvents({ source: { kind: 'local', dir: dataDir } })) if (e.type !== 'session.data' || q.line !== undefined || q.type !== undefined) if (keep(e)) kept.push(e.id);
      scanMs = performance.now() - a;
      const want = kept.reverse().slice(0, 50);
      if (want.join() !== first.join()) process.stdout.write(`  note: ${name}: the scan's newest 50 differ from the index's first page\n`);
    }
    const p99 = pct(times, 99);
    rows.push([name, String(matches), pct(times, 50).toFixed(2), p99.toFixed(2), Number.isNaN(scanMs) ? '' : scanMs.toFixed(0), Number.isNaN(scanMs) ? '' : `×${Math.round(scanMs / p99)}`]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  for (const r of rows) process.stdout.write(r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ') + '\n');
  index.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
