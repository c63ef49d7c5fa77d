/**
 * Checks stored events against the hash chain and the signed checkpoints,
 * per source (cluster/component/instance). Pure: records in, a report out;
 * the CLI (`kubetrail verify`) feeds it from the local log or Kafka.
 *
 * What is reported (each an issue; any issue fails verification):
 * - `altered`: an event whose recomputed hash differs from its chain.hash; a
 *   Kafka value that is not the rendering of its native event; two different
 *   events with the same seq; a checkpoint whose signed hash is not the hash
 *   of the event at that seq.
 * - `broken-link`: an event whose chain.prev is not the hash of seq-1 (e.g.
 *   an event was replaced with a re-hashed one).
 * - `missing`: sequence numbers absent between the first and last seen (and
 *   before the first, unless `allowHeadGap`: retention legitimately removes
 *   the oldest events).
 * - `reordered`: within one stream (a log, or a Kafka partition) an event
 *   appears after one with a higher seq. Duplicates of an event already seen
 *   (same seq AND same hash: a retried produce) are counted, not reported.
 * - `bad-signature`: a checkpoint whose Ed25519 signature does not verify
 *   with the given public key.
 * - `unreadable`: a record that is not a JSON event with a chain link.
 * Events after the last valid checkpoint are counted as `unsignedTail`: they
 * are chained but no signature vouches for them yet.
 */
import type { KeyObject } from 'node:crypto';
import type { CheckpointBody, KubetrailEvent } from '../events/model.ts';
import { render, type WireFormat } from '../events/formats/index.ts';
import { computeHash, GENESIS_HASH } from './hash.ts';
import { keyIdOf, verifyCheckpoint } from './signing.ts';

/** Kinds of verification failures. */
export type IssueKind = 'altered' | 'broken-link' | 'missing' | 'reordered' | 'bad-signature' | 'unreadable';

/** One verification failure. */
export interface VerifyIssue {
  kind: IssueKind;
  /** cluster/component/instance, when known. */
  source?: string;
  seq?: number;
  /** For `missing`: the last missing seq of the range [seq, toSeq]. */
  toSeq?: number;
  stream?: string;
  position?: string;
  detail: string;
}

/** Summary of one source's chain. */
export interface SourceReport {
  source: string;
  events: number;
  firstSeq: number;
  lastSeq: number;
  checkpoints: number;
  validCheckpoints: number;
  /** Highest seq vouched for by a valid checkpoint (0: none). */
  signedThrough: number;
  /** Events after signedThrough. */
  unsignedTail: number;
  duplicates: number;
}

/** The verification result. */
export interface VerifyReport {
  ok: boolean;
  records: number;
  sources: SourceReport[];
  issues: VerifyIssue[];
}

/** A stored record as the verifier needs it. */
export interface VerifyRecord {
  stream: string;
  position: string;
  line: string;
  format: WireFormat;
  value: string;
}

interface Seen {
  hash: string;
  prev: string;
  id: string;
  stream: string;
  position: string;
}

interface SourceState {
  events: Map<number, Seen>;
  checkpoints: { seq: number; event: KubetrailEvent<'chain.checkpoint'>; stream: string; position: string }[];
  duplicates: number;
  lastInStream: Map<string, number>;
  instance: string;
}

/** Options of {@link ChainVerifier}. */
export interface VerifierOptions {
  publicKey: KeyObject;
  /** Do not report seqs missing before the first one seen (retention). */
  allowHeadGap?: boolean;
}

/** Accumulates records, then reports. */
export class ChainVerifier {
  readonly #o: VerifierOptions;
  readonly #keyId: string;
  readonly #sources = new Map<string, SourceState>();
  readonly #issues: VerifyIssue[] = [];
  #records = 0;

  constructor(o: VerifierOptions) {
    this.#o = o;
    this.#keyId = keyIdOf(o.publicKey);
  }

