/**
 * Tracks a period in which a sink could not make events durable (a write or
 * fsync failed, e.g. ENOSPC): which sequence numbers were sealed but lost,
 * and how many emits were refused meanwhile. While it is active the sink is
 * unready and refuses new events without sealing them, so the gap stays as
 * small as the writes that were already under way. Once a write works again
 * the sink seals the declaration as a signed `chain.gap` (sealer.prepareGap),
 * and `verify` reports a declared gap instead of a deletion.
 */
import type { GapBody } from '../events/model.ts';

/** How often a sink in an outage tries to write its gap declaration (ms). */
export const DEFAULT_WRITE_RETRY_MS = 1000;

type Declaration = Omit<GapBody, 'keyId' | 'signature'>;

interface State {
  fromSeq: number;
  toSeq: number;
  lost: number;
  refused: number;
  reason: string;
  errno: string | undefined;
  since: string;
}

/** The lost seqs of one outage. */
export class WriteOutage {
  #s: State | undefined;

  /** True from the first failed write until the gap is declared. */
  get active(): boolean {
    return this.#s !== undefined;
  }

  /** Records that the event with `seq` could not be written. True when this starts the outage. */
  lost(seq: number, err: unknown, now: Date): boolean {
    if (this.#s !== undefined) {
      this.#s.fromSeq = Math.min(this.#s.fromSeq, seq);
      this.#s.toSeq = Math.max(this.#s.toSeq, seq);
      this.#s.lost += 1;
      return false;
    }
    const e = err as { code?: unknown; cause?: { code?: unknown } };
    const reason = typeof e?.code === 'string' ? e.code : 'SINK_ERR_IO';
    const errno = typeof e?.cause?.code === 'string' ? e.cause.code : undefined;
    this.#s = { fromSeq: seq, toSeq: seq, lost: 1, refused: 0, reason, errno, since: now.toISOString() };
    return true;
  }

  /** Counts an emit refused while the outage lasts (it consumed no seq). */
  refused(): void {
    if (this.#s !== undefined) this.#s.refused += 1;
  }

  /** The body of the gap declaration (without key id and signature), or undefined when there is no outage. */
  declaration(until: Date): Declaration | undefined {
    const s = this.#s;
    if (s === undefined) return undefined;
    return {
      fromSeq: s.fromSeq,
      toSeq: s.toSeq,
      events: s.lost,
      refused: s.refused,
      reason: s.reason,
      ...(s.errno !== undefined ? { errno: s.errno } : {}),
      since: s.since,
      until: until.toISOString(),
    };
  }

  /** Ends the outage (its declaration is durable). */
  end(): void {
    this.#s = undefined;
  }
}
