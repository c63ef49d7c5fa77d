import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, test } from 'node:test';
import { exportSPKI, importJWK, type CryptoKey, type JWTPayload } from 'jose';
import { ConfigError } from '../../core/errors.ts';
import { startOidcIssuer, type OidcIssuer } from '../../test/tools/oidc-issuer.ts';
import { AuthError } from '../errors.ts';
import { JwtAuthenticator, type JwtIssuerConfig } from './jwt.ts';
import { tokenKey } from './token-review.ts';

let issuer: OidcIssuer;
let other: OidcIssuer;

before(async () => {
  issuer = await startOidcIssuer();
  other = await startOidcIssuer();
});
after(async () => {
  await issuer.close();
  await other.close();
});

function cfg(i: OidcIssuer, extra: Partial<JwtIssuerConfig> = {}): JwtIssuerConfig {
  return {
    issuer: { url: i.url, audiences: ['kubetrail'], certificateAuthority: i.caPem },
    claimValidationRules: [],
    claimMappings: { username: { claim: 'sub', prefix: 'oidc:' }, groups: { claim: 'groups', prefix: 'oidc:' }, extra: [] },
    userValidationRules: [],
    ...extra,
  };
}

const b64 = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');
const now = (): number => Math.floor(Date.now() / 1000);

async function expectAuthError(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof AuthError, `expected AuthError, got ${String(err)}`);
    assert.equal(err.code, code);
    assert.equal(err.status, 401);
    return true;
  });
}

test('a valid token maps sub, groups (string or list) and prefixes into the identity', async () => {
  const a = new JwtAuthenticator([cfg(issuer)], { leewaySeconds: 30 });
  const id = await a.authenticate(await issuer.sign({ sub: 'alice', aud: 'kubetrail', groups: ['dev', 'ops'] }));
  assert.deepEqual(id, { username: 'oidc:alice', groups: ['oidc:dev', 'oidc:ops'], authn: 'oidc', issuer: issuer.url, subject: 'alice' });
  const single = await a.authenticate(await issuer.sign({ sub: 'bob', aud: ['x', 'kubetrail'], groups: 'dev' }));
  assert.deepEqual(single?.groups, ['oidc:dev']);
});

const badTokens: { name: string; make: () => Promise<string>; code: string }[] = [
  { name: 'an expired token', make: () => issuer.sign({ sub: 'a', aud: 'kubetrail', exp: now() - 3600, iat: now() - 7200 }), code: 'AUTH_ERR_EXPIRED' },
  { name: 'a token not yet valid', make: () => issuer.sign({ sub: 'a', aud: 'kubetrail', nbf: now() + 3600 }), code: 'AUTH_ERR_NOT_YET_VALID' },
  { name: 'a token for another audience', make: () => issuer.sign({ sub: 'a', aud: 'someone-else' }), code: 'AUTH_ERR_AUDIENCE' },
  { name: 'a token without exp', make: () => issuer.sign({ sub: 'a', aud: 'kubetrail', exp: undefined } as unknown as JWTPayload), code: 'AUTH_ERR_CLAIM_VALIDATION' },
  {
    name: 'an alg none token',
    make: async () => `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ iss: issuer.url, sub: 'a', aud: 'kubetrail', exp: now() + 300 })}.`,
    code: 'AUTH_ERR_ALGORITHM',
  },
  {
    name: 'an HS256 token signed with the RSA public key as HMAC secret',
    make: async () => {
      const pem = await exportSPKI((await importJWK(issuer.current.publicJwk, 'RS256')) as CryptoKey);
      const input = `${b64({ alg: 'HS256', typ: 'JWT', kid: issuer.current.kid })}.${b64({ iss: issuer.url, sub: 'a', aud: 'kubetrail', exp: now() + 300 })}`;
      return `${input}.${createHmac('sha256', pem).update(input).digest('base64url')}`;
    },
    code: 'AUTH_ERR_ALGORITHM',
  },
  { name: 'a token signed by an unpublished key (unknown kid)', make: async () => issuer.sign({ sub: 'a', aud: 'kubetrail' }, { key: await issuer.newKey() }), code: 'AUTH_ERR_UNKNOWN_KEY' },
  {
    name: 'a token with a tampered payload',
    make: async () => {
      const [h, , s] = (await issuer.sign({ sub: 'a', aud: 'kubetrail' })).split('.');
      return `${h}.${b64({ iss: issuer.url, sub: 'admin', aud: 'kubetrail', exp: now() + 300 })}.${s}`;
    },
    code: 'AUTH_ERR_SIGNATURE',
  },
  {
    name: 'a truncated token',
    make: async () => {
      const t = await issuer.sign({ sub: 'a', aud: 'kubetrail' });
      return t.slice(0, t.length - 20);
    },
    code: 'AUTH_ERR_SIGNATURE',
  },
];

