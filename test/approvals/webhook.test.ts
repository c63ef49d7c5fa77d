/**
 * Human approval straight to the API server (no gateway): the real
 * kube-apiserver calls the webhook, which denies a requireApproval write with
 * the ApprovalRequest's name; approvers are real ServiceAccounts deciding with
 * `kubetrail approvals`; the retry is admitted once (or within a window).
 * The attacks on the decision binding (self-approval, a decision written in
 * someone else's name, no `approve` verb) are in test/security/approvals.test.ts.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { Registry } from 'prom-client';
import { loadConfig } from '../../core/config.ts';
import { createEventPipeline, localLogDir } from '../../core/pipeline.ts';
import { harness, kubectl } from '../support/env.ts';
import { grantAgent, policiesDir, quietLogger, startTestWebhook, uniqueId, type TestWebhook } from '../webhook/support.ts';
import { approvalName, approvalsCli, grantApprovers, installCrd, kubetrailCli, RecordingSink, registerForApprovals, serviceAccountUsers, type TestUser } from './support.ts';

const id = uniqueId();
// Events go to a real local log (chained, signed) so `kubetrail events` and `kubetrail verify` can read them.
const dataDir = mkdtempSync(path.join(tmpdir(), 'kt-approvals-log-'));
let sink: RecordingSink;
let w: TestWebhook;
let approvers: TestUser[] = [];
const cleanups: (() => Promise<unknown>)[] = [];

/** A GuardrailPolicy that needs approval for this test's ConfigMaps carrying data.dangerous, with `extra` spec fields, for those labelled `variant`. */
function policy(name: string, variant: string, extra: Record<string, unknown>): string {
  return JSON.stringify({
    apiVersion: 'kubetrail.io/v1alpha1',
    kind: 'GuardrailPolicy',
    metadata: { name },
    spec: {
      action: 'requireApproval',
      approval: 'platform-oncall',
      match: { resourceRules: [{ apiGroups: [''], resources: ['configmaps'], operations: ['CREATE', 'UPDATE'] }] },
      matchConditions: [{ name: 'variant', expression: `has(object.metadata.labels) && object.metadata.labels[?'variant'].orValue('') == '${variant}'` }],
      validations: [{ name: 'dangerous', expression: "!has(object.data) || !('dangerous' in object.data)", message: 'a dangerous setting needs a second pair of eyes' }],
      ...extra,
    },
  });
}

function configMap(name: string, variant: string, value = 'yes'): string {
  return JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, labels: { 'kubetrail-test': id, variant } }, data: { dangerous: value } });
}

const asAgent = (args: string[], input?: string) => kubectl(harness().AGENT_KUBECONFIG, ['-n', 'agents', ...args], input);
const deleteCm = (name: string) => kubectl(harness().ADMIN_KUBECONFIG, ['-n', 'agents', 'delete', 'configmap', name, '--ignore-not-found']);

before(async () => {
  const env = harness();
  sink = new RecordingSink(await createEventPipeline({ config: loadConfig({ document: { cluster: 'test', dataDir } }), log: quietLogger(), registry: new Registry(), component: 'webhook', instance: `approvals-${id}` }));
  await installCrd();
  approvers = await serviceAccountUsers('agents', [`appr1-${id}`, `appr2-${id}`]);
  const dir = policiesDir(false);
  const users = approvers.map((a) => a.username);
  writeFileSync(path.join(dir, 'once.yaml'), policy('approve-once', 'once', { approvers: { users } }));
  writeFileSync(path.join(dir, 'window.yaml'), policy('approve-window', 'window', { approvers: { users }, approvalWindowSeconds: 600 }));
  writeFileSync(path.join(dir, 'two.yaml'), policy('approve-two', 'two', { approvers: { users }, minApprovals: 2 }));
  w = await startTestWebhook(sink, { approvals: { kubeconfig: env.ADMIN_KUBECONFIG, namespace: 'agents' } }, { policies: dir });
  cleanups.push(await grantApprovers(`kt-approvers-${id}`, approvers.map((a) => ({ kind: 'ServiceAccount', name: a.name, namespace: 'agents' }))));
  cleanups.push(await grantAgent(env.ADMIN_KUBECONFIG, env.AGENT_KUBECONFIG, 'agents', `kt-appr-${id}`, [{ apiGroups: [''], resources: ['configmaps'], verbs: ['create', 'get', 'list', 'update', 'patch', 'delete'] }]));
  cleanups.push(...(await registerForApprovals(id, w, sink)));
});

