/**
 * The most faithful path available here: kubectl → stream relay → the real
 * kube-apiserver (impersonating agent-ci, which RBAC allows to exec in
 * `agents`) → its StreamTranslatorHandler (WebSocket v5 → SPDY) → a fake
 * kubelet registered as a Node, running real processes. Exit codes, stdout,
 * stderr and stdin cross every hop, and the relay records the session.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { MemorySink } from '../../core/sinks/memory-sink.ts';
import { harness, kubectl } from '../support/env.ts';
import { startStreamGateway } from '../tools/stream-gateway.ts';
import { fakeNodeWithPod, interactive, recorded, sessionEnd } from './helpers.ts';

test('kubectl exec and exec -it through the relay and the real API server reach a fake kubelet: exit codes, output, stdin and tty intact, sessions recorded', async (t) => {
  const env = harness();
  const { pod } = await fakeNodeWithPod(t, 'agents');

  const sink = new MemorySink({ source: { component: 'proxy' } });
  const gw = await startStreamGateway({
    upstream: new URL(env.APISERVER_URL),
    upstreamCa: readFileSync(env.APISERVER_CA, 'utf8'),
    upstreamHeaders: (session) => ({
      authorization: `Bearer ${env.ADMIN_TOKEN}`,
      'impersonate-user': 'agent-ci',
      'impersonate-group': ['agents', 'system:authenticated'],
      'impersonate-extra-kubetrail.io%2Fsession': session,
    }),
    sink,
  });
  t.after(() => gw.close());

  const r = await kubectl(gw.kubeconfig, ['-n', 'agents', 'exec', pod, '--', 'sh', '-c', 'echo hello from the node; echo oops >&2; exit 3']);
  assert.equal(r.status, 3, r.stderr);
  assert.equal(r.stdout, 'hello from the node\n');
  assert.match(r.stderr, /oops/);
  const id = gw.sessions.at(-1) as string;
  const end = await sessionEnd(sink, id);
  assert.equal(end.exitCode, 3);
  assert.equal(end.outcome, 'completed');
  assert.equal(recorded(sink, id, 'stdout').toString(), 'hello from the node\n');

  const piped = await kubectl(gw.kubeconfig, ['-n', 'agents', 'exec', '-i', pod, '--', 'tr', 'a-z', 'A-Z'], 'through every hop\n');
  assert.equal(piped.status, 0, piped.stderr);
  assert.equal(piped.stdout, 'THROUGH EVERY HOP\n');
  const pid = gw.sessions.at(-1) as string;
  await sessionEnd(sink, pid);
  assert.equal(recorded(sink, pid, 'stdin').toString(), 'through every hop\n');

  // An interactive session: kubectl under a pty, the API server's tty streams (stdin, stdout, resize).
  const it = await interactive(`kubectl --kubeconfig ${gw.kubeconfig} -n agents exec -it ${pod} -- sh`, [
    { after: /[$#] $/m, send: 'echo via-$((6*7))\r' },
    { after: /via-42/, send: 'exit 5\r' },
  ]);
  assert.match(it.output, /via-42/);
  assert.equal(it.status, 5);
  const tid = gw.sessions.at(-1) as string;
  const tend = await sessionEnd(sink, tid);
  assert.equal(tend.tty, true);
  assert.equal(tend.exitCode, 5);
  assert.ok(recorded(sink, tid, 'resize').length > 0, 'kubectl sent its terminal size, and it was recorded');
});
