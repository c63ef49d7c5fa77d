import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compileExecPolicy, judgeTypedLine, type ExecInput } from '../../core/policy/exec.ts';
import { TypedLineGuard } from './typed-line-guard.ts';

const policy = compileExecPolicy(
  {
    apiVersion: 'kubetrail.io/v1alpha1',
    kind: 'ExecPolicy',
    metadata: { name: 'lines' },
    spec: {
      approval: 'oncall',
      opaqueLines: 'allow',
      rules: [
        { name: 'no-rm', on: 'line', action: 'deny', expression: 'line.startsWith("rm ")', message: 'no rm' },
        { name: 'touch-approval', on: 'line', action: 'requireApproval', expression: 'line.startsWith("touch ")', message: 'touch needs approval' },
      ],
    },
  },
  'test',
);
const input: ExecInput = { kind: 'exec', namespace: 'agents', pod: 'p', container: '', command: ['sh'], tty: true, user: { username: 'agent', groups: [], authn: 'serviceaccount' } };
const guard = (): TypedLineGuard => new TypedLineGuard((line, opaque) => judgeTypedLine([policy], { ...input, line }, opaque));
const text = (chunks: { data: Buffer }[]): string => Buffer.concat(chunks.map((c) => c.data)).toString('latin1');

test('a line that needs approval stops the feed at its Enter: the text went on, the Enter is withheld, the keys after it are handed back', () => {
  const g = guard();
  const r = g.feed(Buffer.from('touch /tmp/x\recho after\r'));
  assert.equal(text(r.chunks), 'touch /tmp/x', 'the typed text reaches the remote line; its Enter does not');
  assert.ok(r.held);
  assert.equal(r.held.line, 'touch /tmp/x');
  assert.equal(r.held.approval.rule, 'touch-approval');
  assert.equal(r.held.approval.approval, 'oncall');
  assert.equal(r.held.rest.toString(), 'echo after\r');
  assert.throws(() => g.feed(Buffer.from('x')), /released/);
  // Approved: the withheld Enter runs the line in the remote shell; the rest is then judged as usual.
  assert.equal(g.release(true).toString(), '\r');
  const next = g.feed(r.held.rest);
  assert.equal(next.held, undefined);
  assert.equal(text(next.chunks), 'echo after\r');
  assert.equal(next.judged[0]?.decision.allowed, true);
});

test('a held line that is not approved is cleared like a blocked one, and the editor starts afresh', () => {
  const g = guard();
  const r = g.feed(Buffer.from('touch /tmp/x\r'));
  assert.ok(r.held);
  const clear = g.release(false).toString('latin1');
  assert.match(clear, /^\x05+\x15$/, 'ctrl-e then ctrl-u clear the remote line');
  assert.throws(() => g.release(true), /no line is held/);
  const next = g.feed(Buffer.from('id\r'));
  assert.equal(next.judged[0]?.line, 'id');
});

test('a deny rule wins over approval; a line that needs approval but was edited opaquely is denied, not held', () => {
  const g = guard();
  const d = g.feed(Buffer.from('rm -f x\r'));
  assert.equal(d.held, undefined);
  assert.equal(d.judged[0]?.decision.rule, 'no-rm');
  // ctrl-r (history search) is a key kubetrail cannot follow: what would run is not what an approver would see.
  const o = g.feed(Buffer.from('touch y\x12\r'));
  assert.equal(o.held, undefined);
  assert.equal(o.judged[0]?.decision.allowed, false);
  assert.equal(o.judged[0]?.decision.action, 'deny');
  assert.match(o.judged[0]?.decision.message ?? '', /cannot be approved as seen: retype it in full/);
});

test('the same bytes in single-key chunks hold at the same place', () => {
  const g = guard();
  const keys = 'touch /tmp/x\r';
  let held;
  let sent = '';
  for (const k of keys) {
    const r = g.feed(Buffer.from(k));
    sent += text(r.chunks);
    held ??= r.held;
  }
  assert.equal(sent, 'touch /tmp/x');
  assert.equal(held?.rest.length, 0);
});
