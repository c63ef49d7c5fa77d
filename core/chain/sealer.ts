/**
 * Turns drafts into final events: assigns id (UUIDv7), time, source and the
 * chain link, in the order `seal()` is called, and produces the signed
 * `chain.checkpoint` and `chain.gap` events. Pure in-memory state; sinks decide durability.
 */
import type { CheckpointBody, EventDraft, EventSource, EventType, GapBody, KubetrailEvent } from '../events/model.ts';
import { EVENT_TYPES } from '../events/builders.ts';
import { uuidv7 } from '../events/ids.ts';
import { SinkError } from '../sinks/errors.ts';
import { CanonicalizationError } from './canonical.ts';
import { seal, type SealedEvent } from './hash.ts';
import type { ChainHead } from './head-store.ts';
import { signCheckpoint, signGap, type SigningKey } from './signing.ts';

/** Options of {@link ChainSealer}. */
export interface SealerOptions {
  source: EventSource;
  /** Head to continue from ({seq: 0, hash: zeros} for a new chain). */
  head: ChainHead;
  /** Signs checkpoints; without one, checkpoints are not produced (memory sink). */
  signer?: SigningKey | undefined;
  /** A checkpoint is due after this many events. */
  checkpointEvery?: number;
  /** Clock, injectable for tests. */
  now?: () => Date;
}

/** Assigns ids, time, source and chain links; creates checkpoints. */
export class ChainSealer {
  readonly source: EventSource;
  #seq: number;
  #hash: string;
  #sinceCheckpoint = 0;
  readonly #signer: SigningKey | undefined;
  readonly #every: number;
  readonly #now: () => Date;

  constructor(opts: SealerOptions) {
    // Members inserted in sorted order: canonical JSON then serializes the
    // source (on every event) without copying it.
    const { cluster, component, instance } = opts.source;
    this.source = Object.freeze({ cluster, component, instance });
    this.#seq = opts.head.seq;
    this.#hash = opts.head.hash;
    this.#signer = opts.signer;
    this.#every = opts.checkpointEvery ?? 1000;
    this.#now = opts.now ?? (() => new Date());
  }

