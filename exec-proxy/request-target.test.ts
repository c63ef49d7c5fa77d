import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ProxyError } from './errors.ts';
import { parseRequestInfo } from './request-info.ts';
import { encodePath, parseRequestTarget } from './request-target.ts';

const accepted: { raw: string; path: string; forward: string }[] = [
  { raw: '/api/v1/namespaces/a/pods', path: '/api/v1/namespaces/a/pods', forward: '/api/v1/namespaces/a/pods' },
  { raw: '/api/v1/namespaces/a%2Fconfigmaps/c', path: '/api/v1/namespaces/a/configmaps/c', forward: '/api/v1/namespaces/a/configmaps/c' },
  { raw: 'https://x/api/v1/namespaces/a/pods?watch=1', path: '/api/v1/namespaces/a/pods', forward: '/api/v1/namespaces/a/pods?watch=1' },
  { raw: 'HTTP://u@x:1/api?x=/y', path: '/api', forward: '/api?x=/y' },
  { raw: '/api/v1/namespaces/%61/pods/', path: '/api/v1/namespaces/a/pods/', forward: '/api/v1/namespaces/a/pods/' },
  { raw: '/api/v1/namespaces/a/services/s:80/proxy/a%20b%25c', path: '/api/v1/namespaces/a/services/s:80/proxy/a b%c', forward: '/api/v1/namespaces/a/services/s:80/proxy/a%20b%25c' },
  { raw: '/api/v1/namespaces/a/configmaps/%C3%A9', path: '/api/v1/namespaces/a/configmaps/é', forward: '/api/v1/namespaces/a/configmaps/%C3%A9' },
  { raw: '/api/v1/x?labelSelector=a%3Db&x=%zz'.replace('&x=%zz', ''), path: '/api/v1/x', forward: '/api/v1/x?labelSelector=a%3Db' },
];
for (const c of accepted) {
  test(`the target ${c.raw} is read as ${c.path} and forwarded as ${c.forward}`, () => {
    const t = parseRequestTarget(c.raw);
    assert.equal(t.path, c.path);
    assert.equal(t.forward, c.forward);
    // The canonical spelling reads back as the same path.
    assert.equal(parseRequestTarget(t.forward).path, c.path);
  });
}

const refused: { raw: string; reason: RegExp }[] = [
  { raw: '*', reason: /asterisk/ },
  { raw: 'ftp://x/api', reason: /absolute-form/ },
  { raw: 'https:/api/v1', reason: /absolute-form/ },
  { raw: 'https://x', reason: /without a path/ },
  { raw: 'https://x?/api/v1', reason: /without a path/ },
  { raw: '/a/../b', reason: /dot segment/ },
  { raw: '/a/%2E/b', reason: /dot segment/ },
  { raw: '/a//b', reason: /empty segment/ },
  { raw: '//a', reason: /empty segment/ },
  { raw: '/a%2F%2Fb', reason: /empty segment/ },
  { raw: '/a\\b', reason: /backslash/ },
  { raw: '/a;b', reason: /semicolon/ },
  { raw: '/a%3Bb', reason: /semicolon/ },
  { raw: '/a#b', reason: /fragment/ },
  { raw: '/a%00', reason: /control/ },
  { raw: '/a%7F', reason: /control/ },
  { raw: '/a%ff', reason: /UTF-8/ },
  { raw: '/a%C3', reason: /UTF-8/ },
  { raw: '/a%g0', reason: /malformed/ },
  { raw: '/a%', reason: /malformed/ },
  { raw: '/a?x=1;y=2', reason: /";"/ },
  { raw: '/a?x=%zz', reason: /malformed/ },
  { raw: '/a?x=%ff', reason: /UTF-8/ },
];
for (const c of refused) {
  test(`the target ${JSON.stringify(c.raw)} is refused with a 400 naming the reason`, () => {
    assert.throws(
      () => parseRequestTarget(c.raw),
      (err: unknown) => err instanceof ProxyError && err.status === 400 && c.reason.test(err.clientMessage ?? ''),
    );
  });
}