  /** Feeds one record, in stored order. */
  add(r: VerifyRecord): void {
    this.#records += 1;
    const at = { stream: r.stream, position: r.position };
    let e: KubetrailEvent;
    try {
      e = JSON.parse(r.line) as KubetrailEvent;
    } catch {
      this.#issues.push({ kind: 'unreadable', ...at, detail: 'not JSON' });
      return;
    }
    const c = e.chain;
    if (e === null || typeof e !== 'object' || c === undefined || typeof c.seq !== 'number' || typeof c.hash !== 'string' || e.source === undefined) {
      this.#issues.push({ kind: 'unreadable', ...at, detail: 'not a chained kubetrail event' });
      return;
    }
    const source = `${e.source.cluster}/${e.source.component}/${e.source.instance}`;
    const where = { source, seq: c.seq, ...at };
    let st = this.#sources.get(source);
    if (st === undefined) {
      st = { events: new Map(), checkpoints: [], duplicates: 0, lastInStream: new Map(), instance: e.source.instance };
      this.#sources.set(source, st);
    }
    let hashOk = true;
    try {
      hashOk = computeHash(e) === c.hash;
    } catch {
      hashOk = false;
    }
    if (!hashOk) this.#issues.push({ kind: 'altered', ...where, detail: 'recomputed hash differs from chain.hash: the event was changed after it was written' });
    if (r.format !== 'native') {
      let rendered: string | undefined;
      try {
        rendered = render(e, r.line, r.format).value;
      } catch {
        rendered = undefined;
      }
      if (rendered !== r.value) this.#issues.push({ kind: 'altered', ...where, detail: `the ${r.format} value is not the rendering of the chained native event` });
    }
    const prior = st.events.get(c.seq);
    if (prior !== undefined) {
      if (prior.hash === c.hash && hashOk) {
        st.duplicates += 1;
        return;
      }
      this.#issues.push({ kind: 'altered', ...where, detail: `two different events carry seq ${c.seq} (first at ${prior.stream}#${prior.position})` });
      return;
    }
    const last = st.lastInStream.get(r.stream) ?? 0;
    if (c.seq < last) this.#issues.push({ kind: 'reordered', ...where, detail: `seq ${c.seq} appears after seq ${last} in ${r.stream}` });
    else st.lastInStream.set(r.stream, c.seq);
    st.events.set(c.seq, { hash: c.hash, prev: c.prev, id: e.id, ...at });
    if (e.type === 'chain.checkpoint') st.checkpoints.push({ seq: c.seq, event: e as KubetrailEvent<'chain.checkpoint'>, ...at });
  }

  /** Checks links, gaps and checkpoints; returns the report. */
  finish(): VerifyReport {
    const sources: SourceReport[] = [];
    for (const [source, st] of this.#sources) {
      const seqs = [...st.events.keys()].sort((a, b) => a - b);
      const first = seqs[0] ?? 0;
      const lastSeq = seqs.at(-1) ?? 0;
      if (first > 1 && !this.#o.allowHeadGap) this.#issues.push({ kind: 'missing', source, seq: 1, toSeq: first - 1, detail: `seq 1..${first - 1} missing (use --allow-head-gap if retention removed them)` });
      for (let i = 0; i < seqs.length; i++) {
        const s = seqs[i] as number;
        const ev = st.events.get(s) as Seen;
        const next = seqs[i + 1];
        if (next !== undefined && next > s + 1) this.#issues.push({ kind: 'missing', source, seq: s + 1, toSeq: next - 1, detail: `seq ${s + 1}${next - 1 > s + 1 ? `..${next - 1}` : ''} missing` });
        const before = st.events.get(s - 1);
        if (s === 1 && ev.prev !== GENESIS_HASH && ev.prev !== '') this.#issues.push({ kind: 'broken-link', source, seq: s, stream: ev.stream, position: ev.position, detail: 'first event does not start a chain' });
        if (before !== undefined && ev.prev !== before.hash) this.#issues.push({ kind: 'broken-link', source, seq: s, stream: ev.stream, position: ev.position, detail: `chain.prev is not the hash of seq ${s - 1}` });
      }
      let valid = 0;
      let signedThrough = 0;
      for (const cp of st.checkpoints) {
        const b = cp.event.body as CheckpointBody;
        const where = { source, seq: cp.seq, stream: cp.stream, position: cp.position };
        if (b.keyId !== this.#keyId || !verifyCheckpoint(this.#o.publicKey, st.instance, b.seq, b.hash, b.signature)) {
          this.#issues.push({ kind: 'bad-signature', ...where, detail: b.keyId !== this.#keyId ? `signed by key ${b.keyId}, not by the given key ${this.#keyId}` : 'Ed25519 signature does not verify' });
          continue;
        }
        valid += 1;
        const target = st.events.get(b.seq);
        if (target !== undefined && target.hash !== b.hash) {
          this.#issues.push({ kind: 'altered', ...where, detail: `checkpoint signs hash ${b.hash.slice(0, 12)}… for seq ${b.seq}, but the stored event's hash differs` });
        } else if (b.seq > signedThrough) signedThrough = b.seq;
      }
      // The checkpoint event itself is covered by the next checkpoint; the one
      // it signs and everything before it (through the hash links) is vouched.
      sources.push({
        source,
        events: seqs.length,
        firstSeq: first,
        lastSeq,
        checkpoints: st.checkpoints.length,
        validCheckpoints: valid,
        signedThrough,
        unsignedTail: seqs.filter((s) => s > signedThrough).length,
        duplicates: st.duplicates,
      });
    }
    return { ok: this.#issues.length === 0, records: this.#records, sources, issues: [...this.#issues] };
  }
}
