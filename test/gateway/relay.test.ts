/**
 * Faithful relay against the real API server: large lists byte-for-byte in
 * JSON and protobuf, a protobuf write, upgrades (a WebSocket watch gets its
 * 101 and streams; kubectl exec on a pod without a node gets the API server's
 * own error), a write's response held until its event is durable (and cut
 * when it cannot be), and gateway guardrails denying before the API server.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import https from 'node:https';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';
import { SinkError } from '../../core/sinks/errors.ts';
import { parseEnvelope } from '../../core/policy/document.ts';
import { compileGuardrail, type GuardrailPolicy } from '../../core/policy/guardrail.ts';
import { harness, kubectl } from '../support/env.ts';
import { adminApply, auditEntries, createNamespace, GatedSink, serviceAccountWithToken, startTestGateway, uniq, type TestGateway } from './support.ts';

const ns = `gw-relay-${uniq()}`;
let t: TestGateway;
let sink: GatedSink;
let dropNs: () => Promise<void>;
let token: string;
let policies: GuardrailPolicy[] = [];

before(async () => {
  sink = new GatedSink();
  t = await startTestGateway({ sink, guardrails: () => policies });
  dropNs = await createNamespace(ns);
  token = await serviceAccountWithToken(ns, 'relay');
  // ~2 MB of ConfigMaps to list.
  const big = 'x'.repeat(100 * 1024);
  const docs = Array.from({ length: 20 }, (_, i) => `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: big-${i}, namespace: ${ns}}\ndata: {blob: "${big}"}\n`);
  await adminApply(docs.join('---\n'));
});
after(async () => {
  await t?.close();
  await dropNs?.();
});

function get(base: string, path: string, headers: Record<string, string>, ca: string): Promise<{ status: number; body: Buffer; contentType: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = https.request(`${base}${path}`, { headers, ca, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), contentType: res.headers['content-type'] }));
    });
    req.on('error', reject);
    req.end();
  });
}

for (const accept of ['application/json', 'application/vnd.kubernetes.protobuf', 'application/cbor']) {
  test(`a large list as ${accept} is relayed byte for byte as the API server sends it`, async () => {
    const env = harness();
    const { readFileSync } = await import('node:fs');
    const apiCa = readFileSync(env.APISERVER_CA, 'utf8');
    // Other tests write to the cluster meanwhile: pin both lists to one exact resourceVersion so they must be identical.
    const first = await get(env.APISERVER_URL, `/api/v1/namespaces/${ns}/configmaps?limit=1`, { authorization: `Bearer ${token}` }, apiCa);
    const rv = (JSON.parse(first.body.toString('utf8')) as { metadata: { resourceVersion: string } }).metadata.resourceVersion;
    const path = `/api/v1/namespaces/${ns}/configmaps?resourceVersion=${rv}&resourceVersionMatch=Exact`;
    const headers = { authorization: `Bearer ${token}`, accept };
    const via = await get(t.gw.url, path, headers, t.caPem);
    const direct = await get(env.APISERVER_URL, path, headers, apiCa);
    assert.equal(via.status, direct.status);
    assert.equal(via.contentType, direct.contentType);
    if (direct.status === 200) assert.ok(direct.body.length > 2_000_000, `list is large (${direct.body.length})`);
    assert.equal(createHash('sha256').update(via.body).digest('hex'), createHash('sha256').update(direct.body).digest('hex'));
  });
}

test('a protobuf write goes through unchanged and is recorded without decoding it', async () => {
  const path = `/api/v1/namespaces/${ns}/configmaps/big-0`;
  const got = await get(t.gw.url, path, { authorization: `Bearer ${token}`, accept: 'application/vnd.kubernetes.protobuf' }, t.caPem);
  assert.equal(got.status, 200);
  const put = await t.request({ method: 'PUT', path, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/vnd.kubernetes.protobuf', accept: 'application/json' }, body: got.body as unknown as string });
  assert.equal(put.status, 200, put.body);
  const ev = sink.inner.ofType('api.request').find((e) => e.body.method === 'PUT' && e.target?.name === 'big-0');
  assert.deepEqual(ev?.body.requestBody, { unrecorded: 'application/vnd.kubernetes.protobuf', bytes: got.body.length });
});

test('a WebSocket watch through the gateway gets the API server 101 and streams events', async () => {
  const name = `ws-${uniq()}`;
  const u = `${t.gw.url.replace('https:', 'wss:')}/api/v1/namespaces/${ns}/configmaps?watch=true&fieldSelector=metadata.name%3D${name}`;
  const ws = new WebSocket(u, [`base64url.bearer.authorization.k8s.io.${Buffer.from(token).toString('base64url')}`, 'base64.binary.k8s.io'], { ca: t.caPem, origin: 'https://127.0.0.1' });
  const events: string[] = [];
  const opened = new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`status ${res.statusCode}`)));
  });
  const added = new Promise<void>((resolve) =>
    ws.on('message', (data: Buffer) => {
      // Text frames: JSON as the API server writes it (base64 only if it is not JSON already).
      const raw = data.toString('utf8');
      const text = raw.startsWith('{') ? raw : Buffer.from(raw, 'base64').toString('utf8');
      events.push(text);
      if (text.includes('"ADDED"') && text.includes(name)) resolve();
    }),
  );
  try {
    await opened;
    assert.equal(ws.protocol, 'base64.binary.k8s.io');
    const r = await kubectl(harness().ADMIN_KUBECONFIG, ['-n', ns, 'create', 'configmap', name, '--from-literal=a=b']);
    assert.equal(r.status, 0, r.stderr);
    await added;
  } finally {
    ws.terminate();
  }
  const entries = await auditEntries((e) => String(e['requestURI'] ?? '').includes(`metadata.name%3D${name}`) && e['verb'] === 'watch');
  assert.ok(entries.length >= 1, 'the API server saw the watch');
  assert.equal((entries[0]?.['impersonatedUser'] as { username: string }).username, `system:serviceaccount:${ns}:relay`);
});

test('kubectl exec through the gateway reaches the API server as the caller and relays its answer', async () => {
  const pod = `p-${uniq()}`;
  await adminApply(`apiVersion: v1\nkind: Pod\nmetadata: {name: ${pod}, namespace: ${ns}}\nspec: {nodeSelector: {kubetrail.test/no-such-node: "x"}, containers: [{name: c, image: busybox}]}\n`);
  const kc = t.kubeconfigFor(token, ns);
  const r = await kubectl(kc, ['exec', pod, '--', 'true'], undefined, { timeoutMs: 30_000 });
  assert.notEqual(r.status, 0);
  // No node can take the pod (its nodeSelector matches none, also on the harness node): the API
  // server refuses the stream itself, and kubectl shows its message.
  assert.match(r.stderr, new RegExp(`pod ${pod} does not have a host assigned`));
  const entries = await auditEntries((e) => String(e['requestURI'] ?? '').includes(`/pods/${pod}/exec`));
  assert.ok(entries.length >= 1, 'the exec request reached the API server');
  assert.equal((entries[0]?.['impersonatedUser'] as { username: string }).username, `system:serviceaccount:${ns}:relay`);
});

test("a write's response completes only after its event is durable, and is cut when it cannot be made durable", async () => {
  let release!: () => void;
  sink.gate = new Promise<void>((r) => (release = r));
  sink.waiting = [];
  let ended = false;
  const name = `held-${uniq()}`;
  const p = t
    .request({ method: 'POST', path: `/api/v1/namespaces/${ns}/configmaps`, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name }, data: { password: 'hunter2' } }) })
    .then((r) => {
      ended = true;
      return r;
    });
  while (!sink.waiting.some((d) => d.type === 'api.request')) await new Promise((r) => setTimeout(r, 10));
  // The upstream create is done and the event is being emitted; the client must not have the full response yet.
  assert.equal(ended, false);
  sink.gate = undefined;
  release();
  const r = await p;
  assert.equal(r.status, 201);
  assert.equal((JSON.parse(r.body) as { metadata: { name: string } }).metadata.name, name);

  // Not durable: the connection is cut before the response completes.
  sink.inner.failWith = new SinkError('SINK_ERR_SPOOL_FULL', 'test: spool full');
  try {
    await assert.rejects(
      t.request({ method: 'POST', path: `/api/v1/namespaces/${ns}/configmaps`, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `cut-${uniq()}` } }) }),
      /aborted|socket hang up|ECONNRESET/,
    );
  } finally {
    sink.inner.failWith = undefined;
  }
});

test('a recorded write body is masked (Secret data never appears in the event)', async () => {
  const name = `s-${uniq()}`;
  const r = await t.request({ method: 'POST', path: `/api/v1/namespaces/${ns}/secrets`, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name }, stringData: { password: 'hunter2' } }) });
  assert.equal(r.status, 201, r.body);
  const ev = sink.inner.ofType('api.request').find((e) => e.body.method === 'POST' && (e.body.requestBody as { metadata?: { name?: string } } | undefined)?.metadata?.name === name);
  assert.ok(ev);
  assert.ok(!JSON.stringify(ev).includes('hunter2'), 'secret value not recorded');
});

test('a gateway guardrail denies a request before it reaches the API server and records its decision', async () => {
  policies = [
    compileGuardrail(
      parseEnvelope({
        apiVersion: 'kubetrail.io/v1alpha1',
        kind: 'GuardrailPolicy',
        metadata: { name: 'no-forbidden-configmaps' },
        spec: {
          stages: ['gateway'],
          action: 'deny',
          match: { resourceRules: [{ apiGroups: [''], resources: ['configmaps'], operations: ['CREATE', 'DELETE'] }] },
          validations: [
            { name: 'by-name', expression: "!request.name.startsWith('forbidden-')", message: 'forbidden-* config maps are off limits' },
            { name: 'by-object', expression: "object == null || !object.metadata.name.startsWith('forbidden-')", message: 'forbidden-* config maps are off limits' },
          ],
        },
      }),
    ),
  ];
  try {
    const name = `forbidden-${uniq()}`;
    await adminApply(`apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ${name}, namespace: ${ns}}\n`);
    const kc = t.kubeconfigFor(token, ns);
    // Request attributes: kubectl delete names the object in the URL.
    const r = await kubectl(kc, ['delete', 'configmap', name]);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /kubetrail guardrail "no-forbidden-configmaps" denied the request: forbidden-\* config maps are off limits/);
    assert.equal((await kubectl(harness().ADMIN_KUBECONFIG, ['-n', ns, 'get', 'configmap', name])).status, 0, 'still there');
    // The object: a JSON create is decoded and seen by the rule.
    const created = `forbidden-${uniq()}`;
    const post = await t.request({ method: 'POST', path: `/api/v1/namespaces/${ns}/configmaps`, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: created } }) });
    assert.equal(post.status, 403);
    assert.match((JSON.parse(post.body) as { message: string }).message, /off limits/);
    const ok = await kubectl(kc, ['create', 'configmap', `fine-${uniq()}`, '--from-literal=a=b']);
    assert.equal(ok.status, 0, ok.stderr);
    const entries = await auditEntries((e) => (e['verb'] === 'delete' && String(e['requestURI']).includes(name)) || JSON.stringify(e).includes(created));
    assert.deepEqual(entries, [], 'the denied requests never reached the API server');
    const decision = sink.inner.ofType('guardrail.decision').find((e) => e.body.policy === 'no-forbidden-configmaps');
    assert.equal(decision?.body.action, 'deny');
    assert.equal(decision?.actor?.username, `system:serviceaccount:${ns}:relay`);
    const denied = sink.inner.ofType('api.request').find((e) => e.body.status === 403 && e.body.decision?.action === 'deny');
    assert.ok(denied, 'the refused request is recorded with its decision');
  } finally {
    policies = [];
  }
});

test('a protobuf write the gateway cannot read is left to admission by policies that also run there, and fails closed for gateway-only ones', async () => {
  const objectRule = (name: string, stages: string[]) =>
    compileGuardrail(
      parseEnvelope({
        apiVersion: 'kubetrail.io/v1alpha1',
        kind: 'GuardrailPolicy',
        metadata: { name },
        spec: {
          stages,
          action: 'deny',
          match: { resourceRules: [{ apiGroups: [''], resources: ['configmaps'], operations: ['UPDATE'] }] },
          validations: [{ name: 'by-object', expression: "!object.metadata.name.startsWith('forbidden-')", message: 'forbidden-* config maps are off limits' }],
        },
      }),
    );
  const path = `/api/v1/namespaces/${ns}/configmaps/big-0`;
  const got = await get(t.gw.url, path, { authorization: `Bearer ${token}`, accept: 'application/vnd.kubernetes.protobuf' }, t.caPem);
  assert.equal(got.status, 200);
  const put = () =>
    t.request({ method: 'PUT', path, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/vnd.kubernetes.protobuf', accept: 'application/json' }, body: got.body as unknown as string });
  try {
    policies = [objectRule('both-stages', ['admission', 'gateway'])];
    const deferred = await put();
    assert.equal(deferred.status, 200, `deferred to admission, so the gateway lets it through: ${deferred.body}`);
    policies = [objectRule('gateway-only', ['gateway'])];
    const closed = await put();
    assert.equal(closed.status, 403, 'a gateway-only rule that needs the object fails closed');
    assert.match((JSON.parse(closed.body) as { message: string }).message, /kubetrail guardrail "gateway-only" denied the request/);
  } finally {
    policies = [];
  }
});

test('closing the gateway ends an open watch cleanly and waits for its event', async () => {
  const g = await startTestGateway();
  const kc = g.kubeconfigFor(token, ns);
  const { spawn } = await import('node:child_process');
  const child = spawn('kubectl', ['--kubeconfig', kc, 'get', 'configmaps', '-w', '-o', 'name', '--request-timeout=0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  try {
    const deadline = Date.now() + 30_000;
    while (!out.includes('configmap/') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.ok(out.includes('configmap/'), 'the watch never listed anything');
    // kubectl lists, then opens the watch: only a change seen through the
    // watch shows the watch itself is open at the gateway (closing between the
    // two would test a refused request instead).
    const marker = `watch-live-${uniq()}`;
    await adminApply(`apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ${marker}, namespace: ${ns}}\n`);
    while (!out.includes(`configmap/${marker}`) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.ok(out.includes(`configmap/${marker}`), 'the watch never showed the new ConfigMap');
    // Bounded, so a shutdown that hangs fails the test instead of the whole run.
    const closed = await Promise.race([g.close().then(() => true), new Promise<false>((r) => setTimeout(() => r(false), 30_000))]);
    assert.ok(closed, 'close() did not return within 30 s');
    // The watch was recorded before close() returned.
    assert.ok(g.sink.ofType('api.request').some((e) => e.body.verb === 'watch' && e.target?.namespace === ns));
  } finally {
    child.kill('SIGTERM');
  }
  await exited;
});
