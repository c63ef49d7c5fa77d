/**
 * Output masking of one exec/attach session: a StreamMasker per output
 * channel for what the client receives, for tty sessions a twin per channel
 * for what is recorded (the echo of a keystroke is sent at once, not held),
 * the echo tracking that tells the two apart, the stdin masker (recording
 * only), and the hold-back timer that releases what the maskers keep.
 */
import type { MaskPattern } from '../../core/masking/patterns.ts';
import { StreamMasker } from '../../core/masking/stream.ts';
import { CHANNEL } from './protocol.ts';

/** Where masked bytes go. */
export interface MaskedOutputSinks {
  /** Records bytes of a stream (already masked). */
  record(stream: 'stdin' | 'stdout' | 'stderr', bytes: Buffer): void;
  /** Sends channel bytes to the client in a new message. */
  send(channel: number, payload: Buffer): void;
  /** Forwards the upstream message itself, when masking left it unchanged. */
  forward(raw: Buffer, binary: boolean): void;
}

/** Options: patterns by output channel, stdin patterns, tty, and the hold-back bound. */
export interface OutputMaskingOptions {
  readonly patterns: ReadonlyMap<number, readonly MaskPattern[]>;
  readonly stdin: readonly MaskPattern[] | undefined;
  readonly tty: boolean;
  /** proxy.exec.maskHoldMs: how long a possible secret start is held back. */
  readonly holdMs: number;
}

/** Typed bytes remembered to recognise their echo (tty), bounded. */
const MAX_TYPED = 4096;
/** An output message longer than this is not taken for an echo. */
const MAX_ECHO = 64;

