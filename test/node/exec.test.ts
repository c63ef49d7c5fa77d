/**
 * kubectl exec and attach on real containers: the machine's kubectl with the
 * agent's own token → the real gateway (TokenReview, impersonation, recording
 * stream relay) → the real kube-apiserver → kubelet → containerd → runc, in a
 * busybox container on the harness node.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import path from 'node:path';
import { kubectl, productEnv } from '../support/env.ts';
import { REPO_ROOT } from '../harness/harness.ts';
import { interactive, recorded, sessionEnd, sessionEvents } from '../exec/helpers.ts';
import { defaultMasking, execPolicy, nodeEnv, runPod, startNodeGateway, uniq } from './support.ts';

function runBytes(cmd: string, args: string[], env?: NodeJS.ProcessEnv): Promise<{ status: number | null; stdout: Buffer; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...(env ? { env } : {}) });
    const out: Buffer[] = [];
    let err = '';
    c.stdout.on('data', (d: Buffer) => out.push(d));
    c.stderr.on('data', (d: Buffer) => (err += d.toString()));
    c.on('close', (status) => resolve({ status, stdout: Buffer.concat(out), stderr: err }));
  });
}

test('kubectl exec -- sh -c "exit 3" in a real container exits 3, and the session is recorded under the agent', async (t) => {
  const pod = await runPod(t, `kt-exit-${uniq()}`, { command: ['sleep', '3600'] });
  const g = await startNodeGateway();
  t.after(() => g.close());
  const r = await kubectl(g.kubeconfig, ['exec', pod, '--', 'sh', '-c', 'echo out-$((40+2)); echo err >&2; exit 3']);
  assert.equal(r.status, 3, r.stderr);
  assert.equal(r.stdout, 'out-42\n');
  assert.match(r.stderr, /^err\n/);
  const sink = g.memory!;
  const start = sink.ofType('session.start').at(-1);
  assert.equal(start?.actor?.username, 'agent-ci');
  const id = start?.correlation?.session as string;
  const end = await sessionEnd(sink, id);
  assert.equal(end.exitCode, 3);
  assert.equal(end.outcome, 'completed');
  assert.equal(recorded(sink, id, 'stdout').toString(), 'out-42\n');
  assert.equal(recorded(sink, id, 'stderr').toString(), 'err\n');
  assert.deepEqual([...new Set(sessionEvents(sink, id).map((e) => e.actor?.username))], ['agent-ci']);
});

test('piped stdin reaches a real process, is recorded, and closing it ends the command', async (t) => {
  const pod = await runPod(t, `kt-stdin-${uniq()}`, { command: ['sleep', '3600'] });
  const g = await startNodeGateway();
  t.after(() => g.close());
  const input = Array.from({ length: 500 }, (_, i) => `line ${i} of piped input`).join('\n') + '\n';
  const r = await kubectl(g.kubeconfig, ['exec', '-i', pod, '--', 'sh', '-c', 'tr a-z A-Z; echo done >&2'], input);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, input.toUpperCase());
  const sink = g.memory!;
  const id = sink.ofType('session.start').at(-1)?.correlation?.session as string;
  await sessionEnd(sink, id);
  assert.equal(recorded(sink, id, 'stdin').toString(), input);
  assert.equal(recorded(sink, id, 'stdout').toString(), input.toUpperCase());
});

test('kubectl exec -it in a real terminal: a typed session runs in busybox sh, a blocked typed line is not executed, a printed secret is masked for the client and the recording', async (t) => {
  const pod = await runPod(t, `kt-tty-${uniq()}`, { command: ['sleep', '3600'] });
  const g = await startNodeGateway({
    masking: [defaultMasking()],
    execPolicies: [execPolicy([{ name: 'no-typed-rm', on: 'line', expression: 'line.matches("^\\\\s*rm\\\\b")', message: 'deleting files is not allowed here' }])],
  });
  t.after(() => g.close());
  const r = await interactive(`kubectl --kubeconfig ${g.kubeconfig} exec -it ${pod} -- sh`, [
    // busybox ash asks the terminal for the cursor position (ESC [6n) after each prompt.
    { after: /[$#] (\x1b\[6n)?$/, send: 'echo keep > /tmp/keep-me; echo typed-$((40+2))\r' },
    { after: /typed-42/, send: 'rm -f /tmp/keep-me\r' },
    { after: /line blocked/, send: 'ls /tmp/keep-me && echo still-here\r' },
    // The secret exists only in the output: the typed line holds it in two halves.
    { after: /still-here\r?\n/, send: "printf 'AKIA''QQQQQQ3333333333 end\\n'\r" },
    { after: /end\r?\n/, send: 'exit 7\r' },
  ]);
  assert.match(r.output, /typed-42/);
  assert.match(r.output, /kubetrail: line blocked: deleting files is not allowed here \(ExecPolicy agents-exec\/no-typed-rm\)/);
  assert.match(r.output, /still-here/, 'the blocked rm did not run: the file is still there');
  assert.match(r.output, /\[masked:aws-access-key\] end/);
  assert.doesNotMatch(r.output, /AKIAQQQQQQ3333333333/);
  assert.equal(r.status, 7, r.output);
  const sink = g.memory!;
  const id = sink.ofType('session.start').at(-1)?.correlation?.session as string;
  const end = await sessionEnd(sink, id);
  assert.equal(end.tty, true);
  assert.equal(end.exitCode, 7);
  assert.equal(end.linesBlocked, 1);
  const out = recorded(sink, id, 'stdout').toString('latin1');
  assert.match(out, /typed-42/);
  assert.match(out, /\[masked:aws-access-key\] end/);
  assert.doesNotMatch(out, /AKIAQQQQQQ3333333333/);
  assert.ok(!sink.lines.some((l) => l.includes('AKIAQQQQQQ3333333333')), 'no event holds the secret');
  assert.ok(recorded(sink, id, 'resize').length > 0, 'the terminal size is recorded');
});

test('kubectl attach -it to a running container: the main shell answers typed lines, and the attach is recorded', async (t) => {
  const pod = await runPod(t, `kt-attach-${uniq()}`, { command: ['sh'], stdin: true, tty: true });
  const g = await startNodeGateway();
  t.after(() => g.close());
  const r = await interactive(`kubectl --kubeconfig ${g.kubeconfig} attach -it ${pod} -c app`, [
    // kubectl prints a hint, not the prompt (the shell printed it before we attached): type at once.
    { after: /If you don't see a command prompt|[$#] $/m, send: 'echo attached-$((6*7))\r' },
    { after: /attached-42\r?\n/, send: 'exit\r' },
  ]);
  assert.match(r.output, /attached-42/);
  assert.equal(r.status, 0, r.output);
  const sink = g.memory!;
  const id = sink.ofType('session.start').at(-1)?.correlation?.session as string;
  const end = await sessionEnd(sink, id);
  assert.equal(end.kind, 'attach');
  assert.match(recorded(sink, id, 'stdin').toString(), /echo attached-/);
  assert.match(recorded(sink, id, 'stdout').toString(), /attached-42/);
});

test('a real-container session recorded to the local log is replayed byte for byte by kubetrail replay', async (t) => {
  const pod = await runPod(t, `kt-replay-${uniq()}`, { command: ['sleep', '3600'] });
  const g = await startNodeGateway({ pipeline: true });
  t.after(() => g.close());
  // A tab, a multi-byte character split across two writes, a non-UTF-8 byte, a pause, bulk.
  const script = `printf 'one\\ttwo\\n'; printf '\\342\\202'; sleep 0.2; printf '\\254 euro\\n\\377 raw\\n'; seq 1 3000`;
  const k = await runBytes('kubectl', ['--kubeconfig', g.kubeconfig, 'exec', pod, '--', 'sh', '-c', script]);
  assert.equal(k.status, 0, k.stderr);
  assert.ok(k.stdout.includes(Buffer.from([0xff, 0x20, 0x72, 0x61, 0x77])), 'kubectl got the raw byte');
  await g.stop();
  const cli = (args: string[]) => runBytes(process.execPath, [path.join(REPO_ROOT, 'cli', 'main.ts'), ...args], productEnv());
  const list = await cli(['sessions', '--log-dir', g.dataDir, '-o', 'json']);
  assert.equal(list.status, 0, list.stderr);
  const rows = list.stdout.toString().trim().split('\n').map((l) => JSON.parse(l) as { type: string; correlation: { session: string }; actor?: { username: string } });
  const end = rows.find((r) => r.type === 'session.end');
  assert.ok(end, list.stdout.toString());
  const replay = await cli(['replay', end.correlation.session, '--log-dir', g.dataDir, '--speed', '50']);
  assert.equal(replay.status, 0, replay.stderr);
  assert.ok(replay.stdout.equals(k.stdout), `replayed ${replay.stdout.length} bytes equal the ${k.stdout.length} kubectl printed`);
});

test('an exec the kubelet refuses after the upgrade (container not found) is recorded as an error, not as completed', async (t) => {
  const env = nodeEnv();
  const name = `kt-noimg-${uniq()}`;
  // An image that is not on the node and must not be pulled: the pod is scheduled, its container never starts.
  const mk = await kubectl(env.ADMIN_KUBECONFIG, ['create', '-f', '-'], JSON.stringify({
    apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'agents' },
    spec: { terminationGracePeriodSeconds: 0, containers: [{ name: 'app', image: 'kubetrail.local/not-built:1', imagePullPolicy: 'Never' }] },
  }));
  assert.equal(mk.status, 0, mk.stderr);
  t.after(() => kubectl(env.ADMIN_KUBECONFIG, ['-n', 'agents', 'delete', 'pod', name, '--wait=false', '--grace-period=0', '--force']));
  const sched = await kubectl(env.ADMIN_KUBECONFIG, ['-n', 'agents', 'wait', '--for=condition=PodScheduled', `pod/${name}`, '--timeout=60s']);
  assert.equal(sched.status, 0, sched.stderr);
  const g = await startNodeGateway();
  t.after(() => g.close());
  const r = await kubectl(g.kubeconfig, ['exec', name, '--', 'true']);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /container not found|not running|ContainerCreating|waiting to start/, r.stderr);
  const sink = g.memory!;
  const end = await sessionEnd(sink, sink.ofType('session.start').at(-1)?.correlation?.session as string);
  assert.equal(end.outcome, 'error', JSON.stringify(end));
});
