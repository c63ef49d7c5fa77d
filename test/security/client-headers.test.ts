/**
 * Attack class: what a client, or the claims of its token, put into the
 * gateway's upstream request headers (issue 13 item 9).
 *
 * - A client-chosen `Audit-ID` must not reach the API server (the caller
 *   would pick the API server's audit ID); neither may headers the client
 *   names as hop-by-hop in `Connection`.
 * - An identity the gateway cannot send faithfully as `Impersonate-*`
 *   values (control characters, which would be a 500 or a header
 *   injection; leading or trailing blanks, which the API server trims so the
 *   request would run as someone else; a lone surrogate; an oversized value)
 *   is an authentication failure: 401, and nothing is forwarded. For OIDC
 *   claims and TokenReview answers alike.
 *
 * The exact upstream headers come from a small fake API server; the audit ID
 * is checked against the real API server's audit log.
 */
import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { startFakeApiServer, writeGatewayKubeconfig, type FakeApiServer } from '../tools/fake-apiserver.ts';
import { startOidcIssuer, type OidcIssuer } from '../tools/oidc-issuer.ts';
import { harness } from '../support/env.ts';
import { auditEntries, startTestGateway, uniq, type TestGateway } from '../gateway/support.ts';

let fake: FakeApiServer;
let issuer: OidcIssuer;
let t: TestGateway;
let dir: string;

/** TokenReview answers of the fake: token → user. */
const REVIEWED: Record<string, { username: string; groups: string[] }> = {
  good: { username: 'fake-user', groups: ['g1'] },
  'user-newline': { username: 'bob\nImpersonate-User: admin', groups: [] },
  'user-trailing-space': { username: 'admin ', groups: [] },
  'user-nul': { username: 'bob\u0000', groups: [] },
  'group-crlf': { username: 'bob', groups: ['dev\r\nX-Remote-Group: system:masters'] },
  'group-leading-tab': { username: 'bob', groups: ['\tsystem:masters'] },
  'user-too-long': { username: `bob${'x'.repeat(5000)}`, groups: [] },
};

