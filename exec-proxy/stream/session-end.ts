/**
 * What an exec/attach session records when it ends, whichever protocol
 * carried it (session.ts for WebSocket, spdy-exec.ts for SPDY): the terminal
 * size its resize messages announced, and the session.end body built from its
 * counters and the kubelet's exit Status.
 */
import type { SessionBody } from '../../core/events/model.ts';
import type { Logger } from '../../core/logger.ts';
import type { StreamError } from './errors.ts';
import { exitCodeFromStatus } from './protocol.ts';
import type { SessionRecorder } from './recorder.ts';

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
