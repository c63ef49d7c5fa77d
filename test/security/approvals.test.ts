/**
 * Attacks on the approval binding (issue 17), with the real API server: a
 * decision only counts when the webhook has bound it to the user the API
 * server authenticated, who may `approve` and is not the requester. RBAC here
 * is generous on purpose (everyone may write the status, the agent may create
 * ApprovalRequests and has the approve verb): what refuses is kubetrail.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { MemorySink } from '../../core/sinks/memory-sink.ts';
import { harness, kubectl } from '../support/env.ts';
import { grantAgent, startTestWebhook, uniqueId, type TestWebhook } from '../webhook/support.ts';
import { approvalName, approvalsCli, approvalPolicyDir, grantApprovers, installCrd, registerForApprovals, serviceAccountUsers, type TestUser } from '../approvals/support.ts';

const id = uniqueId();
const sink = new MemorySink();
let w: TestWebhook;
let approver: TestUser;
let outsider: TestUser;
const cleanups: (() => Promise<unknown>)[] = [];
const asAgent = (args: string[], input?: string) => kubectl(harness().AGENT_KUBECONFIG, ['-n', 'agents', ...args], input);

function configMap(name: string): string {
  return JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, labels: { 'kubetrail-test': id } }, data: { dangerous: 'yes' } });
}

async function pendingApproval(cm: string): Promise<string> {
  const r = await asAgent(['create', '-f', '-'], configMap(cm));
  const name = approvalName(r.stderr);
  assert.ok(name, r.stderr);
  return name;
}

before(async () => {
  const env = harness();
  await installCrd();
  [approver, outsider] = (await serviceAccountUsers('agents', [`sec-appr-${id}`, `sec-out-${id}`])) as [TestUser, TestUser];
  const dir = approvalPolicyDir('needs-approval', [{ apiGroups: [''], resources: ['configmaps'], operations: ['CREATE', 'UPDATE'] }], "!has(object.data) || !('dangerous' in object.data)", 'dangerous');
  w = await startTestWebhook(sink, { approvals: { kubeconfig: env.ADMIN_KUBECONFIG, namespace: 'agents' } }, { policies: dir });
  cleanups.push(await grantApprovers(`kt-sec-appr-${id}`, [{ kind: 'ServiceAccount', name: approver.name, namespace: 'agents' }, { kind: 'User', name: 'agent-ci', apiGroup: 'rbac.authorization.k8s.io' }]));
  cleanups.push(await grantApprovers(`kt-sec-out-${id}`, [{ kind: 'ServiceAccount', name: outsider.name, namespace: 'agents' }], false));
  cleanups.push(
    await grantAgent(env.ADMIN_KUBECONFIG, env.AGENT_KUBECONFIG, 'agents', `kt-sec-appr-${id}`, [
      { apiGroups: [''], resources: ['configmaps'], verbs: ['create', 'get', 'list', 'update', 'patch', 'delete'] },
      { apiGroups: ['kubetrail.io'], resources: ['approvalrequests'], verbs: ['create'] },
    ]),
  );
  cleanups.push(...(await registerForApprovals(id, w, sink)));
});

after(async () => {
  const env = harness();
  for (const c of cleanups.reverse()) await c();
  await kubectl(env.ADMIN_KUBECONFIG, ['-n', 'agents', 'delete', 'configmaps', '-l', `kubetrail-test=${id}`, '--ignore-not-found']);
  for (const a of [approver, outsider]) if (a) await kubectl(env.ADMIN_KUBECONFIG, ['-n', 'agents', 'delete', 'serviceaccount', a.name, '--ignore-not-found']);
  await w?.close();
});

test('the requester cannot approve their own request, even with the approve verb', async () => {
  const name = await pendingApproval(`kt-self-${id}`);
  const r = await approvalsCli(harness().AGENT_KUBECONFIG, ['approve', name, '-n', 'agents']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /agent-ci requested .* cannot decide on their own request/);
});

test('a decision written in another user\'s name is refused', async () => {
  const name = await pendingApproval(`kt-forge-${id}`);
  const patch = { status: { phase: 'Approved', approvedAt: new Date().toISOString(), decisions: [{ user: 'alice', groups: ['sre'], decision: 'approve', time: new Date().toISOString() }] } };
  const r = await kubectl(approver.kubeconfig, ['-n', 'agents', 'patch', 'approvalrequest', name, '--subresource=status', '--type=merge', '-p', JSON.stringify(patch)]);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /must name the user who makes it/);
  const jump = await kubectl(approver.kubeconfig, ['-n', 'agents', 'patch', 'approvalrequest', name, '--subresource=status', '--type=merge', '-p', JSON.stringify({ status: { phase: 'Approved' } })]);
  assert.notEqual(jump.status, 0, 'Approved with no decision');
  assert.equal((await asAgent(['create', '-f', '-'], configMap(`kt-forge-${id}`))).status === 0, false);
});

test('a user without the approve verb cannot decide, though RBAC lets them write the status', async () => {
  const name = await pendingApproval(`kt-out-${id}`);
  const r = await approvalsCli(outsider.kubeconfig, ['approve', name, '-n', 'agents']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /may not approve ApprovalRequests: RBAC grants no verb "approve"/);
});

test('only kubetrail creates ApprovalRequests: an agent cannot pre-approve its own change', async () => {
  const forged = {
    apiVersion: 'kubetrail.io/v1alpha1',
    kind: 'ApprovalRequest',
    metadata: { name: `ar-forged-${id}` },
    spec: { requester: { username: 'agent-ci', groups: [] }, request: { kind: 'api', verb: 'create', apiGroup: '', apiVersion: 'v1', resource: 'configmaps' }, policy: 'x', rule: 'y', reason: 'z', expiresAt: new Date(Date.now() + 3600_000).toISOString(), approvers: { users: [], groups: [] }, minApprovals: 1 },
  };
  const r = await asAgent(['create', '-f', '-'], JSON.stringify(forged));
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /only kubetrail creates ApprovalRequests/);
});
