/**
 * Checks stored events against the hash chain and the signed checkpoints,
 * per source (cluster/component/instance). Pure: records in, a report out;
 * the CLI (`kubetrail verify`) feeds it from the local log or Kafka.
 *
 * What is reported (each an issue; any issue fails verification):
 * - `altered`: an event whose recomputed hash differs from its chain.hash; a
 *   Kafka value that is not the rendering of its native event; two different
 *   events with the same seq; a checkpoint or signed head whose signed hash
 *   is not the hash of the event at that seq.
 * - `broken-link`: an event whose chain.prev is not the hash of seq-1 (e.g.
 *   an event was replaced with a re-hashed one).
 * - `missing`: sequence numbers absent between the first and last seen (and
 *   before the first, unless `allowHeadGap`: retention legitimately removes
 *   the oldest events), unless a valid signed `chain.gap` declares them lost
 *   (then they are listed as `declaredGaps`, not as an issue).
 * - `reordered`: within one stream (a log, or a Kafka partition) an event
 *   appears after one with a higher seq.
 * - `replayed`: copies of events already seen that are not a re-send. A
 *   re-send (a produce retried after a missed deadline, a batch re-sent from
 *   the journal after a crash) lands in the stream of the original and
 *   repeats it through to the newest event of that stream; those copies are
 *   counted as `duplicates`. Anything else (an old segment copied back in, old
 *   records produced again) is a replay.
 * - `truncated`: a signed head kept outside the log (`signedHeads`, from
 *   `signing.headDir`) names a seq, or a checkpoint, the log no longer reaches.
 * - `bad-signature`: a checkpoint, gap declaration or signed head whose
 *   Ed25519 signature does not verify with any of the given public keys.
 * - `unreadable`: a record that is not a JSON event with a chain link.
 * Events after the last valid checkpoint are counted as `unsignedTail`: they
 * are chained but no signature vouches for them yet.
 *
 * Over 400 lines on purpose: every check reads the same per-source state,
 * and splitting it would only pass that state around.
 */
import type { KeyObject } from 'node:crypto';
import type { CheckpointBody, GapBody, KubetrailEvent } from '../events/model.ts';
import { render, type WireFormat } from '../events/formats/index.ts';
import { computeHash, GENESIS_HASH } from './hash.ts';
import type { SignedHead } from './signed-head.ts';
import { keyIdOf, verifyCheckpoint, verifyGap } from './signing.ts';

/** Kinds of verification failures. */
export type IssueKind = 'altered' | 'broken-link' | 'missing' | 'reordered' | 'replayed' | 'truncated' | 'bad-signature' | 'unreadable';

/** One verification failure. */
export interface VerifyIssue {
  kind: IssueKind;
  /** cluster/component/instance, when known. */
  source?: string;
  seq?: number;
  /** For `missing` and `replayed`: the last seq of the range [seq, toSeq]. */
  toSeq?: number;
  stream?: string;
  position?: string;
  detail: string;
}

/** Seqs a valid signed `chain.gap` declares lost: not tampering, but listed. The gap event's body, less its signature, and the gap event's own seq. */
export type DeclaredGap = Omit<GapBody, 'keyId' | 'signature'> & { seq: number };

/** Summary of one source's chain. */
export interface SourceReport {
  source: string;
  events: number;
  firstSeq: number;
  lastSeq: number;
  checkpoints: number;
  validCheckpoints: number;
  /** Highest seq vouched for by a valid checkpoint or signed head (0: none). */
  signedThrough: number;
  /** Events after signedThrough. */
  unsignedTail: number;
  duplicates: number;
  declaredGaps: DeclaredGap[];
  /** Seq of the external signed head checked against this source, when one was given. */
  signedHead?: number;
}

