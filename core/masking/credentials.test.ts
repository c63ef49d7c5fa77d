import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compileObjectMasking, LAST_APPLIED_ANNOTATION, MASK, maskObject } from './object.ts';

const masking = compileObjectMasking({ envNamePatterns: ['PASSWORD'] });
const TOKEN = '9f2c1d0e8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a';
const JWT = 'eyJhbGciOiJSUzI1NiIsImtpZCI6IngifQ.eyJpc3MiOiJodHRwczovL2t1YmVybmV0ZXMuZGVmYXVsdC5zdmMiLCJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6YTpiIn0.c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmU';
const b64 = (s: string): string => Buffer.from(s).toString('base64');
const kubeconfig = (user: Record<string, unknown>): string =>
  `apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: https://x}\nusers:\n- name: u\n  user:\n${Object.entries(user)
    .map(([k, v]) => `    ${k}: ${JSON.stringify(v)}`)
    .join('\n')}\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\n`;

/** The secrets (raw or base64) found in `v`, also inside the base64 of any string value (a ConfigMap's binaryData). */
function leaks(v: unknown, secrets: readonly string[]): string[] {
  const strings: string[] = [];
  JSON.stringify(v, (_k, x: unknown) => (typeof x === 'string' && strings.push(x, Buffer.from(x, 'base64').toString('latin1')), x));
  const text = JSON.stringify(v) + strings.join('\n');
  return secrets.flatMap((s) => [s, b64(s)]).filter((s) => text.includes(s));
}

const CASES: { name: string; object: Record<string, unknown>; secrets: string[]; kept?: (o: any) => void }[] = [
  {
    name: 'a TokenReview: spec.token (the caller bearer token the gateway checks)',
    object: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', metadata: { creationTimestamp: null }, spec: { token: TOKEN, audiences: ['a'] }, status: { user: {} } },
    secrets: [TOKEN],
    kept: (o) => assert.deepEqual(o.spec.audiences, ['a']),
  },
  {
    name: 'a TokenRequest (serviceaccounts/token): status.token',
    object: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { audiences: ['x'], expirationSeconds: 3600 }, status: { token: JWT, expirationTimestamp: '2026-01-01T00:00:00Z' } },
    secrets: [JWT],
    kept: (o) => assert.equal(o.spec.expirationSeconds, 3600),
  },
  {
    name: 'a bootstrap-token Secret: token-secret',
    object: { apiVersion: 'v1', kind: 'Secret', type: 'bootstrap.kubernetes.io/token', metadata: { name: 'bootstrap-token-abcdef' }, stringData: { 'token-id': 'abcdef', 'token-secret': '0123456789abcdef' } },
    secrets: ['0123456789abcdef'],
  },
  {
    name: 'a ConfigMap holding a kubeconfig with a token',
    object: { apiVersion: 'v1', kind: 'ConfigMap', data: { config: kubeconfig({ token: TOKEN }), plain: 'hello' } },
    secrets: [TOKEN],
    kept: (o) => assert.equal(o.data.plain, 'hello'),
  },
  {
    name: 'a ConfigMap holding a kubeconfig with a client key, a password, an auth-provider and exec env',
    object: {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      data: {
        a: kubeconfig({ 'client-key-data': b64('-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIK\n-----END EC PRIVATE KEY-----\n') }),
        b: kubeconfig({ username: 'u', password: 'pa55-w0rd-in-kubeconfig' }),
        c: kubeconfig({ 'auth-provider': { name: 'oidc', config: { 'id-token': JWT, 'refresh-token': 'refresh-tok-123456' } } }),
        d: kubeconfig({ exec: { command: 'x', env: [{ name: 'SECRET', value: 'exec-env-secret-value' }] } }),
      },
    },
    secrets: ['MHcCAQEEIK', 'pa55-w0rd-in-kubeconfig', JWT, 'refresh-tok-123456', 'exec-env-secret-value'],
  },
  {
    name: 'a ConfigMap holding a JSON kubeconfig in binaryData',
    object: { apiVersion: 'v1', kind: 'ConfigMap', binaryData: { kc: b64(JSON.stringify({ apiVersion: 'v1', kind: 'Config', users: [{ name: 'u', user: { token: TOKEN } }] })) } },
    secrets: [TOKEN],
  },
  {
    name: 'a ServiceAccount token Secret (data.token, the JWT)',
    object: { apiVersion: 'v1', kind: 'Secret', type: 'kubernetes.io/service-account-token', data: { token: b64(JWT), 'ca.crt': b64('cert') } },
    secrets: [JWT],
  },
  {
    name: 'a Secret applied with kubectl apply: its data in the last-applied-configuration annotation',
    object: { apiVersion: 'v1', kind: 'Secret', metadata: { annotations: { [LAST_APPLIED_ANNOTATION]: JSON.stringify({ apiVersion: 'v1', kind: 'Secret', stringData: { t: TOKEN } }) } }, stringData: { t: TOKEN } },
    secrets: [TOKEN],
  },
  {
    name: 'a JWT anywhere (an annotation, a container arg), with no MaskingPolicy',
    object: { apiVersion: 'v1', kind: 'Pod', metadata: { annotations: { note: `token ${JWT}` } }, spec: { containers: [{ name: 'a', args: ['--token', JWT] }] } },
    secrets: [JWT],
  },
  {
    name: 'a bearer token in any string (an Authorization header in a config file)',
    object: { apiVersion: 'v1', kind: 'ConfigMap', data: { 'nginx.conf': `proxy_set_header Authorization "Bearer ${TOKEN}";` } },
    secrets: [TOKEN],
  },
  {
    name: 'a Docker config (registry credentials) copied into a ConfigMap',
    object: { apiVersion: 'v1', kind: 'ConfigMap', data: { 'config.json': JSON.stringify({ auths: { 'r.example': { auth: b64('user:registry-pass-123'), identitytoken: 'idtok-registry-456' } } }) } },
    secrets: ['registry-pass-123', 'idtok-registry-456'],
  },
  {
    name: 'an AWS credentials file in a ConfigMap',
    object: { apiVersion: 'v1', kind: 'ConfigMap', data: { credentials: '[default]\naws_access_key_id = AKIAABCDEFGHIJKLMNOP\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n' } },
    secrets: ['wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'],
  },
  {
    name: 'a PEM private key in a ConfigMap, even without its END line',
    object: { apiVersion: 'v1', kind: 'ConfigMap', data: { key: '-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAtruncated-key-material' } },
    secrets: ['MIIEowIBAAKCAQEAtruncated-key-material'],
  },
];

for (const c of CASES) {
  test(`credentials are masked in captured objects without any configuration: ${c.name}`, () => {
    for (const opts of [{}, { canonicalView: true }]) {
      const out = maskObject(masking, structuredClone(c.object), [], opts);
      assert.deepEqual(leaks(out, c.secrets), [], JSON.stringify(out));
      c.kept?.(out);
    }
  });
}

test('a review object without apiVersion and kind (as some callers send it) is masked by the kind the request names', () => {
  const out = maskObject(masking, { spec: { token: TOKEN } }, [], { kind: { group: 'authentication.k8s.io', kind: 'TokenReview' } }) as any;
  assert.equal(out.spec.token, MASK);
});

test('ordinary strings and ConfigMaps are left as they are', () => {
  const cm = { apiVersion: 'v1', kind: 'ConfigMap', data: { 'app.yaml': 'users:\n- alice\n- bob\n', note: 'eyJ is how a JWT starts', url: 'https://x/y?a=b' } };
  assert.deepEqual(maskObject(masking, cm), cm);
});
