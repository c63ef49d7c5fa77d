/**
 * Human approval of an exec on the real node: the gateway holds the session
 * before its upstream opens, the approver approves with the CLI, the command
 * then runs in the container (output and exit code reach kubectl) and the
 * session is recorded, with the approval events beside it.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { MemorySink } from '../../core/sinks/memory-sink.ts';
import { ApprovalStore } from '../../core/approvals/store.ts';
import { kubectl } from '../support/env.ts';
import { startTestGateway, type TestGateway } from '../gateway/support.ts';
import { grantAgent, startTestWebhook, uniqueId, type TestWebhook } from '../webhook/support.ts';
import { approvalsCli, approvalPolicyDir, grantApprovers, installCrd, registerForApprovals, serviceAccountUsers, type TestUser } from '../approvals/support.ts';
import { nodeEnv, runPod } from './support.ts';

const id = uniqueId();
const sink = new MemorySink();
const pod = `kt-appr-node-${id}`;
let w: TestWebhook;
let gw: TestGateway;
let approver: TestUser;
const cleanups: (() => Promise<unknown>)[] = [];

before(async () => {
  const env = nodeEnv();
  await installCrd();
  [approver] = (await serviceAccountUsers('agents', [`node-appr-${id}`])) as [TestUser];
  const dir = approvalPolicyDir('node-exec-needs-approval', [{ apiGroups: [''], resources: ['pods/exec'], operations: ['CONNECT'] }], 'false', 'exec needs approval');
  w = await startTestWebhook(sink, { approvals: { kubeconfig: env.ADMIN_KUBECONFIG, namespace: 'agents' } }, { policies: dir });
  gw = await startTestGateway({ sink, approvals: { kubeconfig: env.ADMIN_KUBECONFIG, holdSeconds: 50 } });
  cleanups.push(await grantApprovers(`kt-node-appr-${id}`, [{ kind: 'ServiceAccount', name: approver.name, namespace: 'agents' }]));
  cleanups.push(await grantAgent(env.ADMIN_KUBECONFIG, env.AGENT_KUBECONFIG, 'kube-system', `kt-node-appr-${id}`, [{ apiGroups: [''], resources: ['pods', 'pods/exec'], verbs: ['get', 'list', 'create'] }]));
  cleanups.push(...(await registerForApprovals(id, w, sink, [pod])));
});

after(async () => {
  const env = nodeEnv();
  for (const c of cleanups.reverse()) await c();
  await kubectl(env.ADMIN_KUBECONFIG, ['-n', 'agents', 'delete', 'serviceaccount', approver?.name ?? 'none', '--ignore-not-found']);
  await gw?.close();
  await w?.close();
});

test('an exec held for approval runs once approved, and is recorded', async (t) => {
  const env = nodeEnv();
  await runPod(t, pod, { command: ['sleep', '3600'] }, 'kube-system');
  const kc = gw.kubeconfigFor(env.AGENT_TOKEN);
  const running = kubectl(kc, ['-n', 'kube-system', 'exec', pod, '--', 'sh', '-c', 'echo approved-run; exit 4'], undefined, { timeoutMs: 90_000 });
  const store = new ApprovalStore({ kubeconfig: env.ADMIN_KUBECONFIG });
  let name: string | undefined;
  while (name === undefined) {
    name = (await store.list('kube-system')).find((a) => a.spec.request.pod === pod && (a.status?.phase ?? 'Pending') === 'Pending')?.metadata.name;
    if (name === undefined) await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal((await approvalsCli(approver.kubeconfig, ['approve', name, '-n', 'kube-system'])).status, 0);
  const r = await running;
  assert.match(r.stderr, new RegExp(`kubetrail: waiting for approval ${name}`));
  assert.match(r.stdout, /approved-run/);
  assert.equal(r.status, 4, r.stderr);
  const start = sink.ofType('session.start').find((e) => e.body.pod === pod);
  assert.ok(start, 'the session is recorded');
  const used = sink.events.find((e) => e.type === 'approval.used' && (e.body as { name: string }).name === name);
  assert.equal(used?.correlation?.session, start.correlation?.session, 'the approval names the session it released');
});
