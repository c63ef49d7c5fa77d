/**
 * How `kubetrail events` and `sessions` decide to answer from the index:
 * `--index FILE` names one (created and fed if new); without it the
 * configured index file (`index.file`) is used when it exists and the source
 * is the configured one (an index of the config's trail says nothing about
 * another `--log-dir`). `--scan` forces a full scan. The index is first
 * brought up to date from the trail, so the answer is the scan's.
 */
import { existsSync } from 'node:fs';
import { loadConfig } from '../core/config.ts';
import { EventIndex, type IndexQuery } from '../core/index/event-index.ts';
import { feedIndex } from '../core/index/feed.ts';
import type { EventFilter, ReadSource } from '../core/events/reader.ts';

/** The flags this module reads. */
export const INDEX_FLAGS = {
  index: { type: 'string' },
  scan: { type: 'boolean' },
} as const;

/** The index to answer from, caught up with `source`, or undefined for a scan. */
export async function indexFor(
  values: { index?: string | undefined; scan?: boolean | undefined; config?: string | undefined; 'log-dir'?: string | undefined; brokers?: string | undefined; topic?: string[] | undefined },
  source: ReadSource,
): Promise<EventIndex | undefined> {
  if (values.scan) return undefined;
  let file = values.index;
  if (file === undefined) {
    if (values['log-dir'] !== undefined || values.brokers !== undefined || values.topic !== undefined) return undefined;
    const cfg = loadConfig({ env: process.env, ...(values.config !== undefined ? { file: values.config } : {}) });
    if (!existsSync(cfg.index.file)) return undefined;
    file = cfg.index.file;
  }
  const index = new EventIndex(file);
  try {
    await feedIndex({ index, source });
  } catch (err) {
    index.close();
    throw err;
  }
  return index;
}

/** The reader's filter as an index query (same semantics: exact, ANDed; session.data included as the scan does). */
export function queryOf(f: EventFilter): IndexQuery {
  const q: IndexQuery = { includeData: true };
  if (f.user !== undefined) q.user = f.user;
  if (f.namespace !== undefined) q.namespace = f.namespace;
  if (f.type !== undefined) q.type = f.type;
  if (f.session !== undefined) q.session = f.session;
  if (f.since !== undefined) q.since = f.since;
  return q;
}
