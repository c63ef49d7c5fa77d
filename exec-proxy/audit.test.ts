import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createLogger } from '../core/logger.ts';
import { MASK } from '../core/masking/object.ts';
import { MemorySink } from '../core/sinks/memory-sink.ts';
import { ApiAuditor, createDefaultMasker, decodeBody, type RequestRecord } from './audit.ts';
import { parseRequestInfo } from './request-info.ts';

function rec(method: string, url: string, extra: Partial<RequestRecord> = {}): RequestRecord {
  return {
    identity: { username: 'u', groups: [], authn: 'token' },
    info: parseRequestInfo(method, url),
    method,
    path: url.split('?')[0] as string,
    query: undefined,
    status: 200,
    latencyMs: 1.23456,
    bytesIn: 0,
    bytesOut: 10,
    userAgent: 'kubectl',
    sourceIp: '127.0.0.1',
    sessionId: 's',
    auditId: 'a',
    ...extra,
  };
}

test('discovery calls are sampled one in N, each kept event saying so; other calls are all kept', async () => {
  const sink = new MemorySink();
  const a = new ApiAuditor({ sink, log: createLogger({ level: 'silent' }), discoverySampleRate: 5, mask: (b) => b });
  for (let i = 0; i < 12; i++) await a.record(rec('GET', '/apis'));
  for (let i = 0; i < 3; i++) await a.record(rec('GET', '/api/v1/namespaces/x/pods'));
  const ev = sink.ofType('api.request');
  assert.equal(ev.filter((e) => e.body.path === '/apis').length, 3); // calls 1, 6, 11
  assert.ok(ev.filter((e) => e.body.path === '/apis').every((e) => e.body.sampled === 5));
  assert.equal(ev.filter((e) => e.body.verb === 'list').length, 3);
});

test('write bodies are decoded by content type, masked, and protobuf is noted but not decoded', async () => {
  const sink = new MemorySink();
  const a = new ApiAuditor({ sink, log: createLogger({ level: 'silent' }), discoverySampleRate: 1, mask: createDefaultMasker({ envNamePatterns: ['PASSWORD'], paths: [] }) });
  const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' }, spec: { containers: [{ name: 'c', env: [{ name: 'DB_PASSWORD', value: 'hunter2' }, { name: 'MODE', value: 'prod' }] }] } };
  await a.record(rec('POST', '/api/v1/namespaces/x/pods', { body: Buffer.from(JSON.stringify(pod)), bodyContentType: 'application/json', status: 201 }));
  // A merge patch to a Secret has no kind: it is still masked as a Secret.
  await a.record(rec('PATCH', '/api/v1/namespaces/x/secrets/s', { body: Buffer.from('{"data":{"token":"c2VjcmV0"}}'), bodyContentType: 'application/merge-patch+json' }));
  await a.record(rec('PATCH', '/api/v1/namespaces/x/configmaps/c', { body: Buffer.from('data:\n  a: b\n'), bodyContentType: 'application/apply-patch+yaml' }));
  await a.record(rec('PUT', '/api/v1/namespaces/x/configmaps/c', { body: Buffer.from([0x6b, 0x38, 0x73, 0]), bodyContentType: 'application/vnd.kubernetes.protobuf', bodyTruncated: false }));
  const [p, s, y, pb] = sink.ofType('api.request');
  const env = (p?.body.requestBody as typeof pod).spec.containers[0]?.env;
  // The masked value itself, not just "anything but the secret": a missing body or env would pass a notEqual.
  assert.equal(env?.[0]?.value, MASK);
  assert.equal(env?.[1]?.value, 'prod');
  assert.ok(!JSON.stringify(s?.body.requestBody).includes('c2VjcmV0'));
  assert.equal((s?.body.requestBody as Record<string, unknown>)['kind'], undefined, 'no kind invented in the record');
  assert.deepEqual(y?.body.requestBody, { data: { a: 'b' } });
  assert.deepEqual(pb?.body.requestBody, { unrecorded: 'application/vnd.kubernetes.protobuf', bytes: 4 });
  assert.equal(p?.body.latencyMs, 1.235);
});

test('a body that claims JSON but is not is recorded as unparseable, not dropped silently', () => {
  assert.deepEqual(decodeBody('application/json', Buffer.from('{nope')), { ok: false, reason: 'unparseable' });
});
