/**
 * The whole exec path as shipped: kubectl with the agent's own token → the
 * real gateway (TokenReview, impersonation) → its recording stream relay → the
 * real kube-apiserver (RBAC as agent-ci, WebSocket v5 → SPDY) → a fake
 * kubelet running real processes.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { harness, kubectl } from '../support/env.ts';
import { startTestGateway } from '../gateway/support.ts';
import { fakeNodeWithPod, recorded, sessionEnd, sessionEvents } from './helpers.ts';

test('kubectl exec as the agent through the real gateway reaches the pod as agent-ci, keeps the exit code, and is recorded under the caller', async (t) => {
  const env = harness();
  const { pod } = await fakeNodeWithPod(t, 'agents');
  const g = await startTestGateway();
  t.after(() => g.close());
  const kc = g.kubeconfigFor(env.AGENT_TOKEN, 'agents');

  const r = await kubectl(kc, ['exec', pod, '--', 'sh', '-c', 'echo out-$((40+2)); echo err >&2; exit 3']);
  assert.equal(r.status, 3, r.stderr);
  assert.equal(r.stdout, 'out-42\n');
  assert.match(r.stderr, /err/);

  const start = g.sink.ofType('session.start').at(-1);
  assert.ok(start, 'no session.start recorded');
  assert.equal(start.actor?.username, 'agent-ci');
  assert.deepEqual(start.body.command, ['sh', '-c', 'echo out-$((40+2)); echo err >&2; exit 3']);
  const session = start.correlation?.session as string;
  const end = await sessionEnd(g.sink, session);
  assert.equal(end.exitCode, 3);
  assert.equal(recorded(g.sink, session, 'stdout').toString(), 'out-42\n');
  // Every event of the session names the caller, not the gateway's own upstream identity.
  const actors = new Set(sessionEvents(g.sink, session).map((e) => e.actor?.username));
  assert.deepEqual([...actors], ['agent-ci']);

});