/** The verification result. */
export interface VerifyReport {
  ok: boolean;
  records: number;
  /** How many external signed heads were checked (0: a cut tail cannot be detected). */
  signedHeads: number;
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

/** Per source, per stream: seqs in first-stored order, and a run of copies in progress. */
interface StreamState {
  order: number[];
  index: Map<number, number>;
  last: number;
  run: { start: number; idx: number; position: string } | undefined;
}

interface Located<T extends 'chain.checkpoint' | 'chain.gap'> {
  seq: number;
  event: KubetrailEvent<T>;
  stream: string;
  position: string;
}

interface SourceState {
  events: Map<number, Seen>;
  checkpoints: Located<'chain.checkpoint'>[];
  gaps: Located<'chain.gap'>[];
  duplicates: number;
  streams: Map<string, StreamState>;
  instance: string;
}

/** Options of {@link ChainVerifier}. */
export interface VerifierOptions {
  /** One public key (kept for callers that have one). */
  publicKey?: KeyObject;
  /** Every key a signature may be made with (one per component instance with dev keys). */
  publicKeys?: readonly KeyObject[];
  /** Do not report seqs missing before the first one seen (retention). */
  allowHeadGap?: boolean;
  /** Signed heads kept outside the log: the newest each source is known to have reached. */
  signedHeads?: readonly SignedHead[];
}

const sourceName = (s: { cluster: string; component: string; instance: string }): string => `${s.cluster}/${s.component}/${s.instance}`;
const range = (a: number, b: number): string => (b > a ? `${a}..${b}` : `${a}`);

/** Accumulates records, then reports. */
export class ChainVerifier {
  readonly #o: VerifierOptions;
  readonly #keys = new Map<string, KeyObject>();
  readonly #sources = new Map<string, SourceState>();
  readonly #issues: VerifyIssue[] = [];
  #records = 0;

  constructor(o: VerifierOptions) {
    this.#o = o;
    for (const k of [...(o.publicKey ? [o.publicKey] : []), ...(o.publicKeys ?? [])]) this.#keys.set(keyIdOf(k), k);
    if (this.#keys.size === 0) throw new TypeError('ChainVerifier: at least one public key is required');
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
    const source = sourceName(e.source);
    const where = { source, seq: c.seq, ...at };
    let st = this.#sources.get(source);
    if (st === undefined) {
      st = { events: new Map(), checkpoints: [], gaps: [], duplicates: 0, streams: new Map(), instance: e.source.instance };
      this.#sources.set(source, st);
    }
    let ss = st.streams.get(r.stream);
    if (ss === undefined) {
      ss = { order: [], index: new Map(), last: 0, run: undefined };
      st.streams.set(r.stream, ss);
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
        this.#copy(source, r.stream, ss, c.seq, prior, r.position);
        return;
      }
      this.#endRun(source, r.stream, ss);
      this.#issues.push({ kind: 'altered', ...where, detail: `two different events carry seq ${c.seq} (first at ${prior.stream}#${prior.position})` });
      return;
    }
    this.#endRun(source, r.stream, ss);
    if (c.seq < ss.last) this.#issues.push({ kind: 'reordered', ...where, detail: `seq ${c.seq} appears after seq ${ss.last} in ${r.stream}` });
    else ss.last = c.seq;
    ss.index.set(c.seq, ss.order.length);
    ss.order.push(c.seq);
    st.events.set(c.seq, { hash: c.hash, prev: c.prev, id: e.id, ...at });
    if (e.type === 'chain.checkpoint') st.checkpoints.push({ seq: c.seq, event: e as KubetrailEvent<'chain.checkpoint'>, ...at });
    else if (e.type === 'chain.gap') st.gaps.push({ seq: c.seq, event: e as KubetrailEvent<'chain.gap'>, ...at });
  }

  /** A copy of an event already seen: part of a re-send while it follows the stream's own order to its newest event. */
  #copy(source: string, stream: string, ss: StreamState, seq: number, prior: Seen, position: string): void {
    const i = ss.index.get(seq);
    if (i === undefined) {
      this.#endRun(source, stream, ss);
      this.#issues.push({ kind: 'replayed', source, seq, stream, position, detail: `seq ${seq} was first stored in ${prior.stream}#${prior.position}: a re-sent record lands where its original is, so this copy is a replay` });
      return;
    }
    if (ss.run !== undefined && i === ss.run.idx + 1) ss.run.idx = i;
    else {
      this.#endRun(source, stream, ss);
      ss.run = { start: i, idx: i, position };
    }
    if (ss.run.idx === ss.order.length - 1) ss.run = undefined;
  }

