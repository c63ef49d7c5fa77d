/**
 * The latest signed head of a chain, kept OUTSIDE the log (`signing.headDir`),
 * so `kubetrail verify --signed-heads` can tell a log whose newest events were
 * cut off (or whose last segment was removed) from a complete one: without
 * it, a cut tail ends at an older checkpoint and verifies. The idea is
 * CloudTrail's digest files: a signed statement of how far the log went,
 * stored where whoever can rewrite the log cannot.
 *
 * One small JSON file per source, replaced atomically (write, fsync, rename,
 * fsync dir) after every checkpoint is durable and at clean shutdown. It
 * carries the checkpoint's signed (seq, hash): the same Ed25519 signature,
 * so verify needs no other key. It is only as good as the place it is kept:
 * a directory the agent can write gives no protection (docs/security.md).
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, statSync, writeSync } from 'node:fs';
import path from 'node:path';
import type { CheckpointBody, EventSource, KubetrailEvent } from '../events/model.ts';
import type { ChainHead } from './head-store.ts';

/** A checkpoint's signed link, with the source it belongs to. */
export interface SignedHead {
  apiVersion: 'kubetrail.io/v1';
  kind: 'SignedHead';
  source: EventSource;
  /** Link the signature covers (the last event before the checkpoint). */
  seq: number;
  hash: string;
  keyId: string;
  signature: string;
  /** Seq and hash of the checkpoint event itself (where a restarted chain continues). */
  checkpointSeq: number;
  checkpointHash: string;
  /** Time of the checkpoint event. */
  time: string;
}

/** File name of a source's signed head. */
function signedHeadFile(dir: string, s: EventSource): string {
  const safe = (x: string): string => x.replace(/[^A-Za-z0-9.-]/g, '_');
  return path.join(dir, `${safe(s.cluster)}_${safe(s.component)}_${safe(s.instance)}.head.json`);
}

/** Writes the signed head of one source into `signing.headDir`. */
export class SignedHeadWriter {
  readonly file: string;
  readonly #dir: string;
  #last: SignedHead | undefined;

  /** Creates `dir`; reads the head already there (a restart continues from it). Throws the fs error. */
  constructor(dir: string, source: EventSource) {
    mkdirSync(dir, { recursive: true });
    this.#dir = dir;
    this.file = signedHeadFile(dir, source);
    this.#last = readSignedHeadFile(this.file);
  }

  /** The head stored when opened or last written. */
  get head(): SignedHead | undefined {
    return this.#last;
  }

  /** The link a restarted chain must continue after (never behind the signed head). */
  get chainHead(): ChainHead | undefined {
    return this.#last === undefined ? undefined : { seq: this.#last.checkpointSeq, hash: this.#last.checkpointHash };
  }

  /** Records the signed head of a durable checkpoint event; older ones are ignored. Throws the fs error. */
  write(cp: KubetrailEvent): void {
    if (cp.type !== 'chain.checkpoint' || cp.chain === undefined) throw new TypeError('not a sealed checkpoint');
    const b = cp.body as CheckpointBody;
    if (this.#last !== undefined && b.seq <= this.#last.seq) return;
    const head: SignedHead = {
      apiVersion: 'kubetrail.io/v1',
      kind: 'SignedHead',
      source: cp.source,
      seq: b.seq,
      hash: b.hash,
      keyId: b.keyId,
      signature: b.signature,
      checkpointSeq: cp.chain.seq,
      checkpointHash: cp.chain.hash,
      time: cp.time,
    };
    const tmp = `${this.file}.tmp`;
    const fd = openSync(tmp, 'w', 0o644);
    try {
      writeSync(fd, JSON.stringify(head) + '\n');
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.file);
    const dfd = openSync(this.#dir, 'r');
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
    this.#last = head;
  }
}

function isSignedHead(v: unknown): v is SignedHead {
  const h = v as SignedHead;
  return (
    h !== null &&
    typeof h === 'object' &&
    h.kind === 'SignedHead' &&
    typeof h.source === 'object' &&
    h.source !== null &&
    typeof h.source.instance === 'string' &&
    typeof h.source.component === 'string' &&
    typeof h.source.cluster === 'string' &&
    Number.isSafeInteger(h.seq) &&
    h.seq > 0 &&
    Number.isSafeInteger(h.checkpointSeq) &&
    typeof h.hash === 'string' &&
    typeof h.checkpointHash === 'string' &&
    typeof h.keyId === 'string' &&
    typeof h.signature === 'string'
  );
}

function readSignedHeadFile(file: string): SignedHead | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  try {
    const v: unknown = JSON.parse(text);
    return isSignedHead(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Reads signed heads for verify: one file, or every `*.head.json` in a
 * directory. Throws TypeError naming the file that is not a signed head
 * (verify must not silently ignore the evidence it was given).
 */
export function readSignedHeads(p: string): SignedHead[] {
  let files: string[];
  try {
    files = statSync(p).isDirectory()
      ? readdirSync(p)
          .filter((n) => n.endsWith('.head.json'))
          .sort()
          .map((n) => path.join(p, n))
      : [p];
  } catch (err) {
    throw new TypeError(`${p}: cannot read (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
  }
  return files.map((f) => {
    const h = readSignedHeadFile(f);
    if (h === undefined) throw new TypeError(`${f}: not a kubetrail signed head`);
    return h;
  });
}