/** Masks, records and sends a session's output. */
export class OutputMasking {
  readonly #opts: OutputMaskingOptions;
  readonly #sinks: MaskedOutputSinks;
  /** Whether typed bytes are tracked to tell their echo apart (tty with output masking). */
  readonly #trackEcho: boolean;
  /** Maskers of what the client receives, by channel; built on a channel's first output. */
  #maskers = new Map<number, StreamMasker>();
  /**
   * tty sessions only: maskers of what is recorded. The echo of a keystroke
   * goes to the client without hold-back (it is the user's own input, and a
   * held 'e' — a possible start of "eyJ" — would delay typing by maskHoldMs),
   * but the recording still masks it, so it needs its own masker state.
   */
  #recMaskers = new Map<number, StreamMasker>();
  /** Typed bytes not yet seen echoed (tty), bounded. */
  #typed = Buffer.alloc(0);
  #stdinMasker: StreamMasker | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(opts: OutputMaskingOptions, sinks: MaskedOutputSinks) {
    this.#opts = opts;
    this.#sinks = sinks;
    this.#trackEcho = opts.tty && opts.patterns.size > 0;
  }

  /** Notes typed stdin bytes, so that their echo can be recognised. */
  noteTyped(bytes: Buffer): void {
    if (!this.#trackEcho) return;
    const all = Buffer.concat([this.#typed, bytes]);
    this.#typed = all.length > MAX_TYPED ? all.subarray(all.length - MAX_TYPED) : all;
  }

  /** Records stdin; it is masked in the recording only (the container must receive what was typed). */
  recordStdin(bytes: Buffer): void {
    if (this.#opts.stdin === undefined) {
      this.#sinks.record('stdin', bytes);
      return;
    }
    this.#stdinMasker ??= new StreamMasker(this.#opts.stdin);
    this.#sinks.record('stdin', this.#stdinMasker.push(bytes));
    this.#armTimer();
  }

  /** Masks, records and sends output; `fromUpstream` false for kubetrail's own messages. */
  deliver(ch: number, payload: Buffer, fromUpstream: boolean, raw?: Buffer, rawBinary = true): void {
    if (fromUpstream && !this.#opts.tty) {
      // Without a tty, stdout and stderr are separate streams a terminal shows together:
      // a secret started on one and finished on the other is masked in the first.
      const other = this.#maskers.get(ch === CHANNEL.STDOUT ? CHANNEL.STDERR : CHANNEL.STDOUT);
      const covered = other?.spliceInto(payload) ?? 0;
      if (covered > 0) {
        this.#flushOne(ch === CHANNEL.STDOUT ? CHANNEL.STDERR : CHANNEL.STDOUT);
        payload = payload.subarray(covered);
        raw = undefined;
        if (payload.length === 0) return;
      }
    }
    const masker = this.#maskerFor(ch);
    if (!masker) {
      this.#recordOut(ch, payload);
      // Unchanged bytes: forward the upstream message itself rather than re-framing a copy.
      if (raw) this.#sinks.forward(raw, rawBinary);
      else this.#sinks.send(ch, payload);
      return;
    }
    const rec = this.#recMaskers.get(ch);
    if (rec && fromUpstream && masker.pendingBytes === 0 && this.#takeEcho(payload)) {
      this.#sinks.send(ch, payload);
      this.#recordOut(ch, rec.push(payload));
      this.#armTimer();
      return;
    }
    // Our own message goes after whatever is held back, in order.
    const out = fromUpstream ? masker.push(payload) : Buffer.concat([masker.flush(), payload]);
    if (rec) this.#recordOut(ch, fromUpstream ? rec.push(payload) : Buffer.concat([rec.flush(), payload]));
    else this.#recordOut(ch, out);
    if (out === payload && raw) this.#sinks.forward(raw, rawBinary);
    else if (out.length > 0) this.#sinks.send(ch, out);
    this.#armTimer();
  }

  /** Releases everything held back (hold time passed, status, close). */
  flush(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    for (const ch of this.#maskers.keys()) this.#flushOne(ch);
    if (this.#stdinMasker) this.#sinks.record('stdin', this.#stdinMasker.flush());
  }

  #flushOne(ch: number): void {
    const m = this.#maskers.get(ch);
    if (m === undefined) return;
    const rest = m.flush();
    const rec = this.#recMaskers.get(ch);
    if (rec) this.#recordOut(ch, rec.flush());
    else this.#recordOut(ch, rest);
    if (rest.length > 0) this.#sinks.send(ch, rest);
  }

  /** Stops the hold-back timer (the session is over). */
  stop(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Secrets masked so far, by pattern name. */
  counts(): Record<string, number> {
    const masked: Record<string, number> = {};
    // Recording maskers see everything a tty session printed (echo included), so they count for it.
    const counted = [...this.#maskers.entries()].map(([ch, m]) => this.#recMaskers.get(ch) ?? m);
    for (const m of [...counted, ...(this.#stdinMasker ? [this.#stdinMasker] : [])]) for (const [k, v] of m.counts) masked[k] = (masked[k] ?? 0) + v;
    return masked;
  }

  /** Whether `payload` is the echo of typed bytes; consumes them if so. */
  #takeEcho(payload: Buffer): boolean {
    if (payload.length === 0 || payload.length > MAX_ECHO) return false;
    const i = this.#typed.indexOf(payload);
    if (i === -1) return false;
    this.#typed = this.#typed.subarray(i + payload.length);
    return true;
  }

  #recordOut(ch: number, bytes: Buffer): void {
    if (bytes.length > 0) this.#sinks.record(ch === CHANNEL.STDOUT ? 'stdout' : 'stderr', bytes);
  }

  /** The channel's masker (and, for tty, its recording twin), built on first use; undefined when nothing is masked there. */
  #maskerFor(ch: number): StreamMasker | undefined {
    const m = this.#maskers.get(ch);
    if (m !== undefined) return m;
    const pats = this.#opts.patterns.get(ch);
    if (pats === undefined) return undefined;
    const created = new StreamMasker(pats);
    this.#maskers.set(ch, created);
    if (this.#opts.tty) this.#recMaskers.set(ch, new StreamMasker(pats));
    return created;
  }

  #armTimer(): void {
    const held = [...this.#maskers.values(), ...this.#recMaskers.values()].some((m) => m.pendingBytes > 0) || (this.#stdinMasker?.pendingBytes ?? 0) > 0;
    if (!held || this.#timer !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.flush();
    }, this.#opts.holdMs);
  }
}