for (const c of badTokens) {
  test(`${c.name} is refused with ${c.code}`, async () => {
    const a = new JwtAuthenticator([cfg(issuer)], { leewaySeconds: 30 });
    await expectAuthError(a.authenticate(await c.make()), c.code);
  });
}

test('a token from an unconfigured issuer, or garbage, is left to the next authenticator', async () => {
  const a = new JwtAuthenticator([cfg(issuer)], { leewaySeconds: 30 });
  assert.equal(await a.authenticate(await other.sign({ sub: 'a', aud: 'kubetrail' })), undefined);
  assert.equal(await a.authenticate('garbage'), undefined);
  assert.equal(await a.authenticate('a.b.c'), undefined);
});

test('exp within the leeway passes; beyond it fails (injected clock)', async () => {
  const t = await issuer.sign({ sub: 'a', aud: 'kubetrail', exp: now() + 10 });
  const at = (s: number): JwtAuthenticator => new JwtAuthenticator([cfg(issuer)], { leewaySeconds: 30, now: () => new Date((now() + s) * 1000) });
  assert.equal((await at(30).authenticate(t))?.username, 'oidc:a');
  await expectAuthError(at(60).authenticate(t), 'AUTH_ERR_EXPIRED');
});

test('several issuers at once: each token is verified against its own issuer', async () => {
  const a = new JwtAuthenticator([cfg(issuer), cfg(other, { claimMappings: { username: { claim: 'email', prefix: '' }, extra: [] } })], { leewaySeconds: 30 });
  assert.equal((await a.authenticate(await issuer.sign({ sub: 'x', aud: 'kubetrail' })))?.username, 'oidc:x');
  assert.equal((await a.authenticate(await other.sign({ sub: 'y', email: 'y@example.com', aud: 'kubetrail' })))?.username, 'y@example.com');
  await expectAuthError(a.authenticate(await other.sign({ sub: 'y', email: 'y@example.com', email_verified: false, aud: 'kubetrail' })), 'AUTH_ERR_CLAIM_MAPPING');
  // A token naming one issuer but signed by the other's key.
  await expectAuthError(a.authenticate(await issuer.sign({ sub: 'x', aud: 'kubetrail' }, { key: other.current })), 'AUTH_ERR_UNKNOWN_KEY');
});

test('a rotated key is picked up by refetching the JWKS on an unknown kid; JWKS are cached otherwise', async () => {
  const a = new JwtAuthenticator([cfg(issuer)], { leewaySeconds: 30, jwksRefetchCooldownMs: 0 });
  await a.authenticate(await issuer.sign({ sub: 'a', aud: 'kubetrail' }));
  const fetches = issuer.jwksFetches;
  await a.authenticate(await issuer.sign({ sub: 'a', aud: 'kubetrail' }));
  assert.equal(issuer.jwksFetches, fetches, 'second token must use the cached JWKS');
  await issuer.rotate();
  assert.equal((await a.authenticate(await issuer.sign({ sub: 'b', aud: 'kubetrail' })))?.username, 'oidc:b');
  assert.equal(issuer.jwksFetches, fetches + 1);
});

test('claimValidationRules (requiredValue and CEL), CEL claim mappings, extra and userValidationRules apply', async () => {
  const a = new JwtAuthenticator(
    [
      cfg(issuer, {
        claimValidationRules: [
          { claim: 'tenant', requiredValue: 'acme' },
          { expression: 'claims.exp - claims.iat <= 3600', message: 'token lifetime too long' },
        ],
        claimMappings: {
          username: { expression: '"agent:" + claims.sub' },
          groups: { expression: 'claims.roles.map(r, "role:" + r)' },
          uid: { claim: 'oid' },
          extra: [{ key: 'acme.com/tenant', valueExpression: 'claims.tenant' }],
        },
        userValidationRules: [{ expression: '!user.username.startsWith("agent:system")', message: 'reserved name' }],
      }),
    ],
    { leewaySeconds: 30 },
  );
  const id = await a.authenticate(await issuer.sign({ sub: 'bot', aud: 'kubetrail', tenant: 'acme', roles: ['ci'], oid: 'u-1' }));
  assert.deepEqual(id, { username: 'agent:bot', groups: ['role:ci'], uid: 'u-1', extra: { 'acme.com/tenant': ['acme'] }, authn: 'oidc', issuer: issuer.url, subject: 'bot' });
  await expectAuthError(a.authenticate(await issuer.sign({ sub: 'bot', aud: 'kubetrail', tenant: 'other', roles: [] })), 'AUTH_ERR_CLAIM_VALIDATION');
  await expectAuthError(a.authenticate(await issuer.sign({ sub: 'bot', aud: 'kubetrail', tenant: 'acme', roles: [], exp: now() + 7200 })), 'AUTH_ERR_CLAIM_VALIDATION');
  await expectAuthError(a.authenticate(await issuer.sign({ sub: 'system', aud: 'kubetrail', tenant: 'acme', roles: [] })), 'AUTH_ERR_USER_VALIDATION');
});

