/**
 * Helpers for the exec relay tests: a fake upstream plus the test gateway with
 * a sink, kubectl under a pty (`script`) for interactive sessions, and event
 * lookups by session.
 */
import { spawn } from 'node:child_process';
import { startFakeUpstream, type FakeUpstream, type FakeUpstreamOptions } from '../tools/fake-exec-upstream.ts';
import { startStreamGateway, type StreamGateway, type StreamGatewayOptions } from '../tools/stream-gateway.ts';
import { MemorySink } from '../../core/sinks/memory-sink.ts';
import type { KubetrailEvent, SessionBody, SessionDataBody } from '../../core/events/model.ts';
import { drainSessions } from '../../exec-proxy/stream/index.ts';
import { chunkBytes } from '../../cli/asciicast.ts';

/** A fake upstream, a gateway in front of it, and the sink the gateway records to. */
export interface Rig {
  up: FakeUpstream;
  gw: StreamGateway;
  sink: MemorySink;
  close(): Promise<void>;
}

/** Starts a rig; `t.after(rig.close)` it. */
export async function startRig(opts: { upstream?: FakeUpstreamOptions; gateway?: Partial<Omit<StreamGatewayOptions, 'upstream' | 'sink'>> } = {}): Promise<Rig> {
  const up = await startFakeUpstream({ token: 'upstream-token', ...opts.upstream });
  const sink = new MemorySink({ source: { component: 'proxy' } });
  const gw = await startStreamGateway({ upstream: up.url, upstreamToken: 'upstream-token', sink, ...opts.gateway });
  return {
    up,
    gw,
    sink,
    async close() {
      await gw.close();
      await up.close();
      await drainSessions();
    },
  };
}

/** Events of one session, in emit order. */
export function sessionEvents(sink: MemorySink, session: string): KubetrailEvent[] {
  return sink.events.filter((e) => e.correlation?.session === session);
}

/** The session.end body of a session (waits until it is recorded). */
export async function sessionEnd(sink: MemorySink, session: string): Promise<SessionBody> {
  await drainSessions();
  const e = sink.events.find((x) => x.type === 'session.end' && x.correlation?.session === session);
  if (!e) throw new Error(`no session.end for ${session}`);
  return e.body as SessionBody;
}

/** Concatenated recorded bytes of one stream of a session, checking chunk order and offsets. */
export function recorded(sink: MemorySink, session: string, stream: SessionDataBody['stream'] | 'output'): Buffer {
  const parts: Buffer[] = [];
  let expectChunk = 0;
  const offsets: Record<string, number> = {};
  for (const e of sessionEvents(sink, session)) {
    if (e.type !== 'session.data') continue;
    const b = e.body as SessionDataBody;
    if (b.chunk !== expectChunk) throw new Error(`chunk ${b.chunk} out of order (expected ${expectChunk})`);
    expectChunk++;
    const data = chunkBytes(b);
    if ((offsets[b.stream] ?? 0) !== b.offset) throw new Error(`offset gap in ${b.stream}`);
    offsets[b.stream] = b.offset + data.length;
    if (b.stream === stream || (stream === 'output' && (b.stream === 'stdout' || b.stream === 'stderr'))) parts.push(data);
  }
  return Buffer.concat(parts);
}

/**
 * Runs a command under a pty (util-linux `script`), sending each step's text
 * once the output so far matches its `after` pattern. Resolves with the
 * output and exit status.
 */
export function interactive(
  cmd: string,
  steps: { after: RegExp; send: string }[],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<{ status: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn('script', ['-qfec', cmd, '/dev/null'], { env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    let step = 0;
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    const advance = (): void => {
      while (step < steps.length && (steps[step] as { after: RegExp }).after.test(output)) {
        child.stdin.write((steps[step] as { send: string }).send);
        step++;
      }
    };
    child.stdout.on('data', (c: Buffer) => {
      output += c.toString('latin1');
      advance();
    });
    child.stderr.on('data', (c: Buffer) => {
      output += c.toString('latin1');
      advance();
    });
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, output });
    });
    advance();
  });
}
