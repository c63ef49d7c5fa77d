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

test('groups the API server adds by itself are not sent: each sent group costs it an authorization check per request', async (t) => {
  const { groupsToSend, splitServiceAccount } = await import('./impersonation.ts');
  await t.test('system:authenticated is appended by the API server to any non-anonymous user', () => {
    assert.deepEqual(groupsToSend('oidc:alice', ['dev', 'system:authenticated', 'ops']), ['dev', 'ops']);
    assert.deepEqual(groupsToSend('oidc:alice', ['system:authenticated']), []);
  });
  await t.test('a ServiceAccount whose groups are exactly the derived ones sends none', () => {
    const sa = 'system:serviceaccount:agents:ci-bot';
    assert.deepEqual(groupsToSend(sa, ['system:serviceaccounts', 'system:serviceaccounts:agents', 'system:authenticated']), []);
    assert.deepEqual(groupsToSend(sa, ['system:serviceaccounts:agents', 'system:serviceaccounts']), []);
    const h = buildUpstreamHeaders({ username: sa, groups: ['system:serviceaccounts', 'system:serviceaccounts:agents', 'system:authenticated'], uid: 'u', authn: 'serviceaccount' }, 's');
    assert.equal(h['impersonate-group'], undefined);
    assert.equal(h['impersonate-user'], sa);
  });
  await t.test('any other group set is sent whole (minus system:authenticated), since sending one group replaces the derived ones', () => {
    const sa = 'system:serviceaccount:agents:ci-bot';
    assert.deepEqual(groupsToSend(sa, ['system:serviceaccounts', 'system:serviceaccounts:agents', 'extra-group']), ['system:serviceaccounts', 'system:serviceaccounts:agents', 'extra-group']);
    assert.deepEqual(groupsToSend(sa, ['system:serviceaccounts', 'system:serviceaccounts:other']), ['system:serviceaccounts', 'system:serviceaccounts:other']);
    assert.deepEqual(groupsToSend(sa, ['system:serviceaccounts']), ['system:serviceaccounts']);
    assert.deepEqual(groupsToSend(sa, ['system:serviceaccounts', 'system:serviceaccounts', 'system:serviceaccounts:agents']).length, 3);
  });
  await t.test('a name the API server would not parse as a ServiceAccount is a plain user: its groups are sent', () => {
    for (const u of ['system:serviceaccount:Agents:bot', 'system:serviceaccount:agents', 'system:serviceaccount:a:b:c', 'system:serviceaccount::bot', 'system:serviceaccount:agents:Bot']) {
      assert.equal(splitServiceAccount(u), undefined, u);
      assert.deepEqual(groupsToSend(u, ['system:serviceaccounts', 'system:serviceaccounts:agents']), ['system:serviceaccounts', 'system:serviceaccounts:agents'], u);
    }
    assert.deepEqual(splitServiceAccount('system:serviceaccount:kube-system:default'), { namespace: 'kube-system', name: 'default' });
    assert.deepEqual(splitServiceAccount('system:serviceaccount:agents:my.bot-1'), { namespace: 'agents', name: 'my.bot-1' });
  });
  await t.test('anonymous and system:unauthenticated identities are sent as they are', () => {
    assert.deepEqual(groupsToSend('system:anonymous', ['system:unauthenticated']), ['system:unauthenticated']);
    assert.deepEqual(groupsToSend('bob', ['system:unauthenticated', 'system:authenticated']), ['system:unauthenticated', 'system:authenticated']);
  });
});
