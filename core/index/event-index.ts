/**
 * The embedded index of the trail (node:sqlite; docs/console.md says why it is
 * enough): one row per event with the fields queries filter on, the event's
 * own canonical line, an FTS5 table over command, typed lines and free text,
 * and, per stream, how far it has been read. It can be deleted and rebuilt
 * from the trail at any time (`kubetrail index --rebuild`); it holds nothing
 * that is not in the trail.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import type { KubetrailEvent } from '../events/model.ts';
import { indexedFields } from './fields.ts';

/** Bumped when the schema changes: an index of another version is rebuilt. */
const SCHEMA_VERSION = '2';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS streams(stream TEXT PRIMARY KEY, position INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events(
  rowid INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  t INTEGER NOT NULL,
  type TEXT NOT NULL,
  user TEXT, namespace TEXT, resource TEXT, name TEXT, verb TEXT,
  decision TEXT, policy TEXT, approval TEXT, session TEXT, audit_id TEXT,
  source TEXT NOT NULL, seq INTEGER,
  stream TEXT NOT NULL, position INTEGER NOT NULL,
  line TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ev_t ON events(t);
CREATE INDEX IF NOT EXISTS ev_user ON events(user, t);
CREATE INDEX IF NOT EXISTS ev_ns ON events(namespace, t);
CREATE INDEX IF NOT EXISTS ev_type ON events(type, t);
CREATE INDEX IF NOT EXISTS ev_resource ON events(resource, t);
CREATE INDEX IF NOT EXISTS ev_verb ON events(verb, t);
CREATE INDEX IF NOT EXISTS ev_decision ON events(decision, t) WHERE decision IS NOT NULL;
CREATE INDEX IF NOT EXISTS ev_policy ON events(policy, t) WHERE policy IS NOT NULL;
CREATE INDEX IF NOT EXISTS ev_approval ON events(approval, t) WHERE approval IS NOT NULL;
CREATE INDEX IF NOT EXISTS ev_session ON events(session) WHERE session IS NOT NULL;
CREATE INDEX IF NOT EXISTS ev_audit ON events(audit_id) WHERE audit_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS ev_source ON events(source, seq);
CREATE TABLE IF NOT EXISTS event_groups(ev INTEGER NOT NULL, grp TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS eg_grp ON event_groups(grp, ev);
CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5(command, lines, text, content='', contentless_delete=1, tokenize="unicode61 tokenchars '-_'");
`;

/** A query; every field optional, all ANDed. Strings are exact unless noted. */
export interface IndexQuery {
  user?: string;
  group?: string;
  namespace?: string;
  /** `pods`, or `pods/exec` (resource and subresource as in the target). */
  resource?: string;
  verb?: string;
  /** Words of the exec command (FTS5, all words must appear). */
  command?: string;
  /** Words of typed lines (stdin, checked lines). */
  line?: string;
  /** allow | deny. */
  decision?: string;
  policy?: string;
  /** requested | decided | expired | used | required. */
  approval?: string;
  /** An event type or a prefix (`session` matches session.*). Without it (and without `line`), session.data chunks are left out... */
  type?: string;
  /** ... unless this is true (the CLI's listing has them, as the scan does); false leaves them out even with `type`. */
  includeData?: boolean;
  session?: string;
  auditId?: string;
  since?: Date;
  until?: Date;
  /** Free text over everything indexed (FTS5 words). */
  text?: string;
  /** Visibility: only these namespaces (cluster-scoped events need `'*'`). Absent: everything. */
  namespaces?: readonly string[];
  /** Newest first (default) or oldest first. */
  order?: 'desc' | 'asc';
  limit?: number;
  /** Continue after this cursor (from the previous page's `next`). */
  after?: string;
}

/** One page of results. */
export interface IndexPage {
  events: KubetrailEvent[];
  /** Cursor of the next page, when there may be one. */
  next?: string;
}

/** Where one stored event sits in the trail. */
export interface IndexedPosition {
  stream: string;
  position: number;
}

/** Quotes each word for FTS5 so user text is never FTS syntax. */
export function ftsPhrase(words: string): string {
  return words
    .split(/\s+/)
    .filter(Boolean)
    .map((w) => `"${w.replaceAll('"', '""')}"`)
    .join(' ');
}

/** The index file: open (creating or upgrading it), ingest, query. Not safe to share across threads. */
export class EventIndex {
  readonly file: string;
  readonly #db: DatabaseSync;
  readonly #insert: StatementSync;
  readonly #insertGroup: StatementSync;
  readonly #insertFts: StatementSync;
  readonly #setStream: StatementSync;
  #inTx = 0;

  constructor(file: string) {
    this.file = file;
    if (file !== ':memory:') mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    this.#db = new DatabaseSync(file);
    // Rebuildable from the trail, so a lost tail after a crash is re-read, not lost: NORMAL is enough.
    this.#db.exec('PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;');
    this.#db.exec('CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)');
    const v = this.#db.prepare("SELECT value FROM meta WHERE key='schema'").get() as { value: string } | undefined;
    if (v !== undefined && v.value !== SCHEMA_VERSION) this.#drop();
    this.#db.exec(SCHEMA);
    this.#db.prepare("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema', ?)").run(SCHEMA_VERSION);
    this.#insert = this.#db.prepare(`INSERT OR IGNORE INTO events(id, t, type, user, namespace, resource, name, verb, decision, policy, approval, session, audit_id, source, seq, stream, position, line)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
    this.#insertGroup = this.#db.prepare('INSERT INTO event_groups(ev, grp) VALUES (?, ?)');
    this.#insertFts = this.#db.prepare('INSERT INTO fts(rowid, command, lines, text) VALUES (?, ?, ?, ?)');
    this.#setStream = this.#db.prepare('INSERT INTO streams(stream, position) VALUES (?, ?) ON CONFLICT(stream) DO UPDATE SET position = excluded.position WHERE excluded.position > streams.position');
  }

  #drop(): void {
    this.#db.exec('DROP TABLE IF EXISTS fts; DROP TABLE IF EXISTS event_groups; DROP TABLE IF EXISTS events; DROP TABLE IF EXISTS streams; DELETE FROM meta;');
  }

  /** Empties the index (the next feed reads the trail from the start). */
  clear(): void {
    this.#drop();
    this.#db.exec(SCHEMA);
    this.#db.prepare("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema', ?)").run(SCHEMA_VERSION);
  }

  /** Runs `fn` in one transaction (ingest batches: one commit per batch, not per event). */
  batch<T>(fn: () => T): T {
    if (this.#inTx > 0) return fn();
    this.#db.exec('BEGIN');
    this.#inTx++;
    try {
      const r = fn();
      this.#db.exec('COMMIT');
      return r;
    } catch (err) {
      this.#db.exec('ROLLBACK');
      throw err;
    } finally {
      this.#inTx--;
    }
  }

  /** Adds one event read from `stream` at `position` (its canonical line as stored). Returns false for an event already indexed. */
  add(e: KubetrailEvent, line: string, at: IndexedPosition): boolean {
    const f = indexedFields(e);
    const r = this.#insert.run(e.id, Number.isFinite(f.t) ? f.t : 0, f.type, f.user, f.namespace, f.resource, f.name, f.verb, f.decision, f.policy, f.approval, f.session, f.auditId, f.source, f.seq, at.stream, at.position, line);
    this.#setStream.run(at.stream, at.position);
    if (r.changes === 0) return false;
    const rowid = Number(r.lastInsertRowid);
    for (const g of new Set(f.groups)) this.#insertGroup.run(rowid, g);
    if (f.command !== '' || f.lines !== '' || f.text !== '') this.#insertFts.run(rowid, f.command, f.lines, f.text);
    return true;
  }

  /** Records that `stream` was read up to `position` (also for records that were not events). */
  advance(at: IndexedPosition): void {
    this.#setStream.run(at.stream, at.position);
  }

  /** How far each stream has been read. */
  positions(): Map<string, number> {
    const rows = this.#db.prepare('SELECT stream, position FROM streams').all() as { stream: string; position: number }[];
    return new Map(rows.map((r) => [r.stream, Number(r.position)]));
  }

  /** Number of indexed events. */
  count(): number {
    return Number((this.#db.prepare('SELECT count(*) AS n FROM events').get() as { n: number }).n);
  }

  /** Builds WHERE clauses and parameters for `q` (without paging). */
  #where(q: IndexQuery): { sql: string; params: (string | number)[] } {
    const c: string[] = [];
    const p: (string | number)[] = [];
    const eq = (col: string, v: string | undefined): void => {
      if (v === undefined) return;
      c.push(`${col} = ?`);
      p.push(v);
    };
    eq('user', q.user);
    eq('namespace', q.namespace);
    eq('verb', q.verb);
    eq('decision', q.decision);
    eq('policy', q.policy);
    eq('approval', q.approval);
    eq('session', q.session);
    eq('audit_id', q.auditId);
    if (q.resource !== undefined) {
      // The target's subresource is part of the stored line only; `pods/exec` matches by resource and the line's subresource.
      const [res, sub] = q.resource.split('/', 2) as [string, string | undefined];
      c.push('resource = ?');
      p.push(res);
      if (sub !== undefined) {
        c.push("json_extract(line, '$.target.subresource') = ?");
        p.push(sub);
      }
    }
    if (q.type !== undefined) {
      c.push('(type = ? OR type >= ? AND type < ?)');
      p.push(q.type, `${q.type}.`, `${q.type}/`); // '/' sorts right after '.'
    }
    if (q.includeData === false || (q.type === undefined && q.line === undefined && q.includeData !== true)) c.push("type <> 'session.data'");
    if (q.group !== undefined) {
      c.push('rowid IN (SELECT ev FROM event_groups WHERE grp = ?)');
      p.push(q.group);
    }
    if (q.since !== undefined) {
      c.push('t >= ?');
      p.push(q.since.getTime());
    }
    if (q.until !== undefined) {
      c.push('t < ?');
      p.push(q.until.getTime());
    }
    const match: string[] = [];
    if (q.command !== undefined && q.command.trim() !== '') match.push(`command : (${ftsPhrase(q.command)})`);
    if (q.line !== undefined && q.line.trim() !== '') match.push(`lines : (${ftsPhrase(q.line)})`);
    if (q.text !== undefined && q.text.trim() !== '') match.push(`(${ftsPhrase(q.text)})`);
    if (match.length > 0) {
      c.push('rowid IN (SELECT rowid FROM fts WHERE fts MATCH ?)');
      p.push(match.join(' AND '));
    }
    if (q.namespaces !== undefined) {
      const named = q.namespaces.filter((n) => n !== '*');
      const parts: string[] = [];
      if (named.length > 0) {
        parts.push(`namespace IN (${named.map(() => '?').join(',')})`);
        p.push(...named);
      }
      if (q.namespaces.includes('*')) parts.push('namespace IS NULL');
      c.push(parts.length > 0 ? `(${parts.join(' OR ')})` : '0');
    }
    return { sql: c.length > 0 ? c.join(' AND ') : '1', params: p };
  }

  /** One page of events matching `q`, newest first unless `order: 'asc'`. */
  query(q: IndexQuery): IndexPage {
    const { sql, params } = this.#where(q);
    const asc = q.order === 'asc';
    const limit = Math.max(1, Math.min(q.limit ?? 100, 10_000));
    let page = '';
    if (q.after !== undefined) {
      const m = /^(\d+)\.(\d+)$/.exec(q.after);
      if (m) {
        page = asc ? ' AND (t, rowid) > (?, ?)' : ' AND (t, rowid) < (?, ?)';
        params.push(Number(m[1]), Number(m[2]));
      }
    }
    const dir = asc ? 'ASC' : 'DESC';
    const rows = this.#db.prepare(`SELECT rowid, t, line FROM events WHERE ${sql}${page} ORDER BY t ${dir}, rowid ${dir} LIMIT ?`).all(...params, limit + 1) as { rowid: number; t: number; line: string }[];
    const more = rows.length > limit;
    const kept = more ? rows.slice(0, limit) : rows;
    const last = kept.at(-1);
    return { events: kept.map((r) => JSON.parse(r.line) as KubetrailEvent), ...(more && last ? { next: `${last.t}.${last.rowid}` } : {}) };
  }

  /** Every event matching `q`, in the order a scan of the local log yields them (stream by stream, in stored order), without paging: the CLI's listing. */
  *all(q: IndexQuery): Generator<KubetrailEvent> {
    const { sql, params } = this.#where(q);
    for (const r of this.#db.prepare(`SELECT line FROM events WHERE ${sql} ORDER BY stream, position`).iterate(...params) as Iterable<{ line: string }>) yield JSON.parse(r.line) as KubetrailEvent;
  }

  /** How many events match `q`. */
  countMatching(q: IndexQuery): number {
    const { sql, params } = this.#where(q);
    return Number((this.#db.prepare(`SELECT count(*) AS n FROM events WHERE ${sql}`).get(...params) as { n: number }).n);
  }

  /** One event by id, with where it sits in the trail. */
  get(id: string): { event: KubetrailEvent; stream: string; position: number } | undefined {
    const r = this.#db.prepare('SELECT line, stream, position FROM events WHERE id = ?').get(id) as { line: string; stream: string; position: number } | undefined;
    return r === undefined ? undefined : { event: JSON.parse(r.line) as KubetrailEvent, stream: r.stream, position: Number(r.position) };
  }

  /** Every event of one session (start, data, end, decisions), in stored order. */
  session(id: string): KubetrailEvent[] {
    return (this.#db.prepare('SELECT line FROM events WHERE session = ? ORDER BY rowid').all(id) as { line: string }[]).map((r) => JSON.parse(r.line) as KubetrailEvent);
  }

  /** Distinct values of a column (for filter menus); bounded. */
  distinct(column: 'user' | 'namespace' | 'type' | 'verb' | 'policy' | 'source', limit = 200): string[] {
    return (this.#db.prepare(`SELECT DISTINCT ${column} AS v FROM events WHERE ${column} IS NOT NULL ORDER BY ${column} LIMIT ?`).all(limit) as { v: string }[]).map((r) => r.v);
  }

  close(): void {
    if (this.#db.isOpen) this.#db.close();
  }
}