  /** Link of the last sealed event. */
  get head(): ChainHead {
    return { seq: this.#seq, hash: this.#hash };
  }

  /** True when `checkpointEvery` events were sealed since the last checkpoint. */
  get checkpointDue(): boolean {
    return this.#signer !== undefined && this.#sinceCheckpoint >= this.#every;
  }

  /** True when events were sealed since the last checkpoint. */
  get uncheckpointed(): boolean {
    return this.#sinceCheckpoint > 0;
  }

  /**
   * Validates a draft and seals it as the next event of the chain. Throws
   * SinkError SINK_ERR_INVALID_EVENT (and consumes no sequence number) when
   * the draft is not a valid event.
   */
  seal<T extends EventType>(draft: EventDraft<T>): SealedEvent & { event: KubetrailEvent<T> } {
    const p = this.prepare(draft);
    p.commit();
    return p.sealed;
  }

  /**
   * Seals the draft as the next event WITHOUT advancing the chain; `commit()`
   * advances it. Lets a sink refuse an event (spool full) without leaving a
   * gap in the sequence. Nothing else may be sealed between the two calls.
   */
  prepare<T extends EventType>(draft: EventDraft<T>): { sealed: SealedEvent & { event: KubetrailEvent<T> }; commit: () => void } {
    const sealed = this.#sealNext(this.#build(draft)) as SealedEvent & { event: KubetrailEvent<T> };
    const seq = this.#seq;
    return {
      sealed,
      commit: () => {
        if (this.#seq !== seq) throw new Error('ChainSealer: another event was sealed between prepare() and commit()');
        this.#advance(sealed);
      },
    };
  }

  /** Seals a signed checkpoint over the current head, or returns undefined when nothing happened since the last one. */
  checkpoint(): SealedEvent | undefined {
    if (this.#signer === undefined || this.#sinceCheckpoint === 0) return undefined;
    const body: CheckpointBody = {
      hash: this.#hash,
      keyId: this.#signer.keyId,
      seq: this.#seq,
      signature: signCheckpoint(this.#signer, this.source.instance, this.#seq, this.#hash),
    };
    const cp = { apiVersion: 'kubetrail.io/v1', body, chain: undefined, id: uuidv7(), source: this.source, time: this.#now().toISOString(), type: 'chain.checkpoint' } as const;
    const sealed = this.#append(cp as Omit<KubetrailEvent, 'chain'>);
    this.#sinceCheckpoint = 0;
    return sealed;
  }

  /**
   * Seals a signed `chain.gap` declaration as the next event WITHOUT
   * advancing the chain (as {@link prepare}): the sink commits it only once
   * it is durable, so a marker that cannot be written either does not widen
   * the gap it declares. Undefined without a signer (nothing to declare with).
   */
  prepareGap(gap: Omit<GapBody, 'keyId' | 'signature'>): { sealed: SealedEvent; commit: () => void } | undefined {
    if (this.#signer === undefined) return undefined;
    const unsigned = { ...gap, keyId: this.#signer.keyId };
    const body: GapBody = { ...unsigned, signature: signGap(this.#signer, this.source.instance, unsigned) };
    const ev = { apiVersion: 'kubetrail.io/v1', body, chain: undefined, id: uuidv7(), source: this.source, time: this.#now().toISOString(), type: 'chain.gap' } as const;
    const sealed = this.#sealNext(ev as Omit<KubetrailEvent, 'chain'>);
    const seq = this.#seq;
    return {
      sealed,
      commit: () => {
        if (this.#seq !== seq) throw new Error('ChainSealer: another event was sealed between prepareGap() and commit()');
        this.#advance(sealed);
      },
    };
  }

  #append(event: Omit<KubetrailEvent, 'chain'>): SealedEvent {
    const sealed = this.#sealNext(event);
    this.#advance(sealed);
    return sealed;
  }

  #sealNext(event: Omit<KubetrailEvent, 'chain'>): SealedEvent {
    try {
      return seal(event, this.#seq + 1, this.#hash);
    } catch (err) {
      if (err instanceof CanonicalizationError) {
        throw new SinkError('SINK_ERR_INVALID_EVENT', `event ${event.type}: ${err.message}`, { cause: err });
      }
      throw err;
    }
  }

  #advance(sealed: SealedEvent): void {
    this.#seq += 1;
    this.#hash = (sealed.event.chain as { hash: string }).hash;
    this.#sinceCheckpoint += 1;
  }

  #build(draft: EventDraft): Omit<KubetrailEvent, 'chain'> {
    if (draft === null || typeof draft !== 'object') throw new SinkError('SINK_ERR_INVALID_EVENT', 'event draft must be an object');
    if (!EVENT_TYPES.includes(draft.type) || draft.type === 'chain.checkpoint' || draft.type === 'chain.gap') {
      throw new SinkError('SINK_ERR_INVALID_EVENT', `unknown or reserved event type ${JSON.stringify(String(draft.type))}`);
    }
    if (draft.body === null || typeof draft.body !== 'object' || Array.isArray(draft.body)) {
      throw new SinkError('SINK_ERR_INVALID_EVENT', `event ${draft.type}: body must be an object`);
    }
    // Top-level members inserted in sorted order, with `chain` reserved in its
    // place (seal() fills it): canonical JSON then takes the event object as
    // it is instead of building a sorted copy of it.
    const event: Record<string, unknown> = {};
    if (draft.actor !== undefined) event['actor'] = draft.actor;
    event['apiVersion'] = 'kubetrail.io/v1';
    event['body'] = draft.body;
    event['chain'] = undefined;
    if (draft.correlation !== undefined) event['correlation'] = draft.correlation;
    event['id'] = draft.id ?? uuidv7();
    event['source'] = this.source;
    if (draft.target !== undefined) event['target'] = draft.target;
    event['time'] = draft.time ?? this.#now().toISOString();
    event['type'] = draft.type;
    return event as Omit<KubetrailEvent, 'chain'>;
  }
}
