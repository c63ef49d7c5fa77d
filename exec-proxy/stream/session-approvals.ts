/**
 * Approvals inside one exec/attach session (issue 17): the ApprovalRequest a
 * session's ExecPolicy `requireApproval` rule asks for (kind `exec`: pod,
 * container, command), or that a typed line's rule asks for (kind `line`:
 * the same, plus the line), and the bounded wait for its decision while the
 * user is told what they wait for. The gate (core/approvals/gate.ts) is the
 * one owner of the records; this module only builds the query and waits, so
 * the session state machine (session.ts) decides what a hold means for its
 * bytes: the upstream not opened yet, or a line's Enter withheld.
 */
import { approvalBodySha256 } from '../../core/approvals/hash.ts';
import type { GateAnswer } from '../../core/approvals/gate.ts';
import type { ApprovalPhase, ApprovalRequirement } from '../../core/approvals/types.ts';
import { heldMessage, holdForApproval, type ApprovalRef } from '../approval-hold.ts';
import type { StreamContext } from './context.ts';
import type { ExecOptions } from './exec-options.ts';

/** What a session asks the gate, and the answer: allowed, refused with a message, or the record to wait for. */
export type AskResult = { allowed: true } | { allowed: false; message: string; reason: string; code: number } | { allowed: false; wait: ApprovalRef };

/** How a wait ended, with what to tell the user when it did not end in approval. */
export type WaitResult = { phase: 'Approved' } | { phase: Exclude<ApprovalPhase, 'Approved'> | 'Cancelled'; message: string };

/** Asks for (and waits on) the approvals of one session. */
export class SessionApprovals {
  readonly #ctx: StreamContext;
  readonly #opts: ExecOptions;

  constructor(ctx: StreamContext, opts: ExecOptions) {
    this.#ctx = ctx;
    this.#opts = opts;
  }

  /** False when this gateway has no approvals configured: nothing could ever approve. */
  get configured(): boolean {
    return this.#ctx.approvals?.gate !== undefined;
  }

  /**
   * Finds or creates the ApprovalRequest of the session (no `line`) or of one
   * typed line, and uses it when it is approved. Never throws: an API server
   * that cannot be asked refuses (503), as every approval check fails closed.
   */
  async ask(need: ApprovalRequirement, line?: string): Promise<AskResult> {
    const gate = this.#ctx.approvals?.gate;
    const what = line === undefined ? 'session' : 'line';
    if (gate === undefined) {
      return { allowed: false, code: 403, reason: 'Forbidden', message: `kubetrail: ${need.reason} (ExecPolicy ${need.policy}/${need.rule} requires approval by ${need.approval}; approvals are not configured on this gateway, so nothing can approve this ${what})` };
    }
    const t = this.#ctx.target;
    const u = this.#ctx.identity;
    const o = this.#opts;
    // Bound to what would run: the session's options, and for a line the exact text the guard judged.
    const bound = line === undefined ? { container: o.container, command: o.command, stdin: o.stdin, tty: o.tty } : { container: o.container, command: o.command, line };
    let answer: GateAnswer;
    try {
      answer = await gate.decide({
        requester: { username: u.username, groups: [...u.groups], ...(u.uid ? { uid: u.uid } : {}) },
        request: {
          kind: line === undefined ? 'exec' : 'line',
          verb: 'connect',
          apiGroup: '',
          apiVersion: 'v1',
          resource: 'pods',
          subresource: t.subresource,
          namespace: t.namespace,
          name: t.pod,
          pod: t.pod,
          ...(o.container ? { container: o.container } : {}),
          command: [...o.command],
          ...(line === undefined ? {} : { line }),
          bodySha256: approvalBodySha256(bound, []),
        },
        need,
        correlation: { session: this.#ctx.sessionId },
        dryRun: false,
        namespace: t.namespace,
        authn: u.authn,
      });
    } catch (err) {
      this.#ctx.log.warn({ err, code: (err as { code?: unknown }).code }, `approvals could not be checked; ${what} refused`);
      return { allowed: false, code: 503, reason: 'ServiceUnavailable', message: `kubetrail could not check approvals (the API server could not be asked); the ${what} is refused` };
    }
    if (answer.allowed) return { allowed: true };
    if (answer.name === undefined || answer.namespace === undefined) return { allowed: false, code: answer.code, reason: 'Forbidden', message: `kubetrail: ${answer.message}` };
    return { allowed: false, wait: { name: answer.name, namespace: answer.namespace } };
  }

  /** The line the user sees while held (the session sends it on stdout for a tty, else stderr). */
  waitingNote(ref: ApprovalRef, cancellable: boolean): string {
    const nl = this.#opts.tty ? '\r\n' : '\n';
    return `${cancellable ? nl : ''}kubetrail: waiting for approval ${ref.name} (an approver runs: kubetrail approvals approve ${ref.name} -n ${ref.namespace})${cancellable ? '; ctrl-c gives up' : ''}${nl}`;
  }

  /**
   * Waits, at most `approvals.holdSeconds`, for the ApprovalRequest to leave
   * Pending (watched in the API server, so a decision made through any
   * replica releases it). `signal` ends the wait early (client gone, ctrl-c).
   */
  async wait(ref: ApprovalRef, signal: AbortSignal, what: 'session' | 'line'): Promise<WaitResult> {
    const hold = this.#ctx.approvals;
    const started = performance.now();
    let phase: ApprovalPhase = 'Pending';
    if (hold !== undefined) {
      try {
        phase = await holdForApproval(hold, ref, signal);
      } catch (err) {
        if (!signal.aborted) this.#ctx.log.warn({ err, approval: ref.name }, 'could not watch the ApprovalRequest');
      }
    }
    if (phase === 'Approved') return { phase };
    if (signal.aborted) return { phase: 'Cancelled', message: `kubetrail: gave up waiting for ApprovalRequest ${ref.namespace}/${ref.name}; the ${what} was not run` };
    return { phase, message: heldMessage(ref, phase, performance.now() - started, what === 'session' ? 'request' : 'line') };
  }
}
