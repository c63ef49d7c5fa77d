/**
 * Attack class: request targets the gateway could read differently from the
 * API server (issue 13 item 2). Raw request lines over TLS (kubectl and
 * node:https normalise, so they cannot send these), through the gateway, to
 * the real kube-apiserver. Every form is either refused with a Kubernetes
 * `Status` 400, or seen and enforced exactly as its plain form: a gateway
 * guardrail that denies deletes in the namespace denies the encoded forms
 * too, the object survives, the event names the target, and an exec through
 * an encoded form is recorded by the stream relay.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import tls from 'node:tls';
import { after, before, test } from 'node:test';
import { compileGuardrail, type GuardrailPolicy } from '../../core/policy/guardrail.ts';
import { parseEnvelope } from '../../core/policy/document.ts';
import { harness, kubectl } from '../support/env.ts';
import { createNamespace, serviceAccountWithToken, startTestGateway, uniq, type TestGateway } from '../gateway/support.ts';
import { fakeNodeWithPod } from '../exec/helpers.ts';

const ns = `rt-${uniq()}`;
let t: TestGateway;
let token: string;
let dropNamespace: () => Promise<void>;

const policies: GuardrailPolicy[] = [
  compileGuardrail(
    parseEnvelope({
      apiVersion: 'kubetrail.io/v1alpha1',
      kind: 'GuardrailPolicy',
      metadata: { name: 'no-deletes-here' },
      spec: {
        stages: ['gateway'],
        action: 'deny',
        match: { resourceRules: [{ apiGroups: [''], resources: ['configmaps'], operations: ['DELETE'] }], namespaces: { include: [ns] } },
        validations: [{ name: 'never', expression: 'false', message: 'no deletes in this namespace' }],
      },
    }),
  ),
  compileGuardrail(
    parseEnvelope({
      apiVersion: 'kubetrail.io/v1alpha1',
      kind: 'GuardrailPolicy',
      metadata: { name: 'no-watches-here' },
      spec: {
        stages: ['gateway'],
        action: 'deny',
        match: { resourceRules: [{ apiGroups: [''], resources: ['secrets'], operations: ['WATCH'] }], namespaces: { include: [ns] } },
        validations: [{ name: 'never', expression: 'false', message: 'no secret watches in this namespace' }],
      },
    }),
  ),
];

before(async () => {
  dropNamespace = await createNamespace(ns);
  token = await serviceAccountWithToken(ns, 'rt');
  t = await startTestGateway({ guardrails: () => policies });
});
after(async () => {
  await t?.close();
  await dropNamespace?.();
});

interface RawReply {
  status: number;
  head: string;
  body: string;
  socket: tls.TLSSocket;
}

/**
 * Writes one request line (the target byte for byte) and headers, and
 * resolves with the response status and head once they arrive (the body is
 * whatever came with them, or all of it when the server closes).
 */
function raw(method: string, target: string, headers: string[] = [], opts: { keepOpen?: boolean } = {}): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    const u = new URL(t.gw.url);
    const socket = tls.connect({ host: u.hostname, port: Number(u.port), ca: t.caPem, servername: 'localhost' }, () => {
      const lines = [`${method} ${target} HTTP/1.1`, `Host: ${u.host}`, `Authorization: Bearer ${token}`, ...headers];
      if (!opts.keepOpen) lines.push('Connection: close');
      socket.write(Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'));
    });
    let buf = Buffer.alloc(0);
    let settled = false;
    const settle = (): void => {
      const end = buf.indexOf('\r\n\r\n');
      if (settled || end === -1) return;
      const head = buf.subarray(0, end).toString('latin1');
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
      // A Status body has a content-length; wait for it (or for the close).
      const cl = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? -1);
      if (!opts.keepOpen && cl >= 0 && buf.length < end + 4 + cl) return;
      settled = true;
      resolve({ status, head, body: buf.subarray(end + 4).toString('utf8'), socket });
    };
    socket.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      settle();
    });
    socket.on('end', () => {
      settle();
      if (!settled) resolve({ status: 0, head: buf.toString('latin1'), body: '', socket });
    });
    socket.on('error', (err) => (settled ? undefined : reject(err)));
  });
}

async function configMapExists(name: string): Promise<boolean> {
  const r = await kubectl(harness().ADMIN_KUBECONFIG, ['-n', ns, 'get', 'configmap', name, '--ignore-not-found', '-o', 'name']);
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim() !== '';
}

async function createConfigMaps(names: string[]): Promise<void> {
  const items = names.map((name) => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: ns } }));
  const r = await kubectl(harness().ADMIN_KUBECONFIG, ['create', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items }));
  assert.equal(r.status, 0, r.stderr);
}

