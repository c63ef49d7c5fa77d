/**
 * Helpers for the exec relay tests: a fake upstream plus the test gateway with
 * a sink, kubectl under a pty (`script`) for interactive sessions, and event
 * lookups by session.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { issueCert } from '../../certs/generate.ts';
import { harness, kubectl } from '../support/env.ts';
import { startFakeKubelet, type FakeKubelet } from '../tools/fake-kubelet.ts';
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

/**
 * A Node whose kubelet endpoint is a fake kubelet on loopback (serving exec
 * with real processes, certificate from the harness CA), and a Pod bound to
 * it in `namespace`; all removed after the test.
 */
export async function fakeNodeWithPod(t: TestContext, namespace: string): Promise<{ pod: string; node: string; kubelet: FakeKubelet }> {
  const env = harness();
  const cp = path.join(env.HARNESS_DIR, 'control-plane');
  const ca = { certPem: readFileSync(path.join(cp, 'ca.crt'), 'utf8'), keyPem: readFileSync(path.join(cp, 'ca.key'), 'utf8') };
  const kubelet = await startFakeKubelet(issueCert(ca, { commonName: 'fake-kubelet', ips: ['127.0.0.1'], dnsNames: ['localhost'] }));
  t.after(() => kubelet.close());
  const suffix = randomBytes(4).toString('hex');
  const node = `kt-fake-node-${suffix}`;
  const pod = `kt-kubelet-${suffix}`;
  const admin = env.ADMIN_KUBECONFIG;
  const mk = await kubectl(admin, ['create', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'Node', metadata: { name: node } }));
  if (mk.status !== 0) throw new Error(`creating the fake node failed: ${mk.stderr}`);
  t.after(() => kubectl(admin, ['delete', 'node', node, '--wait=false']));
  const st = await kubectl(admin, [
    'patch', 'node', node, '--subresource=status', '--type=merge', '-p',
    JSON.stringify({ status: { addresses: [{ type: 'InternalIP', address: '127.0.0.1' }], daemonEndpoints: { kubeletEndpoint: { Port: kubelet.port } } } }),
  ]);
  if (st.status !== 0) throw new Error(`patching the fake node failed: ${st.stderr}`);
  const mp = await kubectl(admin, ['create', '-f', '-'], JSON.stringify({
    apiVersion: 'v1', kind: 'Pod', metadata: { name: pod, namespace },
    spec: { nodeName: node, containers: [{ name: 'app', image: 'busybox', command: ['sleep', '3600'] }] },
  }));
  if (mp.status !== 0) throw new Error(`creating the pod failed: ${mp.stderr}`);
  t.after(() => kubectl(admin, ['-n', namespace, 'delete', 'pod', pod, '--wait=false', '--grace-period=0', '--force']));
  return { pod, node, kubelet };
}
