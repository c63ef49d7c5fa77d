/**
 * The typed-line guardrail of an interactive session: feeds stdin through the
 * {@link LineEditor}, asks the caller's judge about each line the shell would
 * run, and says which bytes may go to the container. A line that is denied
 * never gets its Enter: the guard sends the keys that clear the remote line
 * instead. A line whose rule requires approval is held: the guard stops at
 * its Enter and hands back the bytes typed after it; the session asks for the
 * approval and then {@link TypedLineGuard.release}s the Enter (approved) or
 * the clearing keys (not), and feeds the rest. The remote shell holds the
 * typed text all along, so what runs once approved is the line the approver
 * saw, never a retyped copy. Pure and synchronous (the judge is ExecPolicy
 * evaluation), so a test can drive a real shell with exactly what a session
 * would forward.
 */
import type { Decision } from '../../core/events/model.ts';
import type { ApprovalRequirement } from '../../core/approvals/types.ts';
import { LineEditor } from './line-editor.ts';

/** What the judge decided about one line. */
export interface LineJudgement {
  readonly line: string;
  readonly opaque: boolean;
  readonly decision: Decision;
}

/** Bytes to forward, in order; `executes` when the shell may run a line or reset at their end. */
export interface ForwardChunk {
  readonly data: Buffer;
  readonly executes: boolean;
}

/** The judge's answer for one reading of a line: `approval` with a requireApproval decision. */
export interface LineVerdict {
  readonly decision: Decision;
  readonly approval?: ApprovalRequirement;
}

/** Decides one typed line (ExecPolicy `on: line` rules). */
export type LineJudge = (line: string, opaque: boolean) => LineVerdict;

/** A line waiting for approval: its Enter is withheld, `rest` are the bytes typed after it, not yet fed. */
export interface HeldLine {
  readonly line: string;
  readonly decision: Decision;
  readonly approval: ApprovalRequirement;
  readonly rest: Buffer;
}

/** Judges typed lines of one session. */
export class TypedLineGuard {
  readonly #editor: LineEditor;
  readonly #judge: LineJudge;
  #heldEnter: Buffer | undefined;

  constructor(judge: LineJudge, opts: { maxLineBytes?: number } = {}) {
    this.#judge = judge;
    this.#editor = new LineEditor(opts);
  }

  /**
   * Feeds stdin bytes; returns what to forward and one judgement per key that
   * could run a line (the denial if any reading of the line was denied). When
   * a line is `held`, feeding stopped at its Enter: call {@link release}
   * before feeding anything else (`held.rest` first).
   */
  feed(data: Buffer): { chunks: ForwardChunk[]; judged: LineJudgement[]; held?: HeldLine } {
    if (this.#heldEnter !== undefined) throw new Error('a held line must be released before more input is fed');
    const chunks: ForwardChunk[] = [];
    const judged: LineJudgement[] = [];
    for (const ev of this.#editor.feed(data)) {
      if (ev.type === 'bytes') {
        chunks.push({ data: ev.data, executes: false });
        continue;
      }
      if (ev.lines.length === 0) {
        // Only continues a line (a trailing backslash): nothing runs yet.
        chunks.push({ data: ev.data, executes: true });
        continue;
      }
      const all = ev.lines.map((l) => {
        const v = this.#judge(l.line, l.opaque);
        return { line: l.line, opaque: l.opaque, decision: v.decision, approval: v.approval };
      });
      const hold = all.find((j) => j.decision.action === 'requireApproval' && j.approval !== undefined);
      const denied = all.find((j) => !j.decision.allowed && j.decision.action !== 'requireApproval') ?? (hold && (all.length > 1 || hold.opaque) ? unapprovable(hold) : undefined);
      if (!denied && hold?.approval) {
        // The editor yields `data` in pieces of the buffer it was given: the rest starts after this Enter.
        this.#heldEnter = Buffer.from(ev.data);
        const rest = data.subarray(ev.data.byteOffset - data.byteOffset + ev.data.length);
        return { chunks, judged, held: { line: hold.line, decision: hold.decision, approval: hold.approval, rest } };
      }
      const first = denied ?? all.find((j) => j.decision.action === 'audit') ?? (all[0] as LineJudgement);
      judged.push({ line: first.line, opaque: first.opaque, decision: first.decision });
      if (denied) {
        const clear = this.#editor.blocked();
        chunks.push({ data: clear, executes: clear.includes(0x03) });
      } else {
        chunks.push({ data: ev.data, executes: true });
      }
    }
    return { chunks, judged };
  }

  /** Ends a hold: the withheld Enter when approved, else the keys that clear the line in the remote shell. */
  release(approved: boolean): Buffer {
    const enter = this.#heldEnter;
    if (enter === undefined) throw new Error('no line is held');
    this.#heldEnter = undefined;
    return approved ? enter : this.#editor.blocked();
  }
}

/**
 * A line that needs approval but that kubetrail cannot show an approver
 * exactly (edited with keys it cannot follow, or read two ways by readline and
 * the terminal): what would run is not what would be approved, so it is denied.
 */
function unapprovable(j: { line: string; opaque: boolean; decision: Decision }): LineJudgement {
  const why = j.opaque ? 'was edited with keys kubetrail cannot follow' : 'reads differently to the shell and to the terminal';
  return { line: j.line, opaque: j.opaque, decision: { ...j.decision, action: 'deny', message: `${j.decision.message ?? 'this line needs approval'}; it ${why}, so it cannot be approved as seen: retype it in full` } };
}
