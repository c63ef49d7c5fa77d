/**
 * The harness node as a cluster: the Node is Ready, pods get IPs the host
 * reaches, ClusterIP Services work from the host and from pods (kube-proxy,
 * iptables mode), pods reach the API server at `kubernetes.default`'s
 * ClusterIP, and the controllers run (Deployments get pods, the aggregated
 * ClusterRoles have rules, garbage collection removes dependents).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { kubectl } from '../support/env.ts';
import { waitFor } from '../support/wait.ts';
import { nodeEnv, runPod, uniq } from './support.ts';

// The node's controllers and kube-proxy act asynchronously; poll kubectl every 250 ms, for up to 90 s.
const NODE_WAIT = { timeoutMs: 90_000, intervalMs: 250 };

test('the node is Ready and runs pods whose IPs the host reaches; a ClusterIP Service answers from the host and from a pod; pods reach kubernetes.default', async (t) => {
  const env = nodeEnv();
  const admin = env.ADMIN_KUBECONFIG;
  const ready = await kubectl(admin, ['get', 'node', env.NODE_NAME, '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}']);
  assert.equal(ready.stdout, 'True');
  const name = `kt-web-${uniq()}`;
  await runPod(t, name, { command: ['httpd', '-f', '-p', '8080', '-h', '/www'] });
  const ip = (await kubectl(admin, ['-n', 'agents', 'get', 'pod', name, '-o', 'jsonpath={.status.podIP}'])).stdout;
  assert.match(ip, /^10\.210\.\d+\.\d+$/);
  assert.equal(await (await fetch(`http://${ip}:8080/index.html`)).text(), 'kubetrail test image\n');

  const svc = await kubectl(admin, ['-n', 'agents', 'create', 'service', 'clusterip', name, '--tcp=80:8080']);
  assert.equal(svc.status, 0, svc.stderr);
  t.after(() => kubectl(admin, ['-n', 'agents', 'delete', 'service', name, '--wait=false']));
  // `create service` selects app=<name>; point it at the pod's label instead.
  await kubectl(admin, ['-n', 'agents', 'set', 'selector', 'service', name, `kubetrail.test/pod=${name}`]);
  const clusterIp = (await kubectl(admin, ['-n', 'agents', 'get', 'service', name, '-o', 'jsonpath={.spec.clusterIP}'])).stdout;
  let body = '';
  await waitFor(async () => {
    try {
      body = await (await fetch(`http://${clusterIp}/index.html`, { signal: AbortSignal.timeout(2000) })).text();
      return true;
    } catch {
      return false; // kube-proxy has not programmed the Service yet
    }
  }, `host → ${clusterIp}:80`, NODE_WAIT);
  assert.equal(body, 'kubetrail test image\n');

  const fromPod = await kubectl(admin, ['-n', 'agents', 'exec', name, '--', 'wget', '-qO-', `http://${clusterIp}/index.html`]);
  assert.equal(fromPod.status, 0, fromPod.stderr);
  assert.equal(fromPod.stdout, 'kubetrail test image\n');

  const api = await kubectl(admin, ['-n', 'agents', 'exec', name, '--', 'sh', '-c', 'echo "$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT"; echo | nc -w 5 "$KUBERNETES_SERVICE_HOST" "$KUBERNETES_SERVICE_PORT" && echo connected']);
  assert.equal(api.status, 0, api.stderr);
  assert.equal(api.stdout, `${env.KUBERNETES_SERVICE_IP}:443\nconnected\n`);
});

test('the controllers run: a Deployment gets a running pod, the aggregated edit ClusterRole has rules, and deleting the Deployment removes its pods', async (t) => {
  const env = nodeEnv();
  const admin = env.ADMIN_KUBECONFIG;
  const edit = await kubectl(admin, ['get', 'clusterrole', 'edit', '-o', 'jsonpath={.rules[*].resources}']);
  assert.match(edit.stdout, /pods/, 'the aggregation controller filled `edit`');
  const name = `kt-deploy-${uniq()}`;
  const mk = await kubectl(admin, ['-n', 'agents', 'create', 'deployment', name, `--image=${env.NODE_IMAGE}`, '--', 'sleep', '3600']);
  assert.equal(mk.status, 0, mk.stderr);
  t.after(() => kubectl(admin, ['-n', 'agents', 'delete', 'deployment', name, '--wait=false', '--ignore-not-found']));
  // The image is only local: IfNotPresent (what kubectl create deployment sets for a tagged image) never pulls it.
  const rollout = await kubectl(admin, ['-n', 'agents', 'rollout', 'status', `deployment/${name}`, '--timeout=90s']);
  assert.equal(rollout.status, 0, rollout.stderr + rollout.stdout);
  const pods = async (): Promise<string> => (await kubectl(admin, ['-n', 'agents', 'get', 'pods', '-l', `app=${name}`, '-o', 'name'])).stdout.trim();
  assert.match(await pods(), /^pod\//);
  const del = await kubectl(admin, ['-n', 'agents', 'delete', 'deployment', name, '--wait=false']);
  assert.equal(del.status, 0, del.stderr);
  // The garbage collector deletes the ReplicaSet, then its pods (which then take their
  // grace period to stop: wait for the deletion, not for the 30 s of `sleep` as PID 1).
  await waitFor(async () => {
    const rs = (await kubectl(admin, ['-n', 'agents', 'get', 'replicasets', '-l', `app=${name}`, '-o', 'name'])).stdout.trim();
    const p = await kubectl(admin, ['-n', 'agents', 'get', 'pods', '-l', `app=${name}`, '-o', 'json']);
    if (p.status !== 0) return false;
    const live = (JSON.parse(p.stdout) as { items: { metadata: { deletionTimestamp?: string } }[] }).items.filter((i) => !i.metadata.deletionTimestamp);
    return rs === '' && live.length === 0;
  }, 'garbage collection of the ReplicaSet and its pods', NODE_WAIT);
});