  #endRun(source: string, stream: string, ss: StreamState): void {
    const run = ss.run;
    if (run === undefined) return;
    ss.run = undefined;
    const from = ss.order[run.start] as number;
    const to = ss.order[run.idx] as number;
    this.#issues.push({
      kind: 'replayed',
      source,
      seq: from,
      toSeq: to,
      stream,
      position: run.position,
      detail: `seq ${range(from, to)} stored again after seq ${ss.last}: a copy of older events (a re-send repeats through to the newest event of the stream, seq ${ss.last})`,
    });
  }

  /** The key that made a signature, when it is one of the given keys. */
  #key(keyId: string): KeyObject | undefined {
    return this.#keys.get(keyId);
  }

  #keyDetail(keyId: string): string {
    return `signed by key ${keyId}, which is not among the given keys (${[...this.#keys.keys()].join(', ')})`;
  }

  /** Checks links, gaps and checkpoints; returns the report. */
  finish(): VerifyReport {
    const sources: SourceReport[] = [];
    for (const [source, st] of this.#sources) {
      for (const [stream, ss] of st.streams) this.#endRun(source, stream, ss);
      const seqs = [...st.events.keys()].sort((a, b) => a - b);
      const first = seqs[0] ?? 0;
      const lastSeq = seqs.at(-1) ?? 0;
      const declared = this.#declaredGaps(source, st);
      const missingRanges: [number, number][] = [];
      if (first > 1 && !this.#o.allowHeadGap) missingRanges.push([1, first - 1]);
      for (let i = 0; i < seqs.length; i++) {
        const s = seqs[i] as number;
        const ev = st.events.get(s) as Seen;
        const next = seqs[i + 1];
        if (next !== undefined && next > s + 1) missingRanges.push([s + 1, next - 1]);
        const before = st.events.get(s - 1);
        if (s === 1 && ev.prev !== GENESIS_HASH && ev.prev !== '') this.#issues.push({ kind: 'broken-link', source, seq: s, stream: ev.stream, position: ev.position, detail: 'first event does not start a chain' });
        if (before !== undefined && ev.prev !== before.hash) this.#issues.push({ kind: 'broken-link', source, seq: s, stream: ev.stream, position: ev.position, detail: `chain.prev is not the hash of seq ${s - 1}` });
      }
      this.#reportMissing(source, missingRanges, declared);
      let valid = 0;
      let signedThrough = 0;
      for (const cp of st.checkpoints) {
        const b = cp.event.body as CheckpointBody;
        const where = { source, seq: cp.seq, stream: cp.stream, position: cp.position };
        const key = this.#key(b.keyId);
        if (key === undefined || !verifyCheckpoint(key, st.instance, b.seq, b.hash, b.signature)) {
          this.#issues.push({ kind: 'bad-signature', ...where, detail: key === undefined ? this.#keyDetail(b.keyId) : 'Ed25519 signature does not verify' });
          continue;
        }
        valid += 1;
        const target = st.events.get(b.seq);
        if (target !== undefined && target.hash !== b.hash) {
          this.#issues.push({ kind: 'altered', ...where, detail: `checkpoint signs hash ${b.hash.slice(0, 12)}… for seq ${b.seq}, but the stored event's hash differs` });
        } else if (b.seq > signedThrough) signedThrough = b.seq;
      }
      const head = this.#checkSignedHead(source, st, lastSeq, declared);
      if (head !== undefined && head > signedThrough) signedThrough = head;
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
        declaredGaps: declared,
        ...(head !== undefined ? { signedHead: head } : {}),
      });
    }
    for (const h of this.#o.signedHeads ?? []) {
      const source = sourceName(h.source);
      if (this.#sources.has(source)) continue;
      if (!this.#signedHeadValid(source, h)) continue;
      this.#issues.push({ kind: 'truncated', source, seq: h.seq, detail: `last signed head seq ${h.seq} not present: no event of this source was found` });
    }
    return { ok: this.#issues.length === 0, records: this.#records, signedHeads: this.#o.signedHeads?.length ?? 0, sources, issues: [...this.#issues] };
  }

  /** Valid gap declarations of a source (bad ones are reported and ignored). */
  #declaredGaps(source: string, st: SourceState): DeclaredGap[] {
    const out: DeclaredGap[] = [];
    for (const g of st.gaps) {
      const b = g.event.body as GapBody;
      const where = { source, seq: g.seq, stream: g.stream, position: g.position };
      const key = this.#key(b.keyId);
      if (key === undefined || !verifyGap(key, st.instance, b)) {
        this.#issues.push({ kind: 'bad-signature', ...where, detail: key === undefined ? this.#keyDetail(b.keyId) : 'gap declaration: Ed25519 signature does not verify' });
        continue;
      }
      if (!Number.isSafeInteger(b.fromSeq) || !Number.isSafeInteger(b.toSeq) || b.fromSeq < 1 || b.toSeq < b.fromSeq || b.toSeq >= g.seq) {
        this.#issues.push({ kind: 'altered', ...where, detail: `gap declaration names seq ${b.fromSeq}..${b.toSeq}, not a range before its own seq` });
        continue;
      }
      out.push({ fromSeq: b.fromSeq, toSeq: b.toSeq, events: b.events, refused: b.refused, reason: b.reason, ...(b.errno !== undefined ? { errno: b.errno } : {}), since: b.since, until: b.until, seq: g.seq });
    }
    return out.sort((a, b) => a.fromSeq - b.fromSeq);
  }

  /** Reports missing seqs a declaration does not cover, and declared ranges missing more events than they declare. */
  #reportMissing(source: string, ranges: readonly [number, number][], declared: readonly DeclaredGap[]): void {
    const missingIn = new Map<DeclaredGap, number>();
    for (const [a, b] of ranges) {
      let s = a;
      while (s <= b) {
        const g = declared.find((d) => d.fromSeq <= s && s <= d.toSeq);
        if (g !== undefined) {
          const end = Math.min(b, g.toSeq);
          missingIn.set(g, (missingIn.get(g) ?? 0) + end - s + 1);
          s = end + 1;
          continue;
        }
        const nextDeclared = declared.find((d) => d.fromSeq > s && d.fromSeq <= b);
        const end = nextDeclared === undefined ? b : nextDeclared.fromSeq - 1;
        // Only the range before the first stored event starts at seq 1.
        const head = s === 1;
        this.#issues.push({
          kind: 'missing',
          source,
          seq: s,
          toSeq: end,
          detail: head ? `seq ${range(s, end)} missing (use --allow-head-gap if retention removed them)` : `seq ${range(s, end)} missing`,
        });
        s = end + 1;
      }
    }
    for (const g of declared) {
      const n = missingIn.get(g) ?? 0;
      if (n > g.events) this.#issues.push({ kind: 'missing', source, seq: g.fromSeq, toSeq: g.toSeq, detail: `the gap declared at seq ${g.seq} counts ${g.events} lost events in seq ${range(g.fromSeq, g.toSeq)}, but ${n} are missing` });
    }
  }

  #signedHeadValid(source: string, h: SignedHead): boolean {
    const key = this.#key(h.keyId);
    if (key !== undefined && verifyCheckpoint(key, h.source.instance, h.seq, h.hash, h.signature)) return true;
    this.#issues.push({ kind: 'bad-signature', source, seq: h.seq, detail: key === undefined ? `signed head: ${this.#keyDetail(h.keyId)}` : 'signed head: Ed25519 signature does not verify' });
    return false;
  }

  /** Compares a source with its external signed head; returns the seq it vouches for when it checks out. */
  #checkSignedHead(source: string, st: SourceState, lastSeq: number, declared: readonly DeclaredGap[]): number | undefined {
    const heads = (this.#o.signedHeads ?? []).filter((h) => sourceName(h.source) === source);
    if (heads.length === 0) return undefined;
    const h = heads.reduce((a, b) => (b.seq > a.seq ? b : a));
    if (!this.#signedHeadValid(source, h)) return undefined;
    const inGap = (s: number): boolean => declared.some((d) => d.fromSeq <= s && s <= d.toSeq);
    const target = st.events.get(h.seq);
    if (target !== undefined && target.hash !== h.hash) {
      this.#issues.push({ kind: 'altered', source, seq: h.seq, detail: `the signed head signs hash ${h.hash.slice(0, 12)}… for seq ${h.seq}, but the stored event's hash differs` });
      return undefined;
    }
    if (h.seq > lastSeq && !inGap(h.seq)) {
      this.#issues.push({ kind: 'truncated', source, seq: h.seq, detail: `last signed head seq ${h.seq} not present: the stored events end at seq ${lastSeq}` });
      return undefined;
    }
    if (h.checkpointSeq > lastSeq && !inGap(h.checkpointSeq)) {
      this.#issues.push({ kind: 'truncated', source, seq: h.checkpointSeq, detail: `last signed head seq ${h.seq} is present, but its checkpoint (seq ${h.checkpointSeq}) is not: the stored events end at seq ${lastSeq}` });
    }
    return h.seq;
  }
}