before(async () => {
  fake = await startFakeApiServer(REVIEWED);
  issuer = await startOidcIssuer();
  dir = path.join(tmpdir(), `kubetrail-hdr-${uniq()}`);
  mkdirSync(dir, { recursive: true });
  const kc = writeGatewayKubeconfig(fake, dir);
  t = await startTestGateway({ upstreamKubeconfig: kc, issuers: [issuer] });
});
after(async () => {
  await t?.close();
  await fake?.close();
  await issuer?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function get(g: TestGateway, p: string, headers: [string, string][]): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(`${g.gw.url}${p}`, { method: 'GET', ca: g.caPem, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    // setHeader keeps the letter case; an array sends one line per value.
    const byName = new Map<string, string[]>();
    for (const [n, v] of headers) byName.set(n, [...(byName.get(n) ?? []), v]);
    for (const [n, v] of byName) req.setHeader(n, v.length === 1 ? (v[0] as string) : v);
    req.on('error', reject);
    req.end();
  });
}

test('a client-chosen Audit-ID, in any letter case, is not forwarded', async () => {
  for (const name of ['Audit-ID', 'audit-id', 'AUDIT-Id']) {
    const before = fake.seen.length;
    const r = await get(t, '/api/v1/namespaces/x/configmaps', [
      ['Authorization', 'Bearer good'],
      [name, `chosen-${uniq()}`],
    ]);
    assert.equal(r.status, 200, r.body);
    const seen = fake.seen.slice(before);
    assert.equal(seen.length, 1);
    assert.equal(seen[0]!.headers['audit-id'], undefined, `${name} was forwarded`);
  }
});

test('headers the client names in Connection are hop-by-hop and not forwarded', async () => {
  const before = fake.seen.length;
  const r = await get(t, '/api/v1/namespaces/x/configmaps', [
    ['Authorization', 'Bearer good'],
    ['Connection', 'keep-alive, Accept-Language, X-Request-Id'],
    ['Accept-Language', 'de'],
    ['X-Request-Id', 'r-1'],
    ['Accept', 'application/json'],
  ]);
  assert.equal(r.status, 200, r.body);
  const h = fake.seen.slice(before)[0]!.headers;
  assert.equal(h['accept-language'], undefined);
  assert.equal(h['x-request-id'], undefined);
  assert.deepEqual(h['accept'], ['application/json']);
});

const badClaims: { what: string; claims: Record<string, unknown> }[] = [
  { what: 'a sub with a newline', claims: { sub: 'alice\nbob' } },
  { what: 'a sub that injects a header line', claims: { sub: 'alice\r\nImpersonate-User: admin' } },
  { what: 'a sub with NUL', claims: { sub: 'alice\u0000' } },
  { what: 'a sub with DEL', claims: { sub: 'alice\u007f' } },
  { what: 'a sub with a C1 control (CSI)', claims: { sub: 'alice\u009b31m' } },
  { what: 'a sub with a tab', claims: { sub: 'ali\tce' } },
  { what: 'a sub with a trailing space (the API server would trim it)', claims: { sub: 'admin ' } },
  { what: 'a sub with a lone surrogate', claims: { sub: 'alice\ud800' } },
  { what: 'an oversized sub', claims: { sub: 'a'.repeat(5000) } },
  { what: 'a group with a newline', claims: { sub: 'alice', groups: ['dev\nops'] } },
  { what: 'a group with a trailing space', claims: { sub: 'alice', groups: ['admins '] } },
  { what: 'too many groups', claims: { sub: 'alice', groups: Array.from({ length: 1001 }, (_, i) => `g${i}`) } },
];
for (const c of badClaims) {
  test(`a JWT with ${c.what} gets 401 and nothing is forwarded`, async () => {
    const token = await issuer.sign({ aud: 'kubetrail', ...c.claims });
    const before = fake.seen.length;
    const r = await get(t, '/api/v1/namespaces/x/configmaps', [['Authorization', `Bearer ${token}`]]);
    assert.equal(r.status, 401, r.body);
    assert.deepEqual(JSON.parse(r.body), { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'Unauthorized', reason: 'Unauthorized', code: 401 });
    assert.equal(fake.seen.length, before, 'nothing forwarded');
    // A second request (cached verification) is refused the same way.
    const again = await get(t, '/api/v1/namespaces/x/configmaps', [['Authorization', `Bearer ${token}`]]);
    assert.equal(again.status, 401);
  });
}

test('a JWT with non-ASCII but valid claims still works', async () => {
  const token = await issuer.sign({ aud: 'kubetrail', sub: 'zoë', groups: ['équipe'] });
  const before = fake.seen.length;
  const r = await get(t, '/api/v1/namespaces/x/configmaps', [['Authorization', `Bearer ${token}`]]);
  assert.equal(r.status, 200, r.body);
  const h = fake.seen.slice(before)[0]!.headers;
  // UTF-8 bytes on the wire, as Go's net/http sends them (Node reads header bytes as latin1).
  assert.deepEqual(h['impersonate-user'], [Buffer.from('oidc:zoë').toString('latin1')]);
});

for (const token of Object.keys(REVIEWED).filter((k) => k !== 'good')) {
  test(`a TokenReview answer with ${token} gets 401 and nothing is forwarded`, async () => {
    const before = fake.seen.length;
    const r = await get(t, '/api/v1/namespaces/x/configmaps', [['Authorization', `Bearer ${token}`]]);
    assert.equal(r.status, 401, r.body);
    assert.equal(fake.seen.length, before, 'nothing forwarded');
  });
}

test('through the real API server, a client-chosen Audit-ID is not the audit ID of the request', async () => {
  const g = await startTestGateway();
  try {
    const chosen = `chosen-${uniq()}`;
    const marker = `kubetrail-auditid-${uniq()}`;
    const r = await get(g, `/api/v1/namespaces/default/configmaps/${marker}`, [
      ['Authorization', `Bearer ${harness().AGENT_TOKEN}`],
      ['Audit-ID', chosen],
    ]);
    assert.equal(r.status, 404, r.body);
    assert.notEqual(r.headers['audit-id'], chosen);
    const entries = await auditEntries((e) => String(e['requestURI']).includes(marker));
    assert.ok(entries.length > 0, 'the request reached the API server');
    assert.deepEqual(entries.filter((e) => e['auditID'] === chosen), [], 'the API server used the client-chosen audit ID');
    const ev = g.sink.ofType('api.request').find((e) => e.body.path.includes(marker));
    assert.equal(ev?.correlation?.auditId, r.headers['audit-id']);
  } finally {
    await g.close();
  }
});
