/**
 * Legacy SPDY exec and attach (kubectl ≤ 1.29, KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false,
 * client-go built against older client-go): the machine's kubectl through the
 * gateway against the real kubelet. The gateway relays SPDY and records it
 * like a WebSocket session (exec-proxy/stream/spdy-exec.ts); command-level
 * ExecPolicy applies; a session that inline masking or typed-line rules
 * apply to is refused (SPDY cannot be rewritten in flight), and the refusal
 * is on the record; so is a refused legacy SPDY port-forward.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { kubectl } from '../support/env.ts';
import { interactive, recorded, sessionEnd, sessionEvents } from '../exec/helpers.ts';
import { defaultMasking, execPolicy, nodeEnv, runPod, startNodeGateway, uniq } from './support.ts';

const spdy = { ...process.env, KUBECTL_REMOTE_COMMAND_WEBSOCKETS: 'false' };

function lastSession(g: Awaited<ReturnType<typeof startNodeGateway>>): string {
  return g.memory!.ofType('session.start').at(-1)?.correlation?.session as string;
}

test('kubectl exec over SPDY through the gateway runs in a real container like the same exec straight to the API server: output, stderr, exit code, and the recording', async (t) => {
  const env = nodeEnv();
  const pod = await runPod(t, `kt-spdy-${uniq()}`, { command: ['sleep', '3600'] });
  const script = 'echo out-$((40+2)); echo err >&2; exit 2';
  const direct = await kubectl(env.ADMIN_KUBECONFIG, ['-n', 'agents', 'exec', pod, '--', 'sh', '-c', script], undefined, { env: spdy });
  assert.equal(direct.status, 2, direct.stderr);
  assert.equal(direct.stdout, 'out-42\n');

  const g = await startNodeGateway();
  t.after(() => g.close());
  const r = await kubectl(g.kubeconfig, ['exec', pod, '--', 'sh', '-c', script], undefined, { env: spdy });
  assert.equal(r.status, 2, r.stderr);
  assert.equal(r.stdout, 'out-42\n');
  assert.match(r.stderr, /^err\n/);
  const sink = g.memory!;
  const id = lastSession(g);
  const end = await sessionEnd(sink, id);
  t.diagnostic(`session.end: ${JSON.stringify(end)}`);
  assert.equal(end.protocol, 'SPDY/3.1');
  assert.match(end.subprotocol ?? '', /^v[45]\.channel\.k8s\.io$/);
  assert.deepEqual(end.command, ['sh', '-c', script]);
  assert.equal(end.exitCode, 2);
  assert.equal(end.outcome, 'completed');
  assert.equal(recorded(sink, id, 'stdout').toString(), 'out-42\n');
  assert.equal(recorded(sink, id, 'stderr').toString(), 'err\n');
  assert.deepEqual([...new Set(sessionEvents(sink, id).map((e) => e.actor?.username))], ['agent-ci']);
});

test('piped stdin over SPDY reaches the real process and is recorded', async (t) => {
  const pod = await runPod(t, `kt-spdy-in-${uniq()}`, { command: ['sleep', '3600'] });
  const g = await startNodeGateway();
  t.after(() => g.close());
  const input = Array.from({ length: 2000 }, (_, i) => `line ${i} of piped input over spdy`).join('\n') + '\n';
  const r = await kubectl(g.kubeconfig, ['exec', '-i', pod, '--', 'sh', '-c', 'tr a-z A-Z'], input, { env: spdy });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, input.toUpperCase());
  const sink = g.memory!;
  const id = lastSession(g);
  const end = await sessionEnd(sink, id);
  assert.equal(end.outcome, 'completed');
  assert.equal(end.exitCode, 0);
  assert.equal(recorded(sink, id, 'stdin').toString(), input);
  assert.equal(recorded(sink, id, 'stdout').toString(), input.toUpperCase());
});

test('kubectl exec -it over SPDY in a real terminal: typed lines run and are recorded, with the terminal size', async (t) => {
  const pod = await runPod(t, `kt-spdy-tty-${uniq()}`, { command: ['sleep', '3600'] });
  const g = await startNodeGateway();
  t.after(() => g.close());
  const r = await interactive(`kubectl --kubeconfig ${g.kubeconfig} exec -it ${pod} -- sh`, [
    { after: /[$#] (\x1b\[6n)?$/, send: 'echo typed-$((6*7))\r' },
    { after: /typed-42\r?\n/, send: 'exit 5\r' },
  ], { env: spdy });
  assert.match(r.output, /typed-42/);
  assert.equal(r.status, 5, r.output);
  const sink = g.memory!;
  const id = lastSession(g);
  const end = await sessionEnd(sink, id);
  assert.equal(end.protocol, 'SPDY/3.1');
  assert.equal(end.tty, true);
  assert.equal(end.exitCode, 5);
  assert.match(recorded(sink, id, 'stdin').toString(), /echo typed-\$\(\(6\*7\)\)\r/);
  assert.match(recorded(sink, id, 'stdout').toString(), /typed-42/);
  assert.ok(recorded(sink, id, 'resize').length > 0, 'the terminal size is recorded');
});

test('kubectl attach -it over SPDY to a running container is relayed and recorded', async (t) => {
  const pod = await runPod(t, `kt-spdy-att-${uniq()}`, { command: ['sh'], stdin: true, tty: true });
  const g = await startNodeGateway();
  t.after(() => g.close());
  const r = await interactive(`kubectl --kubeconfig ${g.kubeconfig} attach -it ${pod} -c app`, [
    { after: /If you don't see a command prompt|[$#] $/m, send: 'echo attached-$((6*7))\r' },
    { after: /attached-42\r?\n/, send: 'exit\r' },
  ], { env: spdy });
  assert.match(r.output, /attached-42/);
  assert.equal(r.status, 0, r.output);
  const sink = g.memory!;
  const id = lastSession(g);
  const end = await sessionEnd(sink, id);
  assert.equal(end.kind, 'attach');
  assert.equal(end.protocol, 'SPDY/3.1');
  assert.match(recorded(sink, id, 'stdin').toString(), /echo attached-/);
  assert.match(recorded(sink, id, 'stdout').toString(), /attached-42/);
});

test('a command ExecPolicy denies over SPDY is refused with the policy message, never runs, and the denial is recorded', async (t) => {
  const env = nodeEnv();
  const pod = await runPod(t, `kt-spdy-deny-${uniq()}`, { command: ['sleep', '3600'] });
  const g = await startNodeGateway({ execPolicies: [execPolicy([{ name: 'no-touch', action: 'deny', expression: 'command.exists(c, c.contains("touch"))', message: 'touch is not allowed here' }])] });
  t.after(() => g.close());
  const r = await kubectl(g.kubeconfig, ['exec', pod, '--', 'sh', '-c', 'touch /tmp/ran'], undefined, { env: spdy });
  t.diagnostic(`kubectl: exit ${r.status}; stderr: ${r.stderr.trim()}`);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /Error from server \(Forbidden\): kubetrail: touch is not allowed here \(ExecPolicy agents-exec\/no-touch\)/);
  const ran = await kubectl(env.ADMIN_KUBECONFIG, ['-n', 'agents', 'exec', pod, '--', 'ls', '/tmp/ran']);
  assert.notEqual(ran.status, 0, 'the denied command did not run');
  const end = await sessionEnd(g.memory!, lastSession(g));
  assert.equal(end.outcome, 'denied');
  assert.equal(end.protocol, 'SPDY/3.1');
});

const REFUSAL = /Error from server \(BadRequest\): kubetrail: (.+) cover this session, and kubetrail applies them over WebSocket only \(it cannot rewrite legacy SPDY streams in flight\), so this SPDY exec\/attach is refused\. Use WebSocket: kubectl 1\.30 or newer uses it by default \(unset KUBECTL_REMOTE_COMMAND_WEBSOCKETS or set it to true\)\./;

test('a SPDY exec that inline masking applies to is refused (fail closed), the command never runs, and the refusal names caller, pod and command on the record', async (t) => {
  const env = nodeEnv();
  const pod = await runPod(t, `kt-spdy-mask-${uniq()}`, { command: ['sleep', '3600'] });
  const g = await startNodeGateway({ masking: [defaultMasking()] });
  t.after(() => g.close());
  const r = await kubectl(g.kubeconfig, ['exec', pod, '--', 'sh', '-c', 'touch /tmp/ran; echo ran'], undefined, { env: spdy });
  t.diagnostic(`kubectl: exit ${r.status}; stderr: ${r.stderr.trim()}`);
  assert.equal(r.status, 1);
  assert.equal(r.stdout, '');
  assert.equal(REFUSAL.exec(r.stderr)?.[1], 'inline masking of output (MaskingPolicy)', r.stderr);
  const ran = await kubectl(env.ADMIN_KUBECONFIG, ['-n', 'agents', 'exec', pod, '--', 'ls', '/tmp/ran']);
  assert.notEqual(ran.status, 0, 'the refused command did not run');
  const sink = g.memory!;
  const id = lastSession(g);
  const start = sink.ofType('session.start').at(-1);
  assert.equal(start?.actor?.username, 'agent-ci');
  const end = await sessionEnd(sink, id);
  assert.equal(end.pod, pod);
  assert.deepEqual(end.command, ['sh', '-c', 'touch /tmp/ran; echo ran']);
  assert.equal(end.outcome, 'denied');
  assert.equal(end.error, 'STREAM_ERR_SPDY_UNSUPPORTED');
});

test('a SPDY exec -it that typed-line rules apply to is refused, naming them', async (t) => {
  const pod = await runPod(t, `kt-spdy-line-${uniq()}`, { command: ['sleep', '3600'] });
  const g = await startNodeGateway({ execPolicies: [execPolicy([{ name: 'no-typed-rm', on: 'line', expression: 'line.matches("^\\\\s*rm\\\\b")', message: 'no rm' }])] });
  t.after(() => g.close());
  const r = await interactive(`kubectl --kubeconfig ${g.kubeconfig} exec -it ${pod} -- sh`, [], { env: spdy });
  assert.notEqual(r.status, 0);
  assert.equal(REFUSAL.exec(r.output.replace(/\r?\n/g, ' '))?.[1], 'typed-line rules (ExecPolicy on: line)', r.output);
  const end = await sessionEnd(g.memory!, lastSession(g));
  assert.equal(end.outcome, 'denied');
  assert.equal(end.error, 'STREAM_ERR_SPDY_UNSUPPORTED');
});

test('a legacy SPDY port-forward is refused with the setting to change, and the refusal is on the record', async (t) => {
  const pod = await runPod(t, `kt-spdy-pf-${uniq()}`, { command: ['sleep', '3600'] });
  const g = await startNodeGateway();
  t.after(() => g.close());
  const r = await kubectl(g.kubeconfig, ['port-forward', pod, ':8080'], undefined, { env: { ...process.env, KUBECTL_PORT_FORWARD_WEBSOCKETS: 'false' }, timeoutMs: 30_000 });
  t.diagnostic(`kubectl: exit ${r.status}; stderr: ${r.stderr.trim()}`);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /kubetrail records port-forward over WebSocket only/);
  const sink = g.memory!;
  const end = await sessionEnd(sink, lastSession(g));
  assert.equal(end.kind, 'portforward');
  assert.equal(end.pod, pod);
  assert.equal(end.outcome, 'denied');
  assert.equal(end.error, 'STREAM_ERR_SPDY_UNSUPPORTED');
  assert.equal(sink.ofType('session.start').at(-1)?.actor?.username, 'agent-ci');
});