after(async () => {
  const env = harness();
  for (const c of cleanups.reverse()) await c();
  await kubectl(env.ADMIN_KUBECONFIG, ['-n', 'agents', 'delete', 'configmaps', '-l', `kubetrail-test=${id}`, '--ignore-not-found']);
  for (const a of approvers) await kubectl(env.ADMIN_KUBECONFIG, ['-n', 'agents', 'delete', 'serviceaccount', a.name, '--ignore-not-found']);
  await w?.close();
  await sink?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

test('direct to the API server: denied with the name, the same record on a retry, approved, admitted once, a second retry needs a new approval', async () => {
  const cm = `kt-once-${id}`;
  const first = await asAgent(['create', '-f', '-'], configMap(cm, 'once'));
  assert.notEqual(first.status, 0);
  assert.match(first.stderr, /requires approval/);
  const name = approvalName(first.stderr);
  assert.ok(name, first.stderr);
  assert.match(first.stderr, new RegExp(`kubetrail approvals wait ${name} -n agents`));
  const again = await asAgent(['create', '-f', '-'], configMap(cm, 'once'));
  assert.equal(approvalName(again.stderr), name, 'a retry while pending names the same ApprovalRequest');

  const ok = await approvalsCli(approvers[0]!.kubeconfig, ['approve', name, '-n', 'agents', '--comment', 'looks fine']);
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /now Approved/);
  const waited = await approvalsCli(approvers[1]!.kubeconfig, ['wait', name, '-n', 'agents', '--timeout', '30s']);
  assert.equal(waited.status, 0, waited.stderr);

  const admitted = await asAgent(['create', '-f', '-'], configMap(cm, 'once'));
  assert.equal(admitted.status, 0, admitted.stderr);
  const shown = await approvalsCli(approvers[0]!.kubeconfig, ['show', name, '-o', 'json']);
  const ar = JSON.parse(shown.stdout);
  assert.equal(ar.status.phase, 'Used');
  assert.equal(ar.status.decisions[0].user, approvers[0]!.username);
  assert.equal(ar.spec.requester.username, 'agent-ci');
  assert.match(ar.spec.request.bodySha256, /^[0-9a-f]{64}$/);

  await deleteCm(cm);
  const second = await asAgent(['create', '-f', '-'], configMap(cm, 'once'));
  assert.notEqual(second.status, 0, 'a used approval does not admit the request again');
  const next = approvalName(second.stderr);
  assert.ok(next && next !== name, second.stderr);

  const types = sink.events.filter((e) => e.type.startsWith('approval.') && (e.body as { name?: string }).name === name).map((e) => e.type);
  assert.deepEqual(types, ['approval.requested', 'approval.decided', 'approval.used']);
  const used = sink.events.find((e) => e.type === 'approval.used' && (e.body as { name?: string }).name === name);
  const review = sink.ofType('admission.review').find((e) => e.correlation?.admissionUid === used?.correlation?.admissionUid && e.body.webhook === 'validate');
  assert.ok(review, 'approval.used joins the admission.review of the admitted write');
  assert.equal(review.body.decision.allowed, true);
});

test('a granted window admits the same request again; a changed object needs a new approval', async () => {
  const cm = `kt-window-${id}`;
  const first = await asAgent(['create', '-f', '-'], configMap(cm, 'window'));
  const name = approvalName(first.stderr);
  assert.ok(name, first.stderr);
  assert.equal((await approvalsCli(approvers[1]!.kubeconfig, ['approve', name])).status, 0);
  assert.equal((await asAgent(['create', '-f', '-'], configMap(cm, 'window'))).status, 0);
  await deleteCm(cm);
  const again = await asAgent(['create', '-f', '-'], configMap(cm, 'window'));
  assert.equal(again.status, 0, `within the window: ${again.stderr}`);
  await deleteCm(cm);
  const changed = await asAgent(['create', '-f', '-'], configMap(cm, 'window', 'even-more'));
  assert.notEqual(changed.status, 0);
  const other = approvalName(changed.stderr);
  assert.ok(other && other !== name, changed.stderr);
});

test('minApprovals 2 needs two distinct approvers; a denial is final', async () => {
  const cm = `kt-two-${id}`;
  const name = approvalName((await asAgent(['create', '-f', '-'], configMap(cm, 'two'))).stderr);
  assert.ok(name);
  const one = await approvalsCli(approvers[0]!.kubeconfig, ['approve', name]);
  assert.match(one.stdout, /now Pending/);
  assert.notEqual((await asAgent(['create', '-f', '-'], configMap(cm, 'two'))).status, 0, 'one approval of two does not admit');
  const twice = await approvalsCli(approvers[0]!.kubeconfig, ['approve', name]);
  assert.equal(twice.status, 1);
  assert.match(twice.stderr, /already decided/);
  const two = await approvalsCli(approvers[1]!.kubeconfig, ['approve', name]);
  assert.match(two.stdout, /now Approved/, two.stderr);
  assert.equal((await asAgent(['create', '-f', '-'], configMap(cm, 'two'))).status, 0);

  const cm2 = `kt-denied-${id}`;
  const denied = approvalName((await asAgent(['create', '-f', '-'], configMap(cm2, 'once'))).stderr);
  assert.ok(denied);
  const d = await approvalsCli(approvers[0]!.kubeconfig, ['deny', denied, '--comment', 'no']);
  assert.match(d.stdout, /now Denied/, d.stderr);
  const retry = await asAgent(['create', '-f', '-'], configMap(cm2, 'once'));
  assert.notEqual(retry.status, 0);
  assert.match(retry.stderr, /was denied by system:serviceaccount:agents:appr1/);
  const late = await approvalsCli(approvers[1]!.kubeconfig, ['approve', denied]);
  assert.equal(late.status, 1);
  assert.match(late.stderr, /Denied: decisions are final/);
  const waited = await approvalsCli(approvers[1]!.kubeconfig, ['wait', denied, '--timeout', '5s']);
  assert.equal(waited.status, 1);
});

test('every step has its event in the trail: kubetrail events shows them, kubetrail verify is clean', async () => {
  await sink.flush();
  const logDir = localLogDir(dataDir, 'webhook');
  const ev = await kubetrailCli(['events', '--log-dir', logDir, '--type', 'approval.decided', '-o', 'json']);
  assert.equal(ev.status, 0, ev.stderr);
  const decided = ev.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l));
  assert.ok(decided.length >= 5, ev.stdout);
  assert.ok(decided.every((e) => e.chain?.hash && /^system:serviceaccount:agents:appr[12]-/.test(e.actor.username)));
  for (const type of ['approval.requested', 'approval.used']) {
    const r = await kubetrailCli(['events', '--log-dir', logDir, '--type', type, '-o', 'json']);
    assert.ok(r.stdout.trim().split('\n').length >= 2, `${type}: ${r.stdout}`);
  }
  const table = await kubetrailCli(['events', '--log-dir', logDir, '--type', 'approval.requested']);
  assert.match(table.stdout, /approval.requested/);
  const v = await kubetrailCli(['verify', '--public-key', path.join(dataDir, 'keys', 'dev-signing.pub.pem'), '--log-dir', logDir]);
  assert.equal(v.status, 0, `${v.stdout}${v.stderr}`);
});
