import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parse } from 'yaml';
import { buildKubeconfig, KubeconfigError, type KubeconfigSpec } from './kubeconfig.ts';

test('a token-file kubeconfig embeds the gateway CA and points at the token file', () => {
  const kc = parse(buildKubeconfig({ server: 'https://gw:9443', caPem: 'PEM', tokenFile: '/var/run/t', namespace: 'agents' })) as Record<string, any>;
  assert.equal(kc['current-context'], 'kubetrail');
  assert.equal(kc.clusters[0].cluster.server, 'https://gw:9443');
  assert.equal(Buffer.from(kc.clusters[0].cluster['certificate-authority-data'], 'base64').toString(), 'PEM');
  // tokenFile for kubectl/client-go and the Python client, token-file for @kubernetes/client-node.
  assert.deepEqual(kc.users[0].user, { tokenFile: '/var/run/t', 'token-file': '/var/run/t' });
  assert.equal(kc.contexts[0].context.namespace, 'agents');
});

test('an exec-plugin kubeconfig uses client.authentication.k8s.io/v1 with the given args and env', () => {
  const kc = parse(buildKubeconfig({ server: 'https://gw:9443', exec: { command: 'kubectl-oidc_login', args: ['get-token', '--oidc-issuer-url=https://idp'], env: [{ name: 'A', value: 'b' }] } })) as Record<string, any>;
  assert.deepEqual(kc.users[0].user.exec, {
    apiVersion: 'client.authentication.k8s.io/v1',
    command: 'kubectl-oidc_login',
    args: ['get-token', '--oidc-issuer-url=https://idp'],
    env: [{ name: 'A', value: 'b' }],
    interactiveMode: 'IfAvailable',
    provideClusterInfo: false,
  });
});

test('the server URL is written without a trailing slash, so no client sends //api', () => {
  const kc = parse(buildKubeconfig({ server: 'https://gw:9443/', tokenFile: '/t' })) as Record<string, any>;
  assert.equal(kc.clusters[0].cluster.server, 'https://gw:9443');
});

const usageErrors: [string, KubeconfigSpec][] = [
  ['neither credential', { server: 'https://gw:1' }],
  ['both credentials', { server: 'https://gw:1', tokenFile: 't', exec: { command: 'x', args: [] } }],
  ['a plain-http server', { server: 'http://gw:1', tokenFile: 't' }],
  ['a server that is not a URL', { server: 'gw', tokenFile: 't' }],
];
for (const [name, spec] of usageErrors) {
  test(`${name} is a usage error`, () => {
    assert.throws(() => buildKubeconfig(spec), KubeconfigError);
  });
}
