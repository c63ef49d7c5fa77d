/**
 * The stdin of a session with typed-line rules: every client stdin payload
 * goes through the {@link TypedLineGuard}, whose forwardable bytes go to the
 * container; a denied line is reported to the user and recorded; a line whose
 * rule requires approval is held (issue 17): its Enter is withheld — the
 * remote shell keeps the typed text — while the ApprovalRequest (kind `line`)
 * is asked for and waited on. Approved, the Enter goes and the shell runs the
 * line the approver saw; otherwise the line is cleared like a blocked one.
 * What is typed during the wait is kept, in order, and fed afterwards;
 * ctrl-c gives the wait up.
 */
import type { Decision } from '../../core/events/model.ts';
import type { SessionApprovals } from './session-approvals.ts';
import type { HeldLine, LineJudgement, TypedLineGuard } from './typed-line-guard.ts';

/** Keys typed ahead while a line waits for approval; more gives the wait up (fail closed: the line does not run). */
const MAX_TYPED_AHEAD_BYTES = 64 * 1024;

/** How the relay reaches the rest of the session. */
export interface TypedLineSide {
  /** Stdin bytes for the container (nothing once the upstream is gone). */
  toContainer(keys: Buffer): void;
  /** Text for the user's terminal (output masking and recording apply). */
  toUser(text: string): void;
  record(decision: Decision, data: { line: string; opaque?: boolean }): void;
  ended(): boolean;
  /** Calls `f` when the client goes; returns the unsubscribe. */
  onClientClose(f: () => void): () => void;
}

/** Feeds one session's stdin through its typed-line guard, holding lines that need approval. */
export class TypedLineRelay {
  readonly #guard: TypedLineGuard;
  readonly #approvals: SessionApprovals;
  readonly #side: TypedLineSide;
  #held: { pending: Buffer[]; bytes: number; cancel: AbortController } | undefined;
  #checked = 0;
  #blocked = 0;

  constructor(guard: TypedLineGuard, approvals: SessionApprovals, side: TypedLineSide) {
    this.#guard = guard;
    this.#approvals = approvals;
    this.#side = side;
  }

  /** Lines judged (session.end `linesChecked`). */
  get checked(): number {
    return this.#checked;
  }

  /** Lines not run: denied, or not approved (session.end `linesBlocked`). */
  get blocked(): number {
    return this.#blocked;
  }

  /** One client stdin payload. */
  feed(payload: Buffer): void {
    if (this.#held) {
      this.#typedAhead(payload);
      return;
    }
    const { chunks, judged, held } = this.#guard.feed(payload);
    const forward = chunks.length === 1 ? (chunks[0] as { data: Buffer }).data : Buffer.concat(chunks.map((c) => c.data));
    if (forward.length > 0) this.#side.toContainer(forward);
    for (const j of judged) this.#judged(j);
    if (held) void this.#hold(held);
  }

  #typedAhead(payload: Buffer): void {
    const h = this.#held;
    if (h === undefined) return;
    h.pending.push(payload);
    h.bytes += payload.length;
    if (payload.includes(0x03) || h.bytes > MAX_TYPED_AHEAD_BYTES) h.cancel.abort();
  }

  async #hold(held: HeldLine): Promise<void> {
    const h = { pending: held.rest.length > 0 ? [held.rest] : [], bytes: held.rest.length, cancel: new AbortController() };
    this.#held = h;
    // Its record is the approval's events (approval.requested / decided / used), correlated with the session.
    this.#checked++;
    const off = this.#side.onClientClose(() => h.cancel.abort());
    let refusal: string | undefined;
    try {
      refusal = await this.#decide(held, h.cancel.signal);
    } finally {
      off();
    }
    if (this.#side.ended()) return;
    this.#side.toContainer(this.#guard.release(refusal === undefined));
    if (refusal !== undefined) {
      this.#blocked++;
      this.#side.toUser(`\r\nkubetrail: line blocked: ${refusal.replace(/^kubetrail: /, '')}\r\n`);
    }
    this.#held = undefined;
    for (const p of h.pending) this.feed(p);
  }

  /** Undefined when the line may run (its approval is used), else what the user is told. */
  async #decide(held: HeldLine, signal: AbortSignal): Promise<string | undefined> {
    const first = await this.#approvals.ask(held.approval, held.line);
    if (first.allowed) return undefined;
    if (!('wait' in first)) return first.message;
    this.#side.toUser(this.#approvals.waitingNote(first.wait, true));
    const result = await this.#approvals.wait(first.wait, signal, 'line');
    if (result.phase !== 'Approved') return result.message;
    // Asking again uses the approval (approval.used, correlated with this session).
    const again = await this.#approvals.ask(held.approval, held.line);
    if (again.allowed) return undefined;
    return 'message' in again ? again.message : `ApprovalRequest ${again.wait.namespace}/${again.wait.name} is not approved; the line was not run`;
  }

  #judged({ line, opaque, decision }: LineJudgement): void {
    this.#checked++;
    if (decision.allowed) {
      if (decision.action === 'audit') this.#side.record(decision, { line });
      return;
    }
    this.#blocked++;
    this.#side.record(decision, { line, opaque });
    // Not executed (the guard withheld its Enter and cleared the remote line): tell the user why on their terminal.
    this.#side.toUser(`\r\nkubetrail: line blocked: ${decision.message ?? 'denied by policy'} (ExecPolicy ${decision.policy}/${decision.rule})\r\n`);
  }
}
