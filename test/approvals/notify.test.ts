/**
 * The approval notification, received by a small local HTTP server: the
 * generic JSON body and the Slack incoming-webhook shape, and a receiver that
 * fails does not throw into the approval path.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { Notifier } from '../../core/approvals/notify.ts';
import type { ApprovalRequest } from '../../core/approvals/types.ts';
import { quietLogger } from '../webhook/support.ts';

const received: { path: string; type: string | undefined; body: any }[] = [];
let server: http.Server;
let base = '';

before(async () => {
  server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ path: req.url ?? '', type: req.headers['content-type'], body: JSON.parse(Buffer.concat(chunks).toString('utf8')) });
      res.statusCode = req.url === '/broken' ? 500 : 200;
      res.end('ok');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(() => new Promise<void>((r) => server.close(() => r())));

const ar: ApprovalRequest = {
  apiVersion: 'kubetrail.io/v1alpha1',
  kind: 'ApprovalRequest',
  metadata: { name: 'ar-0123456789-abc', namespace: 'agents' },
  spec: {
    requester: { username: 'agent-ci', groups: ['agents'] },
    request: { kind: 'api', verb: 'create', apiGroup: '', apiVersion: 'v1', resource: 'configmaps', namespace: 'agents', name: 'c', bodySha256: 'a'.repeat(64), object: { data: { password: '***MASKED***' } } },
    policy: 'p',
    rule: 'r',
    reason: 'dangerous',
    expiresAt: '2026-12-07T13:00:00.000Z',
    approvers: { users: [], groups: ['sre'] },
    minApprovals: 1,
    correlation: {},
  },
};

test('the generic notification names the request, the policy and the commands, and carries no object', async () => {
  const n = new Notifier({ url: `${base}/generic`, format: 'generic', timeoutMs: 5000, log: quietLogger() });
  n.requested(ar);
  await n.drain();
  const got = received.find((r) => r.path === '/generic');
  assert.equal(got?.type, 'application/json');
  assert.equal(got?.body.name, 'ar-0123456789-abc');
  assert.equal(got?.body.requester, 'agent-ci');
  assert.equal(got?.body.request.bodySha256, 'a'.repeat(64));
  assert.equal(got?.body.approve, 'kubetrail approvals approve ar-0123456789-abc -n agents');
  assert.equal(JSON.stringify(got?.body).includes('MASKED'), false);
});

test('the Slack notification is an incoming-webhook body: text plus mrkdwn section blocks', async () => {
  const n = new Notifier({ url: `${base}/slack`, format: 'slack', timeoutMs: 5000, log: quietLogger() });
  n.requested(ar);
  await n.drain();
  const got = received.find((r) => r.path === '/slack');
  assert.match(got?.body.text, /agent-ci asks to create configmaps agents\/c/);
  assert.equal(got?.body.blocks[0].type, 'section');
  assert.equal(got?.body.blocks[0].text.type, 'mrkdwn');
  assert.match(got?.body.blocks[1].text.text, /kubetrail approvals approve ar-0123456789-abc -n agents/);
});

test('a receiver that fails or is unreachable is logged, never thrown', async () => {
  const lines: string[] = [];
  const n = new Notifier({ url: `${base}/broken`, format: 'generic', timeoutMs: 5000, log: quietLogger(lines) });
  n.requested(ar);
  const down = new Notifier({ url: 'http://127.0.0.1:1/none', format: 'generic', timeoutMs: 5000, log: quietLogger(lines) });
  down.requested(ar);
  await n.drain();
  await down.drain();
  assert.ok(lines.some((l) => l.includes('approval notification refused')));
  assert.ok(lines.some((l) => l.includes('approval notification failed')));
});