test('an invalid CEL expression fails at construction with its field path', () => {
  assert.throws(
    () => new JwtAuthenticator([cfg(issuer, { claimValidationRules: [{ expression: 'claims.(' }] })], { leewaySeconds: 0 }),
    (err: unknown) => err instanceof ConfigError && err.issues[0]?.path === 'proxy.authn.jwt.0.claimValidationRules.0.expression',
  );
});

test('an issuer whose discovery cannot be fetched fails closed', async () => {
  const a = new JwtAuthenticator([cfg(issuer, { issuer: { url: issuer.url, audiences: ['kubetrail'] } })], { leewaySeconds: 30 });
  // No CA given: the issuer's test certificate is not trusted.
  await expectAuthError(a.authenticate(await issuer.sign({ sub: 'a', aud: 'kubetrail' })), 'AUTH_ERR_DISCOVERY');
});

test('an issuer cannot mint reserved system: usernames or groups', async () => {
  const a = new JwtAuthenticator([cfg(issuer, { claimMappings: { username: { claim: 'sub', prefix: '' }, groups: { claim: 'groups', prefix: '' }, extra: [] } })], { leewaySeconds: 30 });
  await expectAuthError(a.authenticate(await issuer.sign({ sub: 'system:admin', aud: 'kubetrail' })), 'AUTH_ERR_USER_VALIDATION');
  await expectAuthError(a.authenticate(await issuer.sign({ sub: 'mallory', aud: 'kubetrail', groups: ['dev', 'system:masters'] })), 'AUTH_ERR_USER_VALIDATION');
  assert.equal((await a.authenticate(await issuer.sign({ sub: 'mallory', aud: 'kubetrail', groups: ['dev'] })))?.username, 'mallory');
});

test('a verified token is cached for the TTL and never past exp + leeway; failures are not cached', async () => {
  let clock = now();
  const a = new JwtAuthenticator([cfg(issuer)], { leewaySeconds: 30, cacheTtlMs: 60_000, now: () => new Date(clock * 1000) });
  const t = await issuer.sign({ sub: 'a', aud: 'kubetrail', exp: clock + 10 });
  const key = tokenKey(t);
  assert.equal(a.peek(key), undefined);
  const id = await a.authenticate(t);
  assert.equal(id?.username, 'oidc:a');
  assert.equal(a.peek(key), id, 'the identity object is reused while cached');
  assert.equal(await a.authenticate(t), id);
  clock += 39; // exp + leeway - 1 s: still valid
  assert.equal(a.peek(key), id);
  clock += 2; // past exp + leeway: the cache no longer answers, and verification refuses
  assert.equal(a.peek(key), undefined);
  await expectAuthError(a.authenticate(t), 'AUTH_ERR_EXPIRED');

  // The TTL bounds a long-lived token's entry; a bad token is verified (and refused) every time.
  const b = new JwtAuthenticator([cfg(issuer)], { leewaySeconds: 30, cacheTtlMs: 5_000, now: () => new Date(clock * 1000) });
  const long = await issuer.sign({ sub: 'b', aud: 'kubetrail', exp: clock + 3600 });
  const lk = tokenKey(long);
  await b.authenticate(long);
  assert.ok(b.peek(lk));
  clock += 6;
  assert.equal(b.peek(lk), undefined);
  const tampered = `${long.slice(0, -4)}AAAA`;
  await expectAuthError(b.authenticate(tampered), 'AUTH_ERR_SIGNATURE');
  assert.equal(b.peek(tokenKey(tampered)), undefined);
});
