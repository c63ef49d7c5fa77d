/**
 * The machine's kubectl through the stream relay (test gateway → fake exec
 * upstream running real processes): exit codes, piped stdin, tty sessions,
 * typed-line guardrails, denials, SPDY refusal, masking, attach.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { kubectl } from '../support/env.ts';
import { compileExecPolicy } from '../../core/policy/exec.ts';
import { compileMaskingPolicy } from '../../core/masking/stream.ts';
import { interactive, recorded, sessionEnd, sessionEvents, startRig } from './helpers.ts';

const execPolicy = (rules: unknown[]) =>
  compileExecPolicy({ apiVersion: 'kubetrail.io/v1alpha1', kind: 'ExecPolicy', metadata: { name: 'agents-exec' }, spec: { match: { namespaces: ['agents'] }, rules } }, 'test');

test('kubectl exec -- sh -c "exit 3" exits 3 with its stdout and stderr, and the session is recorded', async (t) => {
  const rig = await startRig();
  t.after(() => rig.close());
  const r = await kubectl(rig.gw.kubeconfig, ['exec', 'web-1', '--', 'sh', '-c', 'echo out; echo err >&2; exit 3']);
  assert.equal(r.status, 3, r.stderr);
  assert.equal(r.stdout, 'out\n');
  assert.match(r.stderr, /^err\n/);
  const id = rig.gw.sessions.at(-1) as string;
  const end = await sessionEnd(rig.sink, id);
  assert.equal(end.exitCode, 3);
  assert.equal(end.outcome, 'completed');
  assert.deepEqual(end.command, ['sh', '-c', 'echo out; echo err >&2; exit 3']);
  assert.equal(recorded(rig.sink, id, 'stdout').toString(), 'out\n');
  assert.equal(recorded(rig.sink, id, 'stderr').toString(), 'err\n');
  const types = sessionEvents(rig.sink, id).map((e) => e.type);
  assert.equal(types[0], 'session.start');
  assert.equal(types.at(-1), 'session.end');
  // The upstream was reached as the impersonated caller with the session id.
  const req = rig.up.requests.at(-1);
  assert.equal(req?.headers['impersonate-user'], 'agent-ci');
  assert.equal(req?.headers['impersonate-extra-kubetrail.io%2fsession'], id);
  assert.equal(req?.protocol, 'v5.channel.k8s.io');
});

test('piped stdin reaches the command, is recorded, and stdin close ends it', async (t) => {
  const rig = await startRig();
  t.after(() => rig.close());
  const input = 'line one\nline two\n';
  const r = await kubectl(rig.gw.kubeconfig, ['exec', '-i', 'web-1', '--', 'sh', '-c', 'tr a-z A-Z'], input);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, input.toUpperCase());
  const id = rig.gw.sessions.at(-1) as string;
  await sessionEnd(rig.sink, id);
  assert.equal(recorded(rig.sink, id, 'stdin').toString(), input);
  assert.equal(recorded(rig.sink, id, 'stdout').toString(), input.toUpperCase());
});

test('kubectl exec -it: a typed session runs, a blocked typed line is not executed and the user sees why, and printed secrets are masked', async (t) => {
  const masking = compileMaskingPolicy({ apiVersion: 'kubetrail.io/v1alpha1', kind: 'MaskingPolicy', metadata: { name: 'default' }, spec: {} }, 'test');
  const rig = await startRig({
    gateway: {
      masking: [masking],
      execPolicies: [execPolicy([{ name: 'no-typed-rm', on: 'line', expression: 'line.matches("^\\\\s*rm\\\\b")', message: 'deleting files is not allowed here' }])],
    },
  });
  t.after(() => rig.close());
  const dir = mkdtempSync(path.join(tmpdir(), 'kubetrail-tty-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const victim = path.join(dir, 'keep-me');
  writeFileSync(victim, 'precious');
  const kc = rig.gw.kubeconfig;
  const r = await interactive(`kubectl --kubeconfig ${kc} exec -it web-1 -- sh`, [
    { after: /[$#] $/m, send: 'echo typed-$((40+2))\r' },
    // rmX, DEL, then the rest: the rebuilt line is "rm -f <victim>"
    { after: /typed-42/, send: `rmX\x7f -f ${victim}\r` },
    { after: /line blocked/, send: 'echo still-here\r' },
    // The secret only exists in the output: the typed line holds it in two halves.
    { after: /still-here\r?\n/, send: "printf 'AKIA''QQQQQQ3333333333 end\\n'\r" },
    { after: /end\r?\n/, send: 'exit 7\r' },
  ]);
  assert.match(r.output, /typed-42/);
  assert.match(r.output, /kubetrail: line blocked: deleting files is not allowed here \(ExecPolicy agents-exec\/no-typed-rm\)/);
  assert.match(r.output, /still-here/);
  assert.equal(existsSync(victim), true, 'the blocked rm was not executed');
  assert.match(r.output, /\[masked:aws-access-key\] end/);
  assert.doesNotMatch(r.output, /AKIAQQQQQQ3333333333/);
  assert.equal(r.status, 7);
  const id = rig.gw.sessions.at(-1) as string;
  const end = await sessionEnd(rig.sink, id);
  assert.equal(end.tty, true);
  assert.equal(end.exitCode, 7);
  assert.equal(end.linesBlocked, 1);
  assert.ok((end.linesChecked ?? 0) >= 3);
  const decisions = sessionEvents(rig.sink, id).filter((e) => e.type === 'guardrail.decision');
  assert.equal(decisions.length, 1);
  assert.equal((decisions[0]?.body as { rule: string }).rule, 'no-typed-rm');
  // Typed input, kubectl's resize and the output are all in the recording.
  assert.match(recorded(rig.sink, id, 'stdin').toString('latin1'), /echo typed-/);
  assert.ok(recorded(rig.sink, id, 'resize').length > 0, 'resize recorded');
  const out = recorded(rig.sink, id, 'stdout').toString('latin1');
  assert.match(out, /line blocked/);
  assert.match(out, /\[masked:aws-access-key\] end/);
  assert.doesNotMatch(out, /AKIAQQQQQQ3333333333/);
});

test('a command denied by ExecPolicy reaches kubectl as a clear message and a non-zero exit, and never reaches the upstream', async (t) => {
  const rig = await startRig({ gateway: { execPolicies: [execPolicy([{ name: 'no-rm', expression: 'command.exists(c, c == "rm")', message: 'rm is not allowed for agents' }])] } });
  t.after(() => rig.close());
  const before = rig.up.requests.length;
  const r = await kubectl(rig.gw.kubeconfig, ['exec', 'web-1', '--', 'rm', '-rf', '/tmp/whatever']);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /kubetrail: rm is not allowed for agents \(ExecPolicy agents-exec\/no-rm\)/);
  assert.equal(rig.up.requests.length, before, 'no upstream connection was opened');
  const id = rig.gw.sessions.at(-1) as string;
  const end = await sessionEnd(rig.sink, id);
  assert.equal(end.outcome, 'denied');
  const start = rig.sink.events.find((e) => e.type === 'session.start' && e.correlation?.session === id);
  assert.equal((start?.body as { decision?: { allowed: boolean } }).decision?.allowed, false);
  // an allowed command still works on the same gateway
  const ok = await kubectl(rig.gw.kubeconfig, ['exec', 'web-1', '--', 'true']);
  assert.equal(ok.status, 0, ok.stderr);
});

// SPDY exec itself is relayed and recorded (test/node/spdy.test.ts, against the real kubelet);
// under inline masking it is refused before any upstream request.
test('legacy SPDY exec under inline masking is refused with a message naming the kubectl setting, before any upstream request', async (t) => {
  const masking = compileMaskingPolicy({ apiVersion: 'kubetrail.io/v1alpha1', kind: 'MaskingPolicy', metadata: { name: 'default' }, spec: {} }, 'test');
  const rig = await startRig({ gateway: { masking: [masking] } });
  t.after(() => rig.close());
  const r = await kubectl(rig.gw.kubeconfig, ['exec', 'web-1', '--', 'true'], undefined, { env: { ...process.env, KUBECTL_REMOTE_COMMAND_WEBSOCKETS: 'false' } });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /unset KUBECTL_REMOTE_COMMAND_WEBSOCKETS or set it to true/);
  assert.equal(rig.up.requests.length, 0);
  const end = await sessionEnd(rig.sink, rig.gw.sessions.at(-1) as string);
  assert.equal(end.outcome, 'denied');
  assert.equal(end.error, 'STREAM_ERR_SPDY_UNSUPPORTED');
});

test('an upstream refusal (RBAC) reaches kubectl as the API server said it', async (t) => {
  const rig = await startRig();
  t.after(() => rig.close());
  const r = await kubectl(rig.gw.kubeconfig, ['exec', 'forbidden-pod', '--', 'true']);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /forbidden/);
  const end = await sessionEnd(rig.sink, rig.gw.sessions.at(-1) as string);
  assert.equal(end.outcome, 'error');
});

test('a secret split across two frames is masked for the client and in the recording', async (t) => {
  const masking = compileMaskingPolicy({ apiVersion: 'kubetrail.io/v1alpha1', kind: 'MaskingPolicy', metadata: { name: 'default' }, spec: {} }, 'test');
  // Generous hold so the split always lands inside it on a busy machine.
  const rig = await startRig({ gateway: { masking: [masking], limits: { maskHoldMs: 3000 } } });
  t.after(() => rig.close());
  const head = 'AKIA' + 'Q'.repeat(6);
  const tail = '3'.repeat(10);
  const secret = head + tail;
  const r = await kubectl(rig.gw.kubeconfig, ['exec', 'web-1', '--', 'sh', '-c', `printf 'key=${head}'; sleep 0.3; printf '${tail} done\\n'`]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, 'key=[masked:aws-access-key] done\n');
  const id = rig.gw.sessions.at(-1) as string;
  const end = await sessionEnd(rig.sink, id);
  assert.deepEqual(end.masked, { 'aws-access-key': 1 });
  assert.equal(recorded(rig.sink, id, 'stdout').toString(), 'key=[masked:aws-access-key] done\n');
  assert.ok(!rig.sink.lines.some((l) => l.includes(secret) || l.includes(Buffer.from(secret).toString('base64'))), 'no event holds the secret');
});

test('kubectl attach relays stdin and output of the main process', async (t) => {
  const rig = await startRig({ upstream: { attachCommand: ['sh', '-c', 'while read l; do echo "got:$l"; done'] } });
  t.after(() => rig.close());
  const r = await kubectl(rig.gw.kubeconfig, ['attach', '-i', 'web-1', '-c', 'app'], 'hello\nworld\n');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /got:hello\ngot:world\n/);
  const id = rig.gw.sessions.at(-1) as string;
  const end = await sessionEnd(rig.sink, id);
  assert.equal(end.kind, 'attach');
  assert.equal(recorded(rig.sink, id, 'stdin').toString(), 'hello\nworld\n');
});
