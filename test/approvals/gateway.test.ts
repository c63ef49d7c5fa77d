/**
 * Human approval through the gateway, with the real API server and kubectl:
 * the gateway holds a write the webhook says needs approval and forwards it
 * the moment it is approved (kubectl succeeds without a retry); with no hold
 * left it answers a 403 naming the ApprovalRequest, and the same kubectl
 * command succeeds once approved. Two gateway processes share the state in
 * the API server: held by one, approved through the other, released.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { MemorySink } from '../../core/sinks/memory-sink.ts';
import { ApprovalStore } from '../../core/approvals/store.ts';
import { harness, kubectl } from '../support/env.ts';
import { startTestGateway, type TestGateway } from '../gateway/support.ts';
import { grantAgent, startTestWebhook, uniqueId, type TestWebhook } from '../webhook/support.ts';
import { approvalName, approvalsCli, approvalPolicyDir, grantApprovers, installCrd, registerForApprovals, serviceAccountUsers, type TestUser } from './support.ts';

const id = uniqueId();
const sink = new MemorySink();
let w: TestWebhook;
let holding: TestGateway;
let instant: TestGateway;
let approver: TestUser;
let approverToken = '';
const cleanups: (() => Promise<unknown>)[] = [];

function configMap(name: string): string {
  return JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, labels: { 'kubetrail-test': id } }, data: { dangerous: 'yes' } });
}

/** Resolves the name of the first Pending ApprovalRequest for ConfigMap `cm`, waiting (by watch-free polling of a consistent list) until it exists. */
async function pendingFor(cm: string): Promise<string> {
  const store = new ApprovalStore({ kubeconfig: harness().ADMIN_KUBECONFIG });
  for (;;) {
    const found = (await store.list('agents')).find((a) => a.spec.request.name === cm && (a.status?.phase ?? 'Pending') === 'Pending');
    if (found) return found.metadata.name;
    await new Promise((r) => setTimeout(r, 100));
  }
}

before(async () => {
  const env = harness();
  await installCrd();
  [approver] = (await serviceAccountUsers('agents', [`gw-appr-${id}`])) as [TestUser];
  approverToken = (JSON.parse((await kubectl(env.ADMIN_KUBECONFIG, ['config', 'view', '--raw', '-o', 'json', '--kubeconfig', approver.kubeconfig])).stdout) as { users: { user: { token: string } }[] }).users[0]!.user.token;
  const dir = approvalPolicyDir('gw-needs-approval', [{ apiGroups: [''], resources: ['configmaps'], operations: ['CREATE', 'UPDATE'] }], "!has(object.data) || !('dangerous' in object.data)", 'dangerous');
  w = await startTestWebhook(sink, { approvals: { kubeconfig: env.ADMIN_KUBECONFIG, namespace: 'agents' } }, { policies: dir });
  holding = await startTestGateway({ approvals: { kubeconfig: env.ADMIN_KUBECONFIG, holdSeconds: 50 } });
  instant = await startTestGateway({ approvals: { kubeconfig: env.ADMIN_KUBECONFIG, holdSeconds: 0 } });
  cleanups.push(await grantApprovers(`kt-gw-appr-${id}`, [{ kind: 'ServiceAccount', name: approver.name, namespace: 'agents' }]));
  cleanups.push(await grantAgent(env.ADMIN_KUBECONFIG, env.AGENT_KUBECONFIG, 'agents', `kt-gw-appr-${id}`, [{ apiGroups: [''], resources: ['configmaps'], verbs: ['create', 'get', 'list', 'update', 'patch', 'delete'] }]));
  cleanups.push(...(await registerForApprovals(id, w, sink)));
});

after(async () => {
  const env = harness();
  for (const c of cleanups.reverse()) await c();
  await kubectl(env.ADMIN_KUBECONFIG, ['-n', 'agents', 'delete', 'configmaps', '-l', `kubetrail-test=${id}`, '--ignore-not-found']);
  if (approver) await kubectl(env.ADMIN_KUBECONFIG, ['-n', 'agents', 'delete', 'serviceaccount', approver.name, '--ignore-not-found']);
  await holding?.close();
  await instant?.close();
  await w?.close();
});

test('held by one gateway, approved through the other: kubectl succeeds without a retry, one ApprovalRequest', async () => {
  const env = harness();
  const cm = `kt-held-${id}`;
  const agent = holding.kubeconfigFor(env.AGENT_TOKEN, 'agents');
  const create = kubectl(agent, ['create', '-f', '-'], configMap(cm));
  const name = await pendingFor(cm);
  // The approver's CLI goes through the OTHER gateway (impersonated there as the approver).
  const ok = await approvalsCli(instant.kubeconfigFor(approverToken), ['approve', name, '-n', 'agents']);
  assert.equal(ok.status, 0, ok.stderr);
  const r = await create;
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`configmap/${cm} created`));
  const all = await new ApprovalStore({ kubeconfig: env.ADMIN_KUBECONFIG }).list('agents');
  const mine = all.filter((a) => a.spec.request.name === cm);
  assert.equal(mine.length, 1, 'one ApprovalRequest for the request, shared by the gateway and the webhook');
  assert.equal(mine[0]!.status?.phase, 'Used');
  assert.ok(mine[0]!.spec.correlation.sessionId, 'the ApprovalRequest names the gateway session');
  const decided = sink.events.find((e) => e.type === 'approval.decided' && (e.body as { name: string }).name === name);
  assert.match(decided?.actor?.username ?? '', /gw-appr-/);
});

test('not approved in time: a 403 naming the ApprovalRequest and the commands; approved, the same command succeeds once', async () => {
  const env = harness();
  const cm = `kt-late-${id}`;
  const agent = instant.kubeconfigFor(env.AGENT_TOKEN, 'agents');
  const first = await kubectl(agent, ['create', '-f', '-'], configMap(cm));
  assert.notEqual(first.status, 0);
  assert.match(first.stderr, /Forbidden/);
  const name = /ApprovalRequest agents\/(ar-[0-9a-f]{10}-[0-9a-z]+)/.exec(first.stderr)?.[1];
  assert.ok(name, first.stderr);
  assert.match(first.stderr, new RegExp(`kubetrail approvals wait ${name} -n agents`));
  assert.match(first.stderr, new RegExp(`kubetrail approvals approve ${name} -n agents`));
  assert.equal((await approvalsCli(approver.kubeconfig, ['approve', name])).status, 0);
  const again = await kubectl(agent, ['create', '-f', '-'], configMap(cm));
  assert.equal(again.status, 0, again.stderr);
  await kubectl(env.ADMIN_KUBECONFIG, ['-n', 'agents', 'delete', 'configmap', cm]);
  const third = await kubectl(agent, ['create', '-f', '-'], configMap(cm));
  assert.notEqual(third.status, 0, 'the approval was used');
  assert.notEqual(approvalName(third.stderr) ?? /ApprovalRequest agents\/(ar-\S+?) /.exec(third.stderr)?.[1], name);
});