test('encodePath escapes what is not a path character and leaves the rest', () => {
  assert.equal(encodePath('/a b/?#%/é'), '/a%20b/%3F%23%25/%C3%A9');
});

const infos: { method: string; url: string; verb: string; target: Record<string, string>; longRunning?: boolean }[] = [
  // Any value but 0/false (any case) is true, the first value counts (apimachinery Convert_Slice_string_To_bool).
  { method: 'GET', url: '/api/v1/namespaces/a/pods?watch=yes', verb: 'watch', target: { group: '', version: 'v1', namespace: 'a', resource: 'pods' }, longRunning: true },
  { method: 'GET', url: '/api/v1/namespaces/a/pods?watch=', verb: 'watch', target: { group: '', version: 'v1', namespace: 'a', resource: 'pods' }, longRunning: true },
  { method: 'GET', url: '/api/v1/namespaces/a/pods?watch=FALSE', verb: 'list', target: { group: '', version: 'v1', namespace: 'a', resource: 'pods' } },
  { method: 'GET', url: '/api/v1/namespaces/a/pods?watch=0&watch=1', verb: 'list', target: { group: '', version: 'v1', namespace: 'a', resource: 'pods' } },
  // A named GET stays a get: the API server serves the object, not a watch.
  { method: 'GET', url: '/api/v1/namespaces/a/pods/p?watch=true', verb: 'get', target: { group: '', version: 'v1', namespace: 'a', resource: 'pods', name: 'p' } },
  // fieldSelector=metadata.name names the object of a list or watch (RequestInfo.Name).
  { method: 'GET', url: '/api/v1/namespaces/a/secrets?fieldSelector=metadata.name%3Ds', verb: 'list', target: { group: '', version: 'v1', namespace: 'a', resource: 'secrets', name: 's' } },
  { method: 'GET', url: '/api/v1/namespaces/a/secrets?fieldSelector=type%3Dx,metadata.name%3D%3Ds&watch=1', verb: 'watch', target: { group: '', version: 'v1', namespace: 'a', resource: 'secrets', name: 's' }, longRunning: true },
  { method: 'GET', url: '/api/v1/namespaces/a/secrets?fieldSelector=metadata.name!%3Ds', verb: 'list', target: { group: '', version: 'v1', namespace: 'a', resource: 'secrets' } },
  // The proxy verb prefix takes no subresource.
  { method: 'GET', url: '/api/v1/proxy/namespaces/a/pods/p/x/y', verb: 'proxy', target: { group: '', version: 'v1', namespace: 'a', resource: 'pods', name: 'p' }, longRunning: true },
  { method: 'GET', url: 'https://x/api/v1/namespaces/a/pods/p%2Fexec', verb: 'get', target: { group: '', version: 'v1', namespace: 'a', resource: 'pods', name: 'p', subresource: 'exec' }, longRunning: true },
  { method: 'GET', url: '/api/v1/namespaces/a/pods/p/log?follow=yes', verb: 'get', target: { group: '', version: 'v1', namespace: 'a', resource: 'pods', name: 'p', subresource: 'log' }, longRunning: true },
];
for (const c of infos) {
  test(`${c.method} ${c.url} is verb ${c.verb} on ${JSON.stringify(c.target)}, as the API server reads it`, () => {
    const info = parseRequestInfo(c.method, c.url);
    assert.equal(info.verb, c.verb);
    assert.deepEqual(info.target, c.target);
    assert.equal(info.isLongRunning, c.longRunning ?? false);
  });
}

test('a verb prefix with nothing after it is refused, as the API server fails it', () => {
  assert.throws(() => parseRequestInfo('GET', '/api/v1/watch'), (err: unknown) => err instanceof ProxyError && err.status === 400);
});
