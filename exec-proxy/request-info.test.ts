import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isStreamSubresource, parseRequestInfo } from './request-info.ts';

const cases: { method: string; url: string; verb: string; target: Record<string, string>; discovery?: boolean; longRunning?: boolean; write?: boolean }[] = [
  { method: 'GET', url: '/api/v1/namespaces/a/pods', verb: 'list', target: { group: '', version: 'v1', namespace: 'a', resource: 'pods' } },
  { method: 'GET', url: '/api/v1/namespaces/a/pods/p', verb: 'get', target: { group: '', version: 'v1', namespace: 'a', resource: 'pods', name: 'p' } },
  { method: 'GET', url: '/api/v1/namespaces/a/pods?watch=true&resourceVersion=1', verb: 'watch', target: { group: '', version: 'v1', namespace: 'a', resource: 'pods' }, longRunning: true },
  { method: 'GET', url: '/api/v1/watch/namespaces/a/pods/p', verb: 'watch', target: { group: '', version: 'v1', namespace: 'a', resource: 'pods', name: 'p' }, longRunning: true },
  { method: 'GET', url: '/api/v1/namespaces/a/pods/p/log?follow=true', verb: 'get', target: { group: '', version: 'v1', namespace: 'a', resource: 'pods', name: 'p', subresource: 'log' }, longRunning: true },
  { method: 'POST', url: '/apis/apps/v1/namespaces/a/deployments?fieldManager=kubectl', verb: 'create', target: { group: 'apps', version: 'v1', namespace: 'a', resource: 'deployments' }, write: true },
  { method: 'PATCH', url: '/apis/apps/v1/namespaces/a/deployments/d/scale', verb: 'patch', target: { group: 'apps', version: 'v1', namespace: 'a', resource: 'deployments', name: 'd', subresource: 'scale' }, write: true },
  { method: 'DELETE', url: '/api/v1/namespaces/a/configmaps', verb: 'deletecollection', target: { group: '', version: 'v1', namespace: 'a', resource: 'configmaps' }, write: true },
  { method: 'DELETE', url: '/api/v1/namespaces/a', verb: 'delete', target: { group: '', version: 'v1', resource: 'namespaces', name: 'a' }, write: true },
  { method: 'PUT', url: '/api/v1/namespaces/a/finalize', verb: 'update', target: { group: '', version: 'v1', resource: 'namespaces', name: 'a', subresource: 'finalize' }, write: true },
  { method: 'GET', url: '/api/v1/namespaces', verb: 'list', target: { group: '', version: 'v1', resource: 'namespaces' } },
  { method: 'GET', url: '/apis/rbac.authorization.k8s.io/v1/clusterroles/edit', verb: 'get', target: { group: 'rbac.authorization.k8s.io', version: 'v1', resource: 'clusterroles', name: 'edit' } },
  { method: 'POST', url: '/api/v1/namespaces/a/pods/p/exec?command=sh', verb: 'create', target: { group: '', version: 'v1', namespace: 'a', resource: 'pods', name: 'p', subresource: 'exec' }, longRunning: true, write: true },
  { method: 'GET', url: '/api', verb: 'get', target: {}, discovery: true },
  { method: 'GET', url: '/apis/apps/v1', verb: 'get', target: {}, discovery: true },
  { method: 'GET', url: '/openapi/v3', verb: 'get', target: {}, discovery: true },
  { method: 'GET', url: '/version', verb: 'get', target: {}, discovery: true },
  { method: 'GET', url: '/healthz', verb: 'get', target: {}, discovery: false },
];

for (const c of cases) {
  test(`${c.method} ${c.url} is verb ${c.verb} on ${JSON.stringify(c.target)}`, () => {
    const info = parseRequestInfo(c.method, c.url);
    assert.equal(info.verb, c.verb);
    assert.deepEqual(info.target, c.target);
    assert.equal(info.isDiscovery, c.discovery ?? false);
    assert.equal(info.isLongRunning, c.longRunning ?? false);
    assert.equal(info.isWrite, c.write ?? false);
  });
}

test('exec, attach and portforward on pods are stream subresources; log is not', () => {
  assert.equal(isStreamSubresource(parseRequestInfo('GET', '/api/v1/namespaces/a/pods/p/exec')), true);
  assert.equal(isStreamSubresource(parseRequestInfo('GET', '/api/v1/namespaces/a/pods/p/attach')), true);
  assert.equal(isStreamSubresource(parseRequestInfo('GET', '/api/v1/namespaces/a/pods/p/portforward')), true);
  assert.equal(isStreamSubresource(parseRequestInfo('GET', '/api/v1/namespaces/a/pods/p/log')), false);
});
