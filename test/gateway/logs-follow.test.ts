/**
 * `kubectl logs` and `kubectl logs -f` as the agent through the gateway: the
 * real API server proxies the pod's log to a fake kubelet that writes a line
 * every 50 ms. A followed log must reach kubectl line by line while the
 * stream is still open (the gateway streams, it does not buffer the body),
 * and when kubectl goes away the stream is torn down all the way to the
 * kubelet and recorded as one api.request for the `log` subresource.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { harness, kubectl } from '../support/env.ts';
import { waitFor } from '../support/wait.ts';
import { fakeNodeWithPod } from '../exec/helpers.ts';
import { startTestGateway } from './support.ts';


test('kubectl logs and logs -f through the gateway: whole log, then a followed log streamed line by line and torn down when kubectl leaves', async (t) => {
  const env = harness();
  const { pod, kubelet } = await fakeNodeWithPod(t, 'agents');
  const g = await startTestGateway();
  t.after(() => g.close());
  const kc = g.kubeconfigFor(env.AGENT_TOKEN, 'agents');

  const whole = await kubectl(kc, ['logs', pod]);
  assert.equal(whole.status, 0, whole.stderr);
  assert.equal(whole.stdout, 'log line 1\nlog line 2\nlog line 3\n');

  const child = spawn('kubectl', ['--kubeconfig', kc, 'logs', '-f', pod], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => child.kill('SIGKILL'));
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  await waitFor(() => (out.match(/\n/g) ?? []).length >= 10, 'ten followed log lines at kubectl', { timeoutMs: 20_000 }).catch((e: Error) => {
    throw new Error(`${e.message}; stdout so far ${JSON.stringify(out)}, stderr ${JSON.stringify(err)}`);
  });
  assert.match(out, /^log line 1\nlog line 2\nlog line 3\n/);
  // A followed log never ends at the kubelet: lines that reached kubectl while
  // that stream is still open were streamed, not buffered until the body's end.
  assert.equal(kubelet.openLogStreams, 1, 'the kubelet still streams while kubectl follows');

  child.kill('SIGTERM');
  await waitFor(() => kubelet.openLogStreams === 0, 'the kubelet log stream to close after kubectl left', { timeoutMs: 20_000 });
  const logEvents = (): ReturnType<typeof g.sink.ofType<'api.request'>> => g.sink.ofType('api.request').filter((e) => e.target?.subresource === 'log');
  await waitFor(() => logEvents().length >= 2, 'an api.request for each kubectl logs call', { timeoutMs: 20_000 });
  const logs = logEvents();
  assert.equal(logs.length, 2, 'one api.request per kubectl logs call');
  for (const e of logs) {
    assert.equal(e.actor?.username, 'agent-ci');
    assert.equal(e.target?.name, pod);
    assert.equal(e.target?.namespace, 'agents');
    assert.equal(e.body.verb, 'get');
    assert.equal(e.body.status, 200);
  }
  assert.match(logs[1]?.body.query ?? '', /follow=true/);
  assert.ok((logs[1]?.body.bytesOut ?? 0) >= out.length, 'the followed log counts the bytes it streamed');
  const kubeletLogRequests = kubelet.requests.filter((r) => r.path.startsWith('/containerLogs/'));
  assert.equal(kubeletLogRequests.length, 2);
  assert.equal(kubeletLogRequests[1]?.query.get('follow'), 'true');
});
