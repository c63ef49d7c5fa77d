/**
 * What a stream session records, whichever protocol carried it (session.ts
 * for WebSocket exec/attach, spdy-exec.ts for SPDY, portforward.ts): its
 * recorder, the ExecPolicy input and session.start body of an exec/attach,
 * the terminal size its resize messages announced, and the session.end body
 * built from its counters and the kubelet's exit Status.
 */
import type { SessionBody } from '../../core/events/model.ts';
import type { Logger } from '../../core/logger.ts';
import type { ExecInput } from '../../core/policy/exec.ts';
import type { StreamContext } from './context.ts';
import type { StreamError } from './errors.ts';
import type { ExecOptions } from './exec-options.ts';
import { exitCodeFromStatus } from './protocol.ts';
import { SessionRecorder } from './recorder.ts';

/** The recorder of one session: events as the caller, on the pod's subresource, with the configured limits. */
export function sessionRecorder(ctx: StreamContext): SessionRecorder {
  const l = ctx.limits;
  return new SessionRecorder(
    ctx.sink,
    { actor: ctx.identity, target: { group: '', version: 'v1', resource: 'pods', subresource: ctx.target.subresource, namespace: ctx.target.namespace, name: ctx.target.pod }, session: ctx.sessionId },
    { chunkBytes: l.chunkBytes, flushMs: l.recordFlushMs, maxRecordedBytes: l.maxRecordedBytes, maxInflightBytes: l.maxInflightRecordBytes, compression: l.recordCompression },
  );
}

/** What ExecPolicy judges of an exec/attach. */
export function execInput(ctx: StreamContext, opts: ExecOptions): ExecInput {
  return {
    kind: ctx.target.subresource === 'attach' ? 'attach' : 'exec',
    namespace: ctx.target.namespace,
    pod: ctx.target.pod,
    container: opts.container,
    command: opts.command,
    tty: opts.tty,
    user: ctx.identity,
  };
}

/** The session.start body of an exec/attach (session.end adds the tally). */
export function execSessionBody(ctx: StreamContext, opts: ExecOptions, protocol: string, subprotocol: string | undefined): SessionBody {
  const t = ctx.target;
  const kind = t.subresource === 'attach' ? 'attach' : 'exec';
  return {
    kind,
    pod: t.pod,
    namespace: t.namespace,
    ...(opts.container ? { container: opts.container } : {}),
    ...(kind === 'exec' ? { command: opts.command } : {}),
    tty: opts.tty,
    stdin: opts.stdin,
    protocol,
    ...(subprotocol ? { subprotocol } : {}),
  };
}

/** The first terminal size in a resize payload (JSON lines of {Width, Height}); bad lines are the container's business. */
export function resizeOf(payload: Buffer): { width: number; height: number } | undefined {
  for (const line of payload.toString('utf8').split('\n')) {
    if (!line.trim()) continue;
    try {
      const s = JSON.parse(line) as { Width?: unknown; Height?: unknown };
      if (typeof s.Width === 'number' && typeof s.Height === 'number') return { width: s.Width, height: s.Height };
    } catch {
      /* recorded as-is; the container decides what a bad resize means */
    }
  }
  return undefined;
}

/** What a session counted. */
export interface SessionTally {
  outcome: string;
  bytesIn: number;
  bytesOut: number;
  durationMs: number;
  /** The error/status channel's text (the exit Status). */
  status: string;
  error?: string;
  masked: Record<string, number>;
  lines?: { checked: number; blocked: number };
  size?: { width: number; height: number };
}

/** The session.end body: the session's description plus what it counted; the exit code and failure come from the Status. */
export function sessionEndBody(base: SessionBody, t: SessionTally): SessionBody {
  const st = exitCodeFromStatus(t.status);
  return {
    ...base,
    outcome: t.outcome,
    bytesIn: t.bytesIn,
    bytesOut: t.bytesOut,
    durationMs: t.durationMs,
    ...(st.exitCode !== undefined ? { exitCode: st.exitCode } : {}),
    ...(t.error !== undefined ? { error: t.error } : st.failure !== undefined ? { error: st.failure } : {}),
    ...(Object.keys(t.masked).length > 0 ? { masked: t.masked } : {}),
    ...(t.lines ? { linesChecked: t.lines.checked, linesBlocked: t.lines.blocked } : {}),
    ...(t.size ? { width: t.size.width, height: t.size.height } : {}),
  };
}

/** Records session.end; a failure is logged (by code only), never thrown: the session is over either way. */
export async function recordEnd(recorder: SessionRecorder, body: SessionBody, log: Logger, what: string): Promise<void> {
  try {
    await recorder.end(body);
  } catch (err) {
    log.error({ err: { code: (err as StreamError).code } }, `${what} recording incomplete`);
  }
}