/** Percent-encodes every byte of `s` (what no client needs to do, and the API server accepts). */
const pctAll = (s: string): string => [...Buffer.from(s)].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('');

/**
 * Forms of `DELETE configmaps/<name>` in the guarded namespace; `{ns}` and
 * `{name}` are filled in. `refused`: the gateway answers 400 itself; otherwise
 * the guardrail must deny it (403) as it denies the plain form.
 */
const deleteForms: { what: string; target: string; refused?: true }[] = [
  { what: 'the plain form', target: '/api/v1/namespaces/{ns}/configmaps/{name}' },
  { what: 'absolute form (https)', target: 'https://kubetrail.invalid/api/v1/namespaces/{ns}/configmaps/{name}' },
  { what: 'absolute form (upper-case scheme, port, userinfo)', target: 'HTTPS://u@kubetrail.invalid:1/api/v1/namespaces/{ns}/configmaps/{name}' },
  { what: 'absolute form (http)', target: 'http://kubetrail.invalid/api/v1/namespaces/{ns}/configmaps/{name}' },
  { what: '%2F joining namespace and resource', target: '/api/v1/namespaces/{ns}%2Fconfigmaps/{name}' },
  { what: '%2f joining resource and name', target: '/api/v1/namespaces/{ns}/configmaps%2f{name}' },
  { what: 'every byte of the namespace percent-encoded', target: '/api/v1/namespaces/{ns*}/configmaps/{name}' },
  { what: 'percent-encoded "namespaces"', target: `/api/v1/${pctAll('namespaces')}/{ns}/configmaps/{name}` },
  { what: 'a trailing slash', target: '/api/v1/namespaces/{ns}/configmaps/{name}/' },
  { what: 'a leading double slash', target: '//api/v1/namespaces/{ns}/configmaps/{name}', refused: true },
  { what: 'an empty segment (namespace-less for the API server)', target: '/api/v1/namespaces//{ns}/configmaps/{name}', refused: true },
  { what: 'a dot-dot segment', target: '/api/v1/namespaces/{ns}/configmaps/x/../{name}', refused: true },
  { what: 'an encoded dot-dot segment', target: '/api/v1/namespaces/{ns}/configmaps/x/%2e%2E/{name}', refused: true },
  { what: 'a dot segment', target: '/api/v1/namespaces/{ns}/./configmaps/{name}', refused: true },
  { what: 'a backslash', target: '/api/v1/namespaces/{ns}/configmaps\\{name}', refused: true },
  { what: 'an encoded backslash', target: '/api/v1/namespaces/{ns}/configmaps%5C{name}', refused: true },
  { what: 'a fragment', target: '/api/v1/namespaces/{ns}/configmaps/{name}#x', refused: true },
  { what: 'a semicolon path parameter', target: '/api/v1/namespaces/{ns}/configmaps/{name};x=y', refused: true },
  { what: 'an encoded NUL', target: '/api/v1/namespaces/{ns}/configmaps/{name}%00', refused: true },
  { what: 'an encoded newline', target: '/api/v1/namespaces/{ns}/configmaps/{name}%0d%0a', refused: true },
  { what: 'a non-UTF-8 escape', target: '/api/v1/namespaces/{ns}/configmaps/{name}%ff', refused: true },
  { what: 'a malformed escape', target: '/api/v1/namespaces/{ns}/configmaps/{name}%zz', refused: true },
  { what: 'a truncated escape', target: '/api/v1/namespaces/{ns}/configmaps/{name}%2', refused: true },
  { what: 'absolute form with no path', target: 'https://kubetrail.invalid?x=/api/v1/namespaces/{ns}/configmaps/{name}', refused: true },
  { what: 'a semicolon query separator', target: '/api/v1/namespaces/{ns}/configmaps/{name}?dryRun=All;x=1', refused: true },
  { what: 'a malformed query escape', target: '/api/v1/namespaces/{ns}/configmaps/{name}?x=%zz', refused: true },
];

