/**
 * Eager expiry against the real API server: a Pending ApprovalRequest past
 * its expiry becomes Expired and approval.expired is emitted by the webhook's
 * sweep, with nobody reading or retrying it; two sweeping webhooks agree
 * (exactly one approval.expired).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { MemorySink } from '../../core/sinks/memory-sink.ts';
import { ApprovalStore } from '../../core/approvals/store.ts';
import { harness } from '../support/env.ts';
import { waitFor } from '../support/wait.ts';
import { startTestWebhook, uniqueId, type TestWebhook } from '../webhook/support.ts';
import { installCrd } from './support.ts';

const id = uniqueId();
const sinks = [new MemorySink(), new MemorySink()];
const hooks: TestWebhook[] = [];

before(async () => {
  await installCrd();
  for (const s of sinks) hooks.push(await startTestWebhook(s, { approvals: { kubeconfig: harness().ADMIN_KUBECONFIG, namespace: 'agents', expirySweepSeconds: 1 } }));
});

after(async () => {
  for (const h of hooks) await h.close();
});

test('a Pending ApprovalRequest past its expiry is Expired with approval.expired, without a reader; two replicas emit it once', async () => {
  const store = new ApprovalStore({ kubeconfig: harness().ADMIN_KUBECONFIG });
  const name = `ar-${id.padEnd(10, '0').slice(0, 10)}-expiry`;
  await store.create('agents', name, `expiry-${id}`, {
    requester: { username: 'agent-ci', groups: [] },
    request: { kind: 'api', verb: 'create', apiGroup: '', apiVersion: 'v1', resource: 'configmaps', namespace: 'agents', name: `cm-${id}` },
    policy: 'p',
    rule: 'r',
    reason: 'expiry test',
    expiresAt: new Date(Date.now() + 2000).toISOString(),
    approvers: { users: [], groups: [] },
    minApprovals: 1,
    correlation: {},
  });
  await waitFor(async () => (await store.get('agents', name)).status?.phase === 'Expired', 'the sweep marks it Expired', { timeoutMs: 60_000, intervalMs: 200 });
  const expired = () => sinks.flatMap((s) => s.events.filter((e) => e.type === 'approval.expired' && (e.body as { name: string }).name === name));
  await waitFor(() => expired().length > 0, 'approval.expired', { timeoutMs: 30_000 });
  assert.equal(expired().length, 1, 'exactly one replica expired it');
});
