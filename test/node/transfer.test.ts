/**
 * kubectl cp, port-forward, logs -f and debug on real containers through the
 * gateway, as the agent.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { kubectl } from '../support/env.ts';
import { interactive, sessionEnd } from '../exec/helpers.ts';
import { nodeEnv, runPod, startNodeGateway, uniq } from './support.ts';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Spawns kubectl, resolving once its output matches `ready`; the caller kills it. */
function kubectlUntil(kc: string, args: string[], ready: RegExp): Promise<{ child: ReturnType<typeof spawn>; output: () => string; match: RegExpExecArray }> {
  return new Promise((resolve, reject) => {
    const child = spawn('kubectl', ['--kubeconfig', kc, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`kubectl ${args.join(' ')}: no ${ready} within 60 s; output: ${out}`));
    }, 60_000);
    const on = (c: Buffer): void => {
      out += c.toString();
      const m = ready.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ child, output: () => out, match: m });
      }
    };
    child.stdout?.on('data', on);
    child.stderr?.on('data', on);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`kubectl ${args.join(' ')} exited ${code} before ${ready}: ${out}`));
    });
  });
}

function stop(child: ReturnType<typeof spawn>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  const gone = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  return gone;
}

test('kubectl cp carries 50 MB into a real container and back intact', async (t) => {
  const pod = await runPod(t, `kt-cp-${uniq()}`, { command: ['sleep', '3600'] });
  const g = await startNodeGateway();
  t.after(() => g.close());
  const dir = mkdtempSync(path.join(tmpdir(), 'kubetrail-cp-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const data = randomBytes(50 * 1024 * 1024);
  writeFileSync(path.join(dir, 'up.bin'), data);
  const up = await kubectl(g.kubeconfig, ['cp', path.join(dir, 'up.bin'), `${pod}:/tmp/big.bin`], undefined, { timeoutMs: 240_000 });
  assert.equal(up.status, 0, up.stderr);
  const inPod = await kubectl(g.kubeconfig, ['exec', pod, '--', 'sha256sum', '/tmp/big.bin']);
  assert.equal(inPod.stdout.split(' ')[0], sha(data), 'the file in the container is the one sent');
  const down = await kubectl(g.kubeconfig, ['cp', `${pod}:/tmp/big.bin`, path.join(dir, 'down.bin')], undefined, { timeoutMs: 240_000 });
  assert.equal(down.status, 0, down.stderr);
  assert.equal(sha(readFileSync(path.join(dir, 'down.bin'))), sha(data), 'the file copied back is intact');
  // Both copies are exec sessions (tar) that completed and were recorded.
  const sink = g.memory!;
  const ends = await Promise.all(sink.ofType('session.start').map((s) => sessionEnd(sink, s.correlation?.session as string)));
  assert.ok(ends.length >= 3, `${ends.length} sessions`);
  // kubectl cp closes its connection as soon as tar's stream ends; whether the gateway saw the
  // exit status first is a race, so a download may end as client-closed — with exit code 0.
  for (const e of ends) {
    assert.ok(e.outcome === 'completed' || e.outcome === 'client-closed', JSON.stringify(e));
    // kubectl's own probe (`test -d <dest>`) exits 1 when the destination is not a directory.
    if (e.command?.[0] === 'tar' || e.command?.[0] === 'sha256sum') assert.equal(e.exitCode, 0, JSON.stringify(e));
  }
  const out = ends.find((e) => e.command?.[0] === 'tar' && e.command[1] === 'cf');
  assert.ok((out?.bytesOut ?? 0) >= data.length, 'the download was recorded whole');
});

test('kubectl port-forward carries HTTP to busybox httpd in a real container, and the forward is recorded', async (t) => {
  const pod = await runPod(t, `kt-pf-${uniq()}`, { command: ['httpd', '-f', '-p', '8080', '-h', '/www'] });
  const g = await startNodeGateway();
  t.after(() => g.close());
  const pf = await kubectlUntil(g.kubeconfig, ['port-forward', pod, ':8080'], /Forwarding from 127\.0\.0\.1:(\d+) -> 8080/);
  t.after(() => stop(pf.child));
  const port = Number(pf.match[1]);
  for (let i = 0; i < 3; i++) {
    const res = await fetch(`http://127.0.0.1:${port}/index.html`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'kubetrail test image\n');
  }
  const missing = await fetch(`http://127.0.0.1:${port}/nope`);
  assert.equal(missing.status, 404);
  await missing.text();
  await stop(pf.child);
  const sink = g.memory!;
  const start = sink.ofType('session.start').at(-1);
  assert.equal(start?.actor?.username, 'agent-ci');
  const end = await sessionEnd(sink, start?.correlation?.session as string);
  assert.equal(end.kind, 'portforward');
});

test('kubectl logs -f follows a real container through the gateway', async (t) => {
  const pod = await runPod(t, `kt-logs-${uniq()}`, { command: ['sh', '-c', 'i=0; while true; do echo "tick $i"; i=$((i+1)); sleep 0.2; done'] });
  const g = await startNodeGateway();
  t.after(() => g.close());
  // Lines written after kubectl started prove it follows rather than prints once.
  const first = await kubectlUntil(g.kubeconfig, ['logs', '-f', pod], /tick (\d+)\n/);
  const n = Number(first.match[1]);
  const later = new RegExp(`tick ${n + 5}\\n`);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${later} in ${first.output()}`)), 60_000);
    const check = (): void => {
      if (later.test(first.output())) {
        clearTimeout(timer);
        resolve();
      } else setTimeout(check, 100);
    };
    check();
  });
  await stop(first.child);
  assert.match(first.output(), new RegExp(`tick ${n + 1}\\ntick ${n + 2}\\n`));
  const sink = g.memory!;
  const req = sink.ofType('api.request').find((e) => JSON.stringify(e.body).includes('/log'));
  t.diagnostic(`logs recorded as: ${req ? JSON.stringify(req.body).slice(0, 300) : 'no api.request event'}`);
});

test('kubectl debug adds an ephemeral container to a real pod and attaches to it; the gateway records the patch and the attach', async (t) => {
  const env = nodeEnv();
  const pod = await runPod(t, `kt-debug-${uniq()}`, { command: ['sleep', '3600'] });
  const g = await startNodeGateway();
  t.after(() => g.close());
  // -it, as people use it: with a piped, non-tty `-i` kubectl attaches after the shell has
  // read its input, and the output goes only to the container's log (straight to the API
  // server as well as through the gateway).
  const r = await interactive(`kubectl --kubeconfig ${g.kubeconfig} debug -it ${pod} --image=${env.NODE_IMAGE} --image-pull-policy=Never --profile=general -c dbg -- sh`, [
    { after: /If you don't see a command prompt|[$#] (\x1b\[6n)?$/m, send: 'echo debug-$((2+3))\r' },
    { after: /debug-5\r?\n/, send: 'exit\r' },
  ]);
  assert.match(r.output, /debug-5/);
  assert.equal(r.status, 0, r.output);
  const sink = g.memory!;
  const kinds = sink.events.map((e) => e.type);
  const patch = sink.ofType('api.request').find((e) => JSON.stringify(e.body).includes('ephemeralcontainers'));
  t.diagnostic(`events: ${[...new Set(kinds)].join(', ')}`);
  t.diagnostic(`ephemeralcontainers write: ${patch ? JSON.stringify(patch.body).slice(0, 400) : 'none recorded'}`);
  assert.ok(patch, 'the ephemeral container write is recorded');
  assert.equal((patch.body as { verb: string }).verb, 'patch');
  assert.equal(patch.actor?.username, 'agent-ci');
  const start = sink.ofType('session.start').at(-1);
  assert.ok(start, 'the attach to the debug container is a recorded session');
  assert.equal(start.actor?.username, 'agent-ci');
  const end = await sessionEnd(sink, start.correlation?.session as string);
  assert.equal(end.kind, 'attach');
  t.diagnostic(`attach session: ${JSON.stringify({ container: (start.body as { container?: string }).container, outcome: end.outcome, exitCode: end.exitCode })}`);
  const spec = await kubectl(env.ADMIN_KUBECONFIG, ['-n', 'agents', 'get', 'pod', pod, '-o', 'jsonpath={.spec.ephemeralContainers[*].name}']);
  assert.equal(spec.stdout.trim(), 'dbg');
});
