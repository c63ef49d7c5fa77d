/**
 * ExecPolicy `action: requireApproval` on the real node: the gateway itself
 * creates the ApprovalRequest (kind exec: pod, container, command; the
 * policy and rule; the requester) and holds the session before its upstream
 * opens; an approver approves with the CLI while it is held; the command then
 * runs in the container and the session is recorded with the approval events
 * beside it. A denied one ends with the Status naming it and never runs.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { MemorySink } from '../../core/sinks/memory-sink.ts';
import { ApprovalStore } from '../../core/approvals/store.ts';
import { compileExecPolicy } from '../../core/policy/exec.ts';
import { kubectl } from '../support/env.ts';
import { startTestWebhook, uniqueId, type TestWebhook } from '../webhook/support.ts';
import { approvalsCli, approverRbac, applyAsAdmin, installCrd, registerApprovalWebhook, serviceAccountUsers, type TestUser } from '../approvals/support.ts';
import { nodeEnv, runPod, startNodeGateway, type NodeGateway } from './support.ts';
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
  await applyAsAdmin(approverRbac(`kt-xp-appr-${id}`, [{ kind: 'ServiceAccount', name: approver.name, namespace: 'agents' }]));
  cleanups.push(() => kubectl(env.ADMIN_KUBECONFIG, ['delete', `clusterrole/kt-xp-appr-${id}`, `clusterrolebinding/kt-xp-appr-${id}`, '--ignore-not-found']));
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
