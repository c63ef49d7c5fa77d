/**
 * The typed-line guardrail of an interactive session: feeds stdin through the
 * {@link LineEditor}, asks the caller's judge about each line the shell would
 * run, and says which bytes may go to the container. A line that is denied
 * never gets its Enter: the guard sends the keys that clear the remote line
 * instead. Pure and synchronous (the judge is ExecPolicy evaluation), so a
 * test can drive a real shell with exactly what a session would forward.
 */
import type { Decision } from '../../core/events/model.ts';
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

/** Decides one typed line (ExecPolicy `on: line` rules). */
export type LineJudge = (line: string, opaque: boolean) => Decision;

/** Judges typed lines of one session. */
export class TypedLineGuard {
  readonly #editor: LineEditor;
  readonly #judge: LineJudge;

  constructor(judge: LineJudge, opts: { maxLineBytes?: number } = {}) {
    this.#judge = judge;
    this.#editor = new LineEditor(opts);
  }

  /**
   * Feeds stdin bytes; returns what to forward and one judgement per key that
   * could run a line (the denial if any reading of the line was denied).
   */
  feed(data: Buffer): { chunks: ForwardChunk[]; judged: LineJudgement[] } {
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
      const all = ev.lines.map((l) => ({ line: l.line, opaque: l.opaque, decision: this.#judge(l.line, l.opaque) }));
      const denied = all.find((j) => !j.decision.allowed);
      judged.push(denied ?? all.find((j) => j.decision.action === 'audit') ?? (all[0] as LineJudgement));
      if (denied) {
        const clear = this.#editor.blocked();
        chunks.push({ data: clear, executes: clear.includes(0x03) });
      } else {
        chunks.push({ data: ev.data, executes: true });
      }
    }
    return { chunks, judged };
  }
}
