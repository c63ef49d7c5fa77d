/**
 * `kubetrail kubeconfig` writes a file every major client reads (issue 13
 * item 11): kubectl (client-go), @kubernetes/client-node in this process,
 * and the official Python client, each authenticating through the gateway
 * with the token file the kubeconfig names.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { run as kubeconfigCommand } from '../../cli/kubeconfig.ts';
import { kubectl, run } from '../support/env.ts';
import { createNamespace, serviceAccountWithToken, startTestGateway, uniq, type TestGateway } from './support.ts';

const ns = `kc-${uniq()}`;
let t: TestGateway;
let kubeconfig: string;
let dropNamespace: () => Promise<void>;

before(async () => {
  dropNamespace = await createNamespace(ns);
  const token = await serviceAccountWithToken(ns, 'kc');
  t = await startTestGateway();
  const tokenFile = path.join(t.dir, 'token');
  writeFileSync(tokenFile, token, { mode: 0o600 });
  const caFile = path.join(t.dir, 'gateway-ca.crt');
  writeFileSync(caFile, t.caPem);
  kubeconfig = path.join(t.dir, 'kubeconfig');
  // The command itself, as a user runs it.
  assert.equal(await kubeconfigCommand(['--server', t.gw.url, '--ca-file', caFile, '--token-file', tokenFile, '--namespace', ns, '--out', kubeconfig]), 0);
  const made = await kubectl(kubeconfig, ['create', 'configmap', 'seen-by-all', '--from-literal=a=b']);
  assert.equal(made.status, 0, made.stderr);
});
after(async () => {
  await t?.close();
  await dropNamespace?.();
});

test('kubectl (client-go) reads the kubeconfig and authenticates through the gateway', async () => {
  const r = await kubectl(kubeconfig, ['get', 'configmap', 'seen-by-all', '-o', 'name']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'configmap/seen-by-all');
});

test('@kubernetes/client-node reads the kubeconfig and authenticates through the gateway', async () => {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  const api = kc.makeApiClient(CoreV1Api);
  const cm = await api.readNamespacedConfigMap({ name: 'seen-by-all', namespace: ns });
  assert.equal(cm.data?.['a'], 'b');
  const ev = t.sink.ofType('api.request').findLast((e) => e.target?.name === 'seen-by-all' && e.body.method === 'GET');
  assert.equal(ev?.actor?.username, `system:serviceaccount:${ns}:kc`);
});

test('the Python kubernetes client reads the kubeconfig and authenticates through the gateway', async (tc) => {
  const probe = await run('python3', ['-c', 'import kubernetes']);
  if (probe.status !== 0) {
    tc.skip('the Python kubernetes client is not installed (pip install kubernetes)');
    return;
  }
  const script = `
import sys
from kubernetes import client, config
config.load_kube_config(config_file=sys.argv[1])
cm = client.CoreV1Api().read_namespaced_config_map("seen-by-all", sys.argv[2])
print(cm.data["a"])
`;
  const r = await run('python3', ['-c', script, kubeconfig, ns]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'b');
});
