import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ProxyError } from './errors.ts';
import { buildUpstreamHeaders, escapeExtraKey, readClientImpersonation, unescapeExtraKey } from './impersonation.ts';

test('upstream headers carry user, one group line per group, uid, escaped extras and the session, plus the gateway token', () => {
  const h = buildUpstreamHeaders(
    { username: 'oidc:alice', groups: ['dev', 'a,b'], uid: 'u1', extra: { 'Acme.com/Project': ['x', 'y'], 'kubetrail.io/impersonator': ['evil'] }, authn: 'oidc' },
    '0190-session',
    { authorization: () => 'Bearer gateway-token' },
  );
  assert.deepEqual(h, {
    authorization: 'Bearer gateway-token',
    'impersonate-user': 'oidc:alice',
    'impersonate-group': ['dev', 'a,b'],
    'impersonate-uid': 'u1',
    'impersonate-extra-acme.com%2Fproject': ['x', 'y'],
    'impersonate-extra-kubetrail.io%2Fsession': '0190-session',
  });
});

test('non-ASCII identities are sent as UTF-8 bytes and control characters are refused', () => {
  const h = buildUpstreamHeaders({ username: 'jürgen', groups: [], authn: 'oidc' }, 's');
  assert.equal(Buffer.from(h['impersonate-user'] as string, 'latin1').toString('utf8'), 'jürgen');
  assert.throws(() => buildUpstreamHeaders({ username: 'a\r\nImpersonate-User: admin', groups: [], authn: 'oidc' }, 's'), ProxyError);
});

test('extra keys escape like client-go and unescape like the API server', () => {
  for (const [key, escaped] of [
    ['kubetrail.io/session', 'kubetrail.io%2Fsession'],
    ['a b%c', 'a%20b%25c'],
    ['ÜML', '%C3%BCml'],
  ] as const) {
    assert.equal(escapeExtraKey(key), escaped);
    assert.equal(unescapeExtraKey(escaped), key.toLowerCase());
  }
});

const clientCases: { name: string; headers: Record<string, string[]>; want?: unknown; error?: string }[] = [
  { name: 'no impersonation headers', headers: { accept: ['*/*'] }, want: undefined },
  { name: 'user and groups', headers: { 'impersonate-user': ['bob'], 'impersonate-group': ['g1', 'g2'] }, want: { user: 'bob', groups: ['g1', 'g2'], extra: {} } },
  { name: 'uid and extras', headers: { 'impersonate-user': ['bob'], 'impersonate-uid': ['7'], 'impersonate-extra-acme.com%2fteam': ['a'] }, want: { user: 'bob', groups: [], uid: '7', extra: { 'acme.com/team': ['a'] } } },
  { name: 'a group without a user', headers: { 'impersonate-group': ['system:masters'] }, error: 'PROXY_ERR_IMPERSONATION_INVALID' },
  { name: 'two users', headers: { 'impersonate-user': ['a', 'b'] }, error: 'PROXY_ERR_IMPERSONATION_INVALID' },
  { name: 'an unknown impersonate header', headers: { 'impersonate-something': ['x'] }, error: 'PROXY_ERR_IMPERSONATION_INVALID' },
];
for (const c of clientCases) {
  test(`client impersonation: ${c.name}`, () => {
    if (c.error) {
      assert.throws(() => readClientImpersonation(c.headers), (e: unknown) => e instanceof ProxyError && e.code === c.error);
    } else {
      assert.deepEqual(readClientImpersonation(c.headers), c.want);
    }
  });
}
