/**
 * ExecPolicy `action: requireApproval` on the real node: the gateway itself
 * creates the ApprovalRequest (kind exec: pod, container, command; the
 * policy and rule; the requester) and holds the session before its upstream
 * opens; an approver approves with the CLI while it is held; the command then
 * runs in the container and the session is recorded with the approval events
 * beside it. A denied one ends with the Status naming it and never runs. A
 * typed line whose `on: line` rule requires approval is held at its Enter in
 * a real busybox shell under `kubectl exec -it`: approved, it runs as typed
 * and the keys typed meanwhile follow it; denied, it is cleared and never runs.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { MemorySink } from '../../core/sinks/memory-sink.ts';
import { ApprovalStore } from '../../core/approvals/store.ts';
import { compileExecPolicy } from '../../core/policy/exec.ts';
import { kubectl } from '../support/env.ts';
import { startTestWebhook, uniqueId, type TestWebhook } from '../webhook/support.ts';
import { approvalsCli, grantApprovers, installCrd, registerApprovalWebhook, serviceAccountUsers, type TestUser } from '../approvals/support.ts';
import { nodeEnv, runPod, startNodeGateway, type NodeGateway } from './support.ts';
import { interactive, sessionEnd } from '../exec/helpers.ts';
import type { ApprovalRequest } from '../../core/approvals/types.ts';

const id = uniqueId();
const webhookSink = new MemorySink();
let w: TestWebhook;
let g: NodeGateway;
let approver: TestUser;
const cleanups: (() => Promise<unknown>)[] = [];

const policy = compileExecPolicy(
  {
    apiVersion: 'kubetrail.io/v1alpha1',
    kind: 'ExecPolicy',
    metadata: { name: 'agents-exec-approval' },
    spec: {
      match: { namespaces: ['agents'] },
      approval: 'platform-oncall',
      rules: [{ name: 'sh-needs-approval', action: 'requireApproval', expression: 'command.size() > 0 && command[0] == "sh"', message: 'a shell needs approval' }],
    },
  },
  'test',
);

before(async () => {
  const env = nodeEnv();
  await installCrd();
  [approver] = (await serviceAccountUsers('agents', [`xp-appr-${id}`])) as [TestUser];
  // The webhook reviews every decision (self-approval, RBAC); the gateway creates the requests as the admin, a service user.
  w = await startTestWebhook(webhookSink, { approvals: { kubeconfig: env.ADMIN_KUBECONFIG, namespace: 'agents' } });
  cleanups.push(await registerApprovalWebhook(id, w.url, w.pki.caBundle));
  cleanups.push(await grantApprovers(`kt-xp-appr-${id}`, [{ kind: 'ServiceAccount', name: approver.name, namespace: 'agents' }]));
  g = await startNodeGateway({ execPolicies: [policy], approvals: { kubeconfig: env.ADMIN_KUBECONFIG, namespace: 'agents', holdSeconds: 50 } });
});

after(async () => {
  const env = nodeEnv();
  for (const c of cleanups.reverse()) await c();
  await kubectl(env.ADMIN_KUBECONFIG, ['-n', 'agents', 'delete', 'serviceaccount', approver?.name ?? 'none', '--ignore-not-found']);
  await g?.close();
  await w?.close();
});

async function pendingFor(store: ApprovalStore, pod: string): Promise<ApprovalRequest> {
  for (;;) {
    const ar = (await store.list('agents')).find((a) => a.spec.request.pod === pod && (a.status?.phase ?? 'Pending') === 'Pending');
    if (ar !== undefined) return ar;
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('an exec an ExecPolicy requireApproval rule holds runs once approved through the CLI, and is recorded', async (t) => {
  const env = nodeEnv();
  const pod = await runPod(t, `kt-xp-appr-${id}`, { command: ['sleep', '3600'] });
  const running = kubectl(g.kubeconfig, ['exec', pod, '--', 'sh', '-c', 'echo approved-run; exit 4'], undefined, { timeoutMs: 90_000 });
  const store = new ApprovalStore({ kubeconfig: env.ADMIN_KUBECONFIG });
  const ar = await pendingFor(store, pod);
  // What the gateway wrote: kind exec with the command, the policy and rule, the requester.
  assert.equal(ar.spec.request.kind, 'exec');
  assert.deepEqual(ar.spec.request.command, ['sh', '-c', 'echo approved-run; exit 4']);
  assert.equal(ar.spec.policy, 'agents-exec-approval');
  assert.equal(ar.spec.rule, 'sh-needs-approval');
  assert.equal(ar.spec.requester.username, 'agent-ci');
  assert.ok(ar.spec.correlation.sessionId, 'the ApprovalRequest names the session it holds');
  assert.equal((await approvalsCli(approver.kubeconfig, ['approve', ar.metadata.name, '-n', 'agents'])).status, 0);
  const r = await running;
  assert.match(r.stderr, new RegExp(`kubetrail: waiting for approval ${ar.metadata.name}`));
  assert.match(r.stdout, /approved-run/);
  assert.equal(r.status, 4, r.stderr);
  const sink = g.memory as MemorySink;
  const start = sink.ofType('session.start').find((e) => e.body.pod === pod);
  assert.ok(start, 'the session is recorded');
  assert.equal(start.correlation?.session, ar.spec.correlation.sessionId);
  assert.ok(sink.events.some((e) => e.type === 'approval.requested' && (e.body as { name: string }).name === ar.metadata.name), 'approval.requested');
  const used = sink.events.find((e) => e.type === 'approval.used' && (e.body as { name: string }).name === ar.metadata.name);
  assert.equal(used?.correlation?.session, start.correlation?.session, 'approval.used names the session it released');
  assert.equal((await store.get('agents', ar.metadata.name)).status?.phase, 'Used');
});

test('a denied exec approval ends the session with the Status naming it; nothing runs', async (t) => {
  const env = nodeEnv();
  const pod = await runPod(t, `kt-xp-deny-${id}`, { command: ['sleep', '3600'] });
  const running = kubectl(g.kubeconfig, ['exec', pod, '--', 'sh', '-c', 'echo must-not-run'], undefined, { timeoutMs: 90_000 });
  const store = new ApprovalStore({ kubeconfig: env.ADMIN_KUBECONFIG });
  const ar = await pendingFor(store, pod);
  assert.equal((await approvalsCli(approver.kubeconfig, ['deny', ar.metadata.name, '-n', 'agents'])).status, 0);
  const r = await running;
  assert.notEqual(r.status, 0);
  assert.doesNotMatch(r.stdout, /must-not-run/);
  assert.match(r.stderr, new RegExp(`ApprovalRequest agents/${ar.metadata.name} is Denied`));
});

const linePolicy = compileExecPolicy(
  {
    apiVersion: 'kubetrail.io/v1alpha1',
    kind: 'ExecPolicy',
    metadata: { name: 'agents-line-approval' },
    spec: {
      match: { namespaces: ['agents'] },
      approval: 'platform-oncall',
      rules: [{ name: 'touch-needs-approval', on: 'line', action: 'requireApproval', expression: 'line.startsWith("touch ")', message: 'touching files needs approval' }],
    },
  },
  'test',
);

test('a typed line a requireApproval line rule holds runs as typed once approved, keys typed meanwhile follow it; a denied line is cleared and never runs', async (t) => {
  const env = nodeEnv();
  const pod = await runPod(t, `kt-line-appr-${id}`, { command: ['sleep', '3600'] });
  const lg = await startNodeGateway({ execPolicies: [linePolicy], approvals: { kubeconfig: env.ADMIN_KUBECONFIG, namespace: 'agents', holdSeconds: 50 } });
  t.after(() => lg.close());
  const store = new ApprovalStore({ kubeconfig: env.ADMIN_KUBECONFIG });
  // The approver: approves the line that touches approved-line, denies the other; a moment after each appears,
  // so the keys typed during the wait are typed while the line is held.
  const seen: ApprovalRequest[] = [];
  let stop = false;
  const approverDone = (async () => {
    while (!stop) {
      for (const ar of await store.list('agents')) {
        if (ar.spec.request.kind !== 'line' || ar.spec.request.pod !== pod || seen.some((s) => s.metadata.name === ar.metadata.name)) continue;
        seen.push(ar);
        await new Promise((r) => setTimeout(r, 1500));
        const verb = ar.spec.request.line?.includes('approved-line') ? 'approve' : 'deny';
        assert.equal((await approvalsCli(approver.kubeconfig, [verb, ar.metadata.name, '-n', 'agents'])).status, 0);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  })();
  const r = await interactive(
    `kubectl --kubeconfig ${lg.kubeconfig} exec -it ${pod} -- sh`,
    [
      { after: /[$#] (\x1b\[6n)?$/, send: 'touch /tmp/approved-line && echo line-$((40+2))\r' },
      { after: /waiting for approval ar-/, send: 'echo typed-ahead-$((1+1))\r' },
      { after: /typed-ahead-2\r?\n/, send: 'touch /tmp/denied-line\r' },
      { after: /line blocked: ApprovalRequest agents\/ar-\S+ is Denied/, send: 'ls /tmp/approved-line && (ls /tmp/denied-line || echo not-there)\r' },
      { after: /not-there\r?\n/, send: 'exit 5\r' },
    ],
    { timeoutMs: 150_000 },
  );
  stop = true;
  await approverDone;
  assert.match(r.output, /kubetrail: waiting for approval ar-\S+ \(an approver runs: kubetrail approvals approve ar-\S+ -n agents\); ctrl-c gives up/);
  assert.match(r.output, /line-42/);
  assert.ok(r.output.indexOf('line-42') < r.output.indexOf('typed-ahead-2'), 'the approved line ran before the keys typed during the wait');
  assert.match(r.output, /not-there/, 'the denied line did not run');
  assert.equal(r.status, 5, r.output);
  const approved = seen.find((a) => a.spec.request.line?.includes('approved-line'));
  assert.ok(approved, 'an ApprovalRequest of kind line');
  assert.equal(approved.spec.request.line, 'touch /tmp/approved-line && echo line-$((40+2))');
  assert.deepEqual(approved.spec.request.command, ['sh']);
  assert.equal(approved.spec.rule, 'touch-needs-approval');
  assert.equal(approved.spec.requester.username, 'agent-ci');
  assert.equal((await store.get('agents', approved.metadata.name)).status?.phase, 'Used');
  const sink = lg.memory as MemorySink;
  const sid = approved.spec.correlation.sessionId as string;
  const end = await sessionEnd(sink, sid);
  assert.equal(end.linesBlocked, 1);
  assert.equal(end.exitCode, 5);
  const used = sink.events.find((e) => e.type === 'approval.used' && (e.body as { name: string }).name === approved.metadata.name);
  assert.equal(used?.correlation?.session, sid, 'approval.used names the session');
  const requested = sink.events.filter((e) => e.type === 'approval.requested' && seen.some((a) => a.metadata.name === (e.body as { name: string }).name));
  assert.equal(requested.length, 2, 'each held line has its approval.requested');
  assert.ok(requested.every((e) => e.correlation?.session === sid));
});
