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

/** ctrl-u: clears the line in readline, busybox and the kernel's canonical mode. */
const CLEAR_LINE = Buffer.from([0x15]);

/** Judges typed lines of one session. */
export class TypedLineGuard {
  readonly #editor: LineEditor;
  readonly #judge: LineJudge;

  constructor(judge: LineJudge, opts: { maxLineBytes?: number } = {}) {
    this.#judge = judge;
    this.#editor = new LineEditor(opts);
  }

  /** Feeds stdin bytes; returns what to forward and every line judged. */
  feed(data: Buffer): { chunks: ForwardChunk[]; judged: LineJudgement[] } {
    const chunks: ForwardChunk[] = [];
    const judged: LineJudgement[] = [];
    for (const ev of this.#editor.feed(data)) {
      if (ev.type === 'bytes') {
        chunks.push({ data: ev.data, executes: false });
        continue;
      }
      const decision = this.#judge(ev.line, ev.opaque);
      judged.push({ line: ev.line, opaque: ev.opaque, decision });
      chunks.push(decision.allowed ? { data: ev.data, executes: true } : { data: CLEAR_LINE, executes: false });
    }
    return { chunks, judged };
  }
}
