/**
 * The relay's upstream leg against the real kube-apiserver of the harness:
 * the proxy's own credentials plus Impersonate-* headers, and the API
 * server's answers reaching kubectl. (No node matches the pod's nodeSelector,
 * so an exec that passes authorization ends at "no host assigned";
 * that answer still proves the request was authorized as the impersonated
 * user. Real containers: test/node/.)
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { randomBytes } from 'node:crypto';
import { harness, kubectl } from '../support/env.ts';
import { MemorySink } from '../../core/sinks/memory-sink.ts';
import { startStreamGateway } from '../tools/stream-gateway.ts';
import { sessionEnd } from './helpers.ts';

test('through the real API server: an impersonated user without rights gets its 403, an authorized one reaches the pod, and both sessions are recorded', async (t) => {
  const env = harness();
  const ns = 'agents';
  const pod = `kt-exec-${randomBytes(4).toString('hex')}`;
  // Container named `app`, like the pod the test gateway describes to kubectl.
  const manifest = { apiVersion: 'v1', kind: 'Pod', metadata: { name: pod, namespace: ns }, spec: { nodeSelector: { 'kubetrail.test/no-such-node': 'x' }, containers: [{ name: 'app', image: 'busybox', command: ['sleep', '3600'] }] } };
  const created = await kubectl(env.ADMIN_KUBECONFIG, ['create', '-f', '-'], JSON.stringify(manifest));
  assert.equal(created.status, 0, created.stderr);
  t.after(() => kubectl(env.ADMIN_KUBECONFIG, ['-n', ns, 'delete', 'pod', pod, '--wait=false', '--grace-period=0', '--force']));
  const sink = new MemorySink({ source: { component: 'proxy' } });
  let user = 'nobody-without-rights';
  let groups: string[] = ['system:authenticated'];
  const gw = await startStreamGateway({
    upstream: new URL(env.APISERVER_URL),
    upstreamCa: readFileSync(env.APISERVER_CA, 'utf8'),
    upstreamHeaders: (session) => ({
      authorization: `Bearer ${env.ADMIN_TOKEN}`,
      'impersonate-user': user,
      'impersonate-group': groups,
      'impersonate-extra-kubetrail.io%2Fsession': session,
    }),
    sink,
  });
  t.after(() => gw.close());

  const denied = await kubectl(gw.kubeconfig, ['-n', ns, 'exec', pod, '--', 'true']);
  assert.notEqual(denied.status, 0);
  assert.match(denied.stderr, /forbidden: User "nobody-without-rights" cannot (get|create) resource "pods\/exec"/);
  const deniedEnd = await sessionEnd(sink, gw.sessions.at(-1) as string);
  assert.equal(deniedEnd.outcome, 'error');
  assert.match(deniedEnd.error ?? '', /upstream HTTP 403/);

  user = 'agent-ci';
  groups = ['agents', 'system:authenticated'];
  const allowed = await kubectl(gw.kubeconfig, ['-n', ns, 'exec', pod, '--', 'true']);
  assert.notEqual(allowed.status, 0);
  // Authorized as agent-ci (edit in `agents`); the API server then finds no node to run it on
  // (no node matches the pod's nodeSelector, also when the harness runs a real one).
  assert.doesNotMatch(allowed.stderr, /forbidden/);
  assert.match(allowed.stderr, /host|node|not running|unavailable/i, allowed.stderr);
  t.diagnostic(`authorized exec answer: ${allowed.stderr.trim()}`);
  const allowedEnd = await sessionEnd(sink, gw.sessions.at(-1) as string);
  assert.notEqual(allowedEnd.outcome, 'completed');
});
