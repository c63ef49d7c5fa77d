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
import { setTimeout as sleep } from 'node:timers/promises';
import { harness, kubectl } from '../support/env.ts';
import { fakeNodeWithPod } from '../exec/helpers.ts';
import { startTestGateway } from './support.ts';

async function until(what: string, pred: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

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
  const arrivals: number[] = [];
  child.stdout.on('data', (c: Buffer) => {
    out += c.toString();
    arrivals.push(Date.now());
  });
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  await until('ten followed log lines at kubectl', () => (out.match(/\n/g) ?? []).length >= 10).catch((e: Error) => {
    throw new Error(`${e.message}; stdout so far ${JSON.stringify(out)}, stderr ${JSON.stringify(err)}`);
  });
  assert.match(out, /^log line 1\nlog line 2\nlog line 3\n/);
  // Lines are written 50 ms apart at the kubelet; streamed, they arrive spread
  // out over (at least) several hundred milliseconds, in several reads.
  assert.ok(arrivals.length >= 3, `the log arrived in ${arrivals.length} read(s): buffered, not streamed`);
  assert.ok((arrivals.at(-1) as number) - (arrivals[0] as number) >= 200, 'the followed lines did not arrive over time');
  assert.equal(kubelet.openLogStreams, 1, 'the kubelet still streams while kubectl follows');

  child.kill('SIGTERM');
  await until('the kubelet log stream to close after kubectl left', () => kubelet.openLogStreams === 0);
  const logEvents = (): ReturnType<typeof g.sink.ofType<'api.request'>> => g.sink.ofType('api.request').filter((e) => e.target?.subresource === 'log');
  await until('an api.request for each kubectl logs call', () => logEvents().length >= 2);
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
