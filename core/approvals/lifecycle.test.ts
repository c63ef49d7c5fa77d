import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkStatusChange, decisionRefusal, effectivePhase, tally, usability, withDecision } from './lifecycle.ts';
import { approvalBodySha256 } from './hash.ts';
import type { ApprovalRequest } from './types.ts';

const T0 = Date.parse('2026-12-07T12:00:00Z');

function ar(over: Partial<ApprovalRequest['spec']> = {}, status?: ApprovalRequest['status']): ApprovalRequest {
  return {
    apiVersion: 'kubetrail.io/v1alpha1',
    kind: 'ApprovalRequest',
    metadata: { name: 'ar-1', namespace: 'agents' },
    spec: {
      requester: { username: 'agent-ci', groups: ['agents'] },
      request: { kind: 'api', verb: 'create', apiGroup: '', apiVersion: 'v1', resource: 'configmaps', namespace: 'agents', name: 'c', bodySha256: 'a'.repeat(64) },
      policy: 'p',
      rule: 'r',
      reason: 'why',
      expiresAt: new Date(T0 + 3600_000).toISOString(),
      approvers: { users: [], groups: ['sre'] },
      minApprovals: 1,
      correlation: {},
      ...over,
    },
    ...(status ? { status } : {}),
  };
}

const alice = { username: 'alice', groups: ['sre'] };
const bob = { username: 'bob', groups: ['sre'] };

test('an unexpired Pending or Approved request past expiresAt is Expired; Denied stays Denied', () => {
  const late = T0 + 3600_000;
  assert.equal(effectivePhase(ar(), T0), 'Pending');
  assert.equal(effectivePhase(ar(), late), 'Expired');
  assert.equal(effectivePhase(ar({}, { phase: 'Approved', decisions: [] }), late), 'Expired');
  assert.equal(effectivePhase(ar({}, { phase: 'Denied', decisions: [] }), late), 'Denied');
  assert.equal(usability(ar({}, { phase: 'Approved', decisions: [] }), late), 'expired');
});

test('minApprovals counts distinct approvers other than the requester; any deny is final', () => {
  const spec = ar({ minApprovals: 2 }).spec;
  const d = (user: string, decision: 'approve' | 'deny' = 'approve') => ({ user, groups: [], decision, time: '' });
  assert.equal(tally(spec, [d('alice')]), 'Pending');
  assert.equal(tally(spec, [d('alice'), d('alice')]), 'Pending');
  assert.equal(tally(spec, [d('alice'), d('agent-ci')]), 'Pending');
  assert.equal(tally(spec, [d('alice'), d('bob')]), 'Approved');
  assert.equal(tally(spec, [d('alice'), d('bob'), d('carol', 'deny')]), 'Denied');
});

test('the requester, a non-approver and a second decision by the same user are refused', () => {
  assert.match(decisionRefusal(ar({ approvers: { users: [], groups: [] } }), { username: 'agent-ci', groups: ['agents'] }, T0) ?? '', /cannot decide on their own request/);
  assert.match(decisionRefusal(ar(), { username: 'mallory', groups: ['dev'] }, T0) ?? '', /not an approver/);
  const once = ar({ minApprovals: 2 }, { phase: 'Pending', decisions: [{ user: 'alice', groups: ['sre'], decision: 'approve', time: '' }] });
  assert.match(decisionRefusal(once, alice, T0) ?? '', /already decided/);
  assert.equal(decisionRefusal(once, bob, T0), undefined);
  assert.match(decisionRefusal(ar({}, { phase: 'Denied', decisions: [] }), bob, T0) ?? '', /Denied: decisions are final/);
  assert.match(decisionRefusal(ar(), bob, T0 + 7200_000) ?? '', /Expired/);
});

test('a status write must append one decision naming the authenticated user, with the phase it gives', () => {
  const old = ar({}, { phase: 'Pending', decisions: [] });
  const good = { ...old, status: withDecision(old, alice, 'approve', 'ok', T0) };
  assert.deepEqual(checkStatusChange(old, good, alice, false, T0).ok, true);
  // A decision naming someone else (written by alice as bob).
  const forged = { ...old, status: withDecision(old, bob, 'approve', undefined, T0) };
  const r1 = checkStatusChange(old, forged, alice, false, T0);
  assert.equal(r1.ok, false);
  assert.match((r1 as { message: string }).message, /must name the user who makes it/);
  // Approved without a decision.
  const jump = { ...old, status: { phase: 'Approved' as const, decisions: [], approvedAt: new Date(T0).toISOString() } };
  assert.equal(checkStatusChange(old, jump, alice, false, T0).ok, false);
  // A decision with the wrong phase.
  const wrong = { ...old, status: { ...withDecision(old, alice, 'approve', undefined, T0), phase: 'Pending' as const } };
  assert.equal(checkStatusChange(old, wrong, alice, false, T0).ok, false);
  // kubetrail's own identity never decides, but may mark used.
  assert.equal(checkStatusChange(old, good, alice, true, T0).ok, false);
  const approved = { ...old, status: withDecision(old, alice, 'approve', undefined, T0) };
  const used = { ...approved, status: { ...approved.status, phase: 'Used' as const, usedAt: new Date(T0).toISOString(), usedCount: 1 } };
  assert.deepEqual(checkStatusChange(approved, used, { username: 'kubetrail', groups: [] }, true, T0), { ok: true, transition: 'use' });
  // Nobody else marks used (which would also burn a one-time approval).
  assert.equal(checkStatusChange(approved, used, bob, false, T0).ok, false);
});

test('a used approval admits again only within its window after approval', () => {
  const approvedAt = new Date(T0).toISOString();
  const once = ar({}, { phase: 'Used', decisions: [], approvedAt, usedCount: 1 });
  const windowed = ar({ window: 600 }, { phase: 'Used', decisions: [], approvedAt, usedCount: 1 });
  assert.equal(usability(once, T0 + 1000), 'used');
  assert.equal(usability(windowed, T0 + 1000), 'usable');
  assert.equal(usability(windowed, T0 + 601_000), 'used');
});

test('the body hash ignores what differs between attempts (uid, resourceVersion, stamp) and nothing else', () => {
  const stamp = ['kubetrail.io/event', 'kubetrail.io/session', 'kubetrail.io/last-modified-by'];
  const a = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c', uid: 'u1', resourceVersion: '1', creationTimestamp: 'x', annotations: { 'kubetrail.io/event': 'e1' } }, data: { k: 'v' } };
  const b = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c', uid: 'u2', resourceVersion: '7', annotations: { 'kubetrail.io/event': 'e2' } }, data: { k: 'v' } };
  const c = { ...b, data: { k: 'v2' } };
  assert.equal(approvalBodySha256(a, stamp), approvalBodySha256(b, stamp));
  assert.notEqual(approvalBodySha256(b, stamp), approvalBodySha256(c, stamp));
});