test('every form of a guarded delete is either refused with a 400 Status or denied by the guardrail, and the object survives', async () => {
  const cases = deleteForms.map((f) => ({ ...f, name: `c-${randomBytes(3).toString('hex')}` }));
  await createConfigMaps(cases.map((c) => c.name));
  const failures: string[] = [];
  for (const c of cases) {
    const target = c.target.replaceAll('{ns*}', pctAll(ns)).replaceAll('{ns}', ns).replaceAll('{name}', c.name);
    const r = await raw('DELETE', target);
    r.socket.destroy();
    const want = c.refused ? 400 : 403;
    if (r.status !== want) failures.push(`${c.what} (${target}): got ${r.status}, want ${want}: ${r.body.slice(0, 200)}`);
    else {
      const status = JSON.parse(r.body) as { kind: string; code: number; message: string };
      if (status.kind !== 'Status' || status.code !== want) failures.push(`${c.what}: not a Status ${want}: ${r.body}`);
      if (c.refused && !/request target/.test(status.message)) failures.push(`${c.what}: unclear message: ${status.message}`);
      if (!c.refused && !/no deletes in this namespace/.test(status.message)) failures.push(`${c.what}: not the guardrail: ${status.message}`);
    }
    if (!(await configMapExists(c.name))) failures.push(`${c.what} (${target}): the config map was deleted`);
    if (!c.refused) {
      const ev = t.sink.ofType('api.request').find((e) => e.target?.name === c.name);
      if (ev === undefined) failures.push(`${c.what}: no api.request event names the target`);
      else if (ev.target?.namespace !== ns || ev.target?.resource !== 'configmaps' || ev.body.status !== 403) failures.push(`${c.what}: event target ${JSON.stringify(ev.target)} status ${ev.body.status}`);
    }
  }
  assert.deepEqual(failures, []);
});

test('a refused request target is recorded as a refusal under the caller', async () => {
  const name = `c-${uniq()}`;
  const r = await raw('DELETE', `/api/v1/namespaces/${ns}/configmaps/x/../${name}`);
  r.socket.destroy();
  assert.equal(r.status, 400);
  const ev = t.sink.ofType('api.request').find((e) => e.body.path.includes(name));
  assert.ok(ev, 'the refusal is recorded');
  assert.equal(ev.body.status, 400);
  assert.equal(ev.actor?.username, `system:serviceaccount:${ns}:rt`);
});

test('a watch spelled ?watch=yes or ?watch=TRUE is a watch for the guardrail, as it is for the API server', async () => {
  for (const q of ['watch=yes', 'watch=TRUE', 'watch=', 'watch=1&watch=false']) {
    const r = await raw('GET', `/api/v1/namespaces/${ns}/secrets?${q}`, [], { keepOpen: true });
    r.socket.destroy();
    assert.equal(r.status, 403, `${q}: ${r.head}`);
  }
  // And the spellings the API server reads as a list are not refused.
  for (const q of ['watch=false', 'watch=0', 'watch=FALSE']) {
    const r = await raw('GET', `/api/v1/namespaces/${ns}/secrets?${q}`);
    r.socket.destroy();
    assert.equal(r.status, 200, `${q}: ${r.head}`);
  }
});

test('other methods than the API server serves are refused before they reach it', async () => {
  const r = await raw('PROPFIND', `/api/v1/namespaces/${ns}/configmaps`);
  r.socket.destroy();
  assert.equal(r.status, 400, r.head);
  const star = await raw('OPTIONS', '*');
  star.socket.destroy();
  assert.equal(star.status, 400, star.head);
});

test('an exec through an encoded or absolute-form target is recorded by the stream relay (or refused), never passed through unrecorded', async (tc) => {
  const { pod } = await fakeNodeWithPod(tc, ns);
  const forms = [
    `/api/v1/namespaces/${ns}/pods/${pod}%2Fexec?command=echo&command=hi&stdout=1`,
    `https://kubetrail.invalid/api/v1/namespaces/${ns}/pods/${pod}/exec?command=echo&command=hi&stdout=1`,
    `/api/v1/namespaces/${ns}%2Fpods%2F${pod}/exec?command=echo&command=hi&stdout=1`,
    `/api/v1/namespaces/${ns}/pods/${pod}/exec/?command=echo&command=hi&stdout=1`,
  ];
  for (const target of forms) {
    const before = t.sink.ofType('session.start').length;
    const r = await raw('GET', target, ['Connection: Upgrade', 'Upgrade: websocket', 'Sec-WebSocket-Version: 13', `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`, 'Sec-WebSocket-Protocol: v5.channel.k8s.io'], { keepOpen: true });
    try {
      if (r.status === 400) continue;
      assert.equal(r.status, 101, `${target}: ${r.head}`);
      // The stream relay records session.start before it opens the upstream exec.
      const deadline = Date.now() + 20_000;
      while (t.sink.ofType('session.start').length === before && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
      const start = t.sink.ofType('session.start').at(-1);
      assert.ok(t.sink.ofType('session.start').length > before && start, `${target}: exec not recorded`);
      assert.equal(start.target?.name, pod);
      assert.equal(start.target?.namespace, ns);
    } finally {
      r.socket.destroy();
    }
  }
});
