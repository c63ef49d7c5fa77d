/**
 * Bad credentials get 401 with a Kubernetes Status body and cause no request
 * to the API server on the caller's behalf: the API server's own audit log
 * has no entry for the marked path (a valid token's request to a sibling
 * marker does appear, so the check can fail).
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, test } from 'node:test';
import { exportSPKI, importJWK, type CryptoKey } from 'jose';
import { startOidcIssuer, type OidcIssuer } from '../tools/oidc-issuer.ts';
import { auditEntries, startTestGateway, uniq, type TestGateway } from './support.ts';

let issuer: OidcIssuer;
let stranger: OidcIssuer;
let t: TestGateway;
const marker = `kubetrail-badtoken-${uniq()}`;

before(async () => {
  issuer = await startOidcIssuer();
  stranger = await startOidcIssuer();
  t = await startTestGateway({ issuers: [issuer] });
});
after(async () => {
  await t?.close();
  await issuer?.close();
  await stranger?.close();
});

const b64 = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');
const now = (): number => Math.floor(Date.now() / 1000);

const cases: { name: string; auth: () => Promise<string | undefined> }[] = [
  { name: 'an expired token', auth: async () => `Bearer ${await issuer.sign({ sub: 'a', aud: 'kubetrail', iat: now() - 7200, exp: now() - 3600 })}` },
  { name: 'a token not yet valid', auth: async () => `Bearer ${await issuer.sign({ sub: 'a', aud: 'kubetrail', nbf: now() + 3600 })}` },
  { name: 'a token from the wrong issuer', auth: async () => `Bearer ${await stranger.sign({ sub: 'a', aud: 'kubetrail' })}` },
  { name: 'a token for the wrong audience', auth: async () => `Bearer ${await issuer.sign({ sub: 'a', aud: 'other' })}` },
  { name: 'an alg none token', auth: async () => `Bearer ${b64({ alg: 'none', typ: 'JWT' })}.${b64({ iss: issuer.url, sub: 'a', aud: 'kubetrail', exp: now() + 300 })}.` },
  {
    name: 'an HS256 token signed with the RSA public key',
    auth: async () => {
      const pem = await exportSPKI((await importJWK(issuer.current.publicJwk, 'RS256')) as CryptoKey);
      const input = `${b64({ alg: 'HS256', typ: 'JWT', kid: issuer.current.kid })}.${b64({ iss: issuer.url, sub: 'a', aud: 'kubetrail', exp: now() + 300 })}`;
      return `Bearer ${input}.${createHmac('sha256', pem).update(input).digest('base64url')}`;
    },
  },
  { name: 'a token with an unknown kid', auth: async () => `Bearer ${await issuer.sign({ sub: 'a', aud: 'kubetrail' }, { key: await issuer.newKey() })}` },
  {
    name: 'a token with a tampered payload',
    auth: async () => {
      const [h, , s] = (await issuer.sign({ sub: 'a', aud: 'kubetrail' })).split('.');
      return `Bearer ${h}.${b64({ iss: issuer.url, sub: 'admin', groups: ['system:masters'], aud: 'kubetrail', exp: now() + 300 })}.${s}`;
    },
  },
  {
    name: 'a truncated token',
    auth: async () => {
      const tok = await issuer.sign({ sub: 'a', aud: 'kubetrail' });
      return `Bearer ${tok.slice(0, tok.length - 30)}`;
    },
  },
  { name: 'a garbage token', auth: async () => 'Bearer !!not-a-token!!' },
  { name: 'basic auth', auth: async () => `Basic ${Buffer.from('admin:admin').toString('base64')}` },
  { name: 'no credentials', auth: async () => undefined },
];

for (const c of cases) {
  test(`${c.name} gets 401 with a Status body`, async () => {
    const auth = await c.auth();
    const r = await t.request({
      path: `/api/v1/namespaces/${marker}/configmaps`,
      headers: { 'user-agent': marker, ...(auth ? { authorization: auth } : {}) },
    });
    assert.equal(r.status, 401);
    const body = JSON.parse(r.body) as Record<string, unknown>;
    assert.deepEqual(body, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'Unauthorized', reason: 'Unauthorized', code: 401 });
    assert.equal(r.headers['content-type'], 'application/json');
  });
}

test('none of the refused requests reached the API server, while a valid one does', async () => {
  const control = `${marker}-control`;
  const ok = await t.request({ path: `/api/v1/namespaces/${control}/configmaps`, headers: { authorization: `Bearer ${await issuer.sign({ sub: 'a', aud: 'kubetrail' })}`, 'user-agent': control } });
  assert.equal(ok.status, 403, ok.body); // authenticated, then RBAC says no: it did reach the API server
  const seen = await auditEntries((e) => String(e['requestURI'] ?? '').includes(marker));
  assert.ok(seen.some((e) => String(e['requestURI']).includes(control)), 'the control request is in the audit log');
  assert.deepEqual(
    seen.filter((e) => !String(e['requestURI']).includes(control)).map((e) => e['requestURI']),
    [],
    'no refused request reached the API server',
  );
  // Each refusal is itself recorded, without an actor.
  const refused = t.sink.ofType('api.request').filter((e) => e.body.status === 401 && e.body.path.includes(marker));
  assert.equal(refused.length, cases.length);
  assert.ok(refused.every((e) => e.actor === undefined && e.body.decision?.allowed === false));
});
