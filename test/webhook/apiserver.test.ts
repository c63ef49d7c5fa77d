/**
 * The webhook behind the real kube-apiserver (harness), registered by URL
 * with a caBundle, driven by the real kubectl as the agent user (group
 * agents) and as admin. Events go to an in-memory sink here; the Kafka round
 * trip is in kafka.test.ts.
 */
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { MemorySink } from '../../core/sinks/memory-sink.ts';
import { SinkError } from '../../core/sinks/errors.ts';
import type { KubetrailEvent } from '../../core/events/model.ts';
import { MASK } from '../../core/masking/object.ts';
import { harness, kubectl } from '../support/env.ts';
import { createNamespaceLookup } from '../../webhook/namespaces.ts';
import { grantAgent, registerWebhooks, startTestWebhook, uniqueId, type TestWebhook } from './support.ts';

const id = uniqueId();
const sink = new MemorySink();
let w: TestWebhook;
let unregister: (() => Promise<void>) | undefined;
const execPod = `kt-exec-${id}`;
const cleanups: (() => Promise<unknown>)[] = [];

function reviews(): KubetrailEvent<'admission.review'>[] {
  return sink.ofType('admission.review');
}

function reviewsOf(name: string, webhook?: 'validate' | 'mutate'): KubetrailEvent<'admission.review'>[] {
  return reviews().filter((e) => e.target?.name === name && (webhook === undefined || e.body.webhook === webhook));
}

function labelled(obj: Record<string, any>): Record<string, any> {
  obj['metadata'] = { ...obj['metadata'], labels: { ...(obj['metadata']?.labels ?? {}), 'kubetrail-test': id } };
  return obj;
}

before(async () => {
  const env = harness();
  w = await startTestWebhook(sink, {}, { namespaceLookup: createNamespaceLookup({ kubeconfig: env.ADMIN_KUBECONFIG, cacheTtlMs: 100 }) });
  cleanups.push(
    await grantAgent(env.ADMIN_KUBECONFIG, env.AGENT_KUBECONFIG, 'agents', `kt-wh-${id}`, [
      { apiGroups: [''], resources: ['pods', 'secrets', 'configmaps'], verbs: ['create', 'get', 'list', 'watch', 'update', 'patch', 'delete'] },
      { apiGroups: ['apps'], resources: ['deployments'], verbs: ['create', 'get', 'list', 'watch', 'update', 'patch', 'delete'] },
    ]),
  );
  unregister = await registerWebhooks(env.ADMIN_KUBECONFIG, { id, url: w.url, caBundle: w.pki.caBundle, connectPods: [execPod] }, () => reviews().some((e) => e.target?.name === `kt-probe-${id}`));
});

after(async () => {
  const env = harness();
  await unregister?.();
  for (const c of cleanups.reverse()) await c();
  await kubectl(env.ADMIN_KUBECONFIG, ['-n', 'agents', 'delete', 'pods,deployments,secrets,configmaps', '-l', `kubetrail-test=${id}`, '--ignore-not-found', '--wait=false']);
  await w?.close();
});

test('as the agent, kubectl apply of a privileged pod is denied with the policy message and the denial is recorded', async () => {
  const env = harness();
  const name = `priv-${id}`;
  const podDoc = labelled({ apiVersion: 'v1', kind: 'Pod', metadata: { name }, spec: { containers: [{ name: 'app', image: 'nginx', securityContext: { privileged: true } }] } });
  const r = await kubectl(env.AGENT_KUBECONFIG, ['-n', 'agents', 'apply', '-f', '-'], JSON.stringify(podDoc));
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /admission webhook "objects\.validate\.kubetrail\.io" denied the request: privileged containers are not allowed for agents \(container app\)/);
  const ev = reviewsOf(name, 'validate').at(-1);
  assert.ok(ev, 'the denial was recorded');
  assert.equal(ev.body.decision.allowed, false);
  assert.equal(ev.body.decision.policy, 'agents-pod-security');
  assert.equal(ev.actor?.username, 'agent-ci');
  assert.ok(ev.actor?.groups.includes('agents'));
  const got = await kubectl(env.ADMIN_KUBECONFIG, ['-n', 'agents', 'get', 'pod', name, '--ignore-not-found', '-o', 'name']);
  assert.equal(got.stdout.trim(), '', 'the pod was not created');
});

test('as the agent, a normal Deployment is admitted and carries the stamp annotations naming the recorded event', async () => {
  const env = harness();
  const name = `web-${id}`;
  const deploy = labelled({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name },
    spec: {
      replicas: 1,
      selector: { matchLabels: { app: name } },
      template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'app', image: 'nginx:1.27', env: [{ name: 'API_TOKEN', value: 's3cr3t' }] }] } },
    },
  });
  const r = await kubectl(env.AGENT_KUBECONFIG, ['-n', 'agents', 'apply', '-f', '-'], JSON.stringify(deploy));
  assert.equal(r.status, 0, r.stderr);
  const got = JSON.parse((await kubectl(env.ADMIN_KUBECONFIG, ['-n', 'agents', 'get', 'deployment', name, '-o', 'json'])).stdout);
  const ann = got.metadata.annotations;
  assert.equal(ann['kubetrail.io/last-modified-by'], 'agent-ci');
  const mutateEv = reviewsOf(name, 'mutate').find((e) => e.id === ann['kubetrail.io/event']);
  assert.ok(mutateEv, 'kubetrail.io/event names the recorded mutate event');
  assert.equal(mutateEv.body.operation, 'CREATE');
  // The API server gives each webhook call its own request uid, so the two events of one write join through the
  // stamp: the validating webhook sees the mutated object, whose kubetrail.io/event names the mutate event.
  const validateEv = reviewsOf(name, 'validate').find((e) => (e.body.object as any)?.metadata?.annotations?.['kubetrail.io/event'] === mutateEv.id);
  assert.ok(validateEv, 'the validate event names the mutate event through the stamp');
  assert.notEqual(validateEv.correlation?.admissionUid, mutateEv.correlation?.admissionUid, 'each webhook call has its own uid');
  assert.equal(validateEv.body.decision.allowed, true);
  const admittedAnn = (validateEv.body.object as any).metadata.annotations;
  assert.equal(admittedAnn['kubetrail.io/event'], mutateEv.id, 'validate saw the object as mutated');
  assert.equal((validateEv.body.object as any).spec.template.spec.containers[0].env[0].value, MASK);
  assert.equal(got.spec.template.spec.containers[0].env[0].value, 's3cr3t', 'masked in events only, never in what is admitted');
  // The API server's audit log carries our event id (audit annotation "<webhook>/event").
  const { readFileSync } = await import('node:fs');
  const audit = readFileSync(env.APISERVER_AUDIT_LOG, 'utf8');
  assert.ok(audit.includes(mutateEv.id), 'the API server audit log names the kubetrail event');
});

test("a Secret's event holds masked data while the Secret itself keeps its data", async () => {
  const env = harness();
  const name = `sec-${id}`;
  const secret = labelled({ apiVersion: 'v1', kind: 'Secret', metadata: { name }, stringData: { password: 'hunter2-plaintext' }, data: { token: Buffer.from('tok-value').toString('base64') } });
  const r = await kubectl(env.AGENT_KUBECONFIG, ['-n', 'agents', 'apply', '-f', '-'], JSON.stringify(secret));
  assert.equal(r.status, 0, r.stderr);
  const evs = reviewsOf(name);
  assert.ok(evs.length >= 2, 'mutate and validate both recorded');
  for (const ev of evs) {
    const text = JSON.stringify(ev);
    assert.doesNotMatch(text, /hunter2-plaintext|aHVudGVyMi1wbGFpbnRleHQ|tok-value|dG9rLXZhbHVl/, `${ev.body.webhook} event leaks secret data`);
  }
  const v = evs.find((e) => e.body.webhook === 'validate') as KubetrailEvent<'admission.review'>;
  assert.deepEqual(Object.keys((v.body.object as any).data).sort(), ['password', 'token']);
  assert.equal((v.body.object as any).data.password, MASK);
  const got = JSON.parse((await kubectl(env.ADMIN_KUBECONFIG, ['-n', 'agents', 'get', 'secret', name, '-o', 'json'])).stdout);
  assert.equal(Buffer.from(got.data.password, 'base64').toString(), 'hunter2-plaintext');
});

test('kubectl exec into kube-system is denied at CONNECT, and the command is in the event', async () => {
  const env = harness();
  // A pod to exec into (it stays Pending: there is no kubelet), and RBAC that lets the agent exec in kube-system,
  // so that it is the guardrail, not RBAC, that stops it.
  const created = await kubectl(env.ADMIN_KUBECONFIG, ['-n', 'kube-system', 'apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name: execPod }, spec: { containers: [{ name: 'app', image: 'busybox' }] } }));
  assert.equal(created.status, 0, created.stderr);
  cleanups.push(() => kubectl(env.ADMIN_KUBECONFIG, ['-n', 'kube-system', 'delete', 'pod', execPod, '--ignore-not-found', '--wait=false']));
  cleanups.push(
    await grantAgent(env.ADMIN_KUBECONFIG, env.AGENT_KUBECONFIG, 'kube-system', `kt-exec-${id}`, [
      { apiGroups: [''], resources: ['pods/exec', 'pods/attach', 'pods/portforward'], verbs: ['create', 'get'] },
      { apiGroups: [''], resources: ['pods'], verbs: ['get', 'list'] },
    ]),
  );

  let r = await kubectl(env.AGENT_KUBECONFIG, ['-n', 'kube-system', 'exec', execPod, '--', 'cat', '/etc/shadow'], undefined, { timeoutMs: 30_000 });
  // RBAC caches can lag a moment behind the new binding; retry only while RBAC (not the webhook) says no.
  for (let i = 0; i < 20 && r.status !== 0 && /User "agent-ci" cannot/.test(r.stderr); i++) {
    await new Promise((res) => setTimeout(res, 250));
    r = await kubectl(env.AGENT_KUBECONFIG, ['-n', 'kube-system', 'exec', execPod, '--', 'cat', '/etc/shadow'], undefined, { timeoutMs: 30_000 });
  }
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /admission webhook "connect\.validate\.kubetrail\.io" denied the request: agents may not exec into kube-system \(command: cat \/etc\/shadow\)/);
  const ev = reviewsOf(execPod, 'validate').find((e) => e.body.operation === 'CONNECT');
  assert.ok(ev, 'the CONNECT was recorded');
  assert.equal(ev.target?.subresource, 'exec');
  assert.equal(ev.target?.namespace, 'kube-system');
  assert.deepEqual((ev.body.object as any).command, ['cat', '/etc/shadow']);
  assert.equal(ev.body.kind?.kind, 'PodExecOptions');
  assert.equal(ev.body.decision.allowed, false);
});

test('--dry-run=server is evaluated but not recorded', async () => {
  const env = harness();
  const bad = `dry-priv-${id}`;
  const good = `dry-cm-${id}`;
  const before = reviews().length;
  const denied = await kubectl(env.AGENT_KUBECONFIG, ['-n', 'agents', 'apply', '--dry-run=server', '-f', '-'], JSON.stringify(labelled({ apiVersion: 'v1', kind: 'Pod', metadata: { name: bad }, spec: { hostPID: true, containers: [{ name: 'app', image: 'nginx' }] } })));
  assert.notEqual(denied.status, 0);
  assert.match(denied.stderr, /hostPID is not allowed for agents/);
  const admitted = await kubectl(env.AGENT_KUBECONFIG, ['-n', 'agents', 'apply', '--dry-run=server', '-o', 'json', '-f', '-'], JSON.stringify(labelled({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: good }, data: { a: 'b' } })));
  assert.equal(admitted.status, 0, admitted.stderr);
  const preview = JSON.parse(admitted.stdout);
  assert.equal(preview.metadata.annotations['kubetrail.io/last-modified-by'], 'agent-ci', 'the dry-run shows the stamp');
  assert.equal(preview.metadata.annotations['kubetrail.io/event'], undefined, 'but no event id: nothing was recorded');
  assert.equal(reviews().length, before, 'no event for dry-run requests');
});

test('a policy edited on disk takes effect without a restart', async () => {
  const env = harness();
  const file = path.join(w.policies, `no-forbidden-${id}.yaml`);
  const changed = new Promise<void>((resolve) => {
    const off = w.webhook.policies.onChange(() => {
      off();
      resolve();
    });
  });
  writeFileSync(
    file,
    `apiVersion: kubetrail.io/v1alpha1
kind: GuardrailPolicy
metadata: {name: no-forbidden-key}
spec:
  match:
    resourceRules: [{apiGroups: [""], resources: [configmaps], operations: [CREATE, UPDATE]}]
  validations:
    - expression: "!has(object.data) || !('forbidden' in object.data)"
      message: the key "forbidden" is not allowed (policy added at run time)
`,
  );
  await changed;
  const r = await kubectl(env.AGENT_KUBECONFIG, ['-n', 'agents', 'apply', '-f', '-'], JSON.stringify(labelled({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `cm-forbidden-${id}` }, data: { forbidden: 'x' } })));
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /the key "forbidden" is not allowed \(policy added at run time\)/);
  const removed = new Promise<void>((resolve) => {
    const off = w.webhook.policies.onChange(() => {
      off();
      resolve();
    });
  });
  rmSync(file);
  await removed;
  const ok = await kubectl(env.AGENT_KUBECONFIG, ['-n', 'agents', 'apply', '-f', '-'], JSON.stringify(labelled({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `cm-forbidden-${id}` }, data: { forbidden: 'x' } })));
  assert.equal(ok.status, 0, ok.stderr);
});

test('with the sink failing, guardrailed requests are denied through the API server (failClosed) and others still admitted', async () => {
  const env = harness();
  sink.failWith = new SinkError('SINK_ERR_SPOOL_FULL', 'spool full (test)');
  try {
    const pod = await kubectl(env.AGENT_KUBECONFIG, ['-n', 'agents', 'apply', '-f', '-'], JSON.stringify(labelled({ apiVersion: 'v1', kind: 'Pod', metadata: { name: `fc-${id}` }, spec: { containers: [{ name: 'app', image: 'nginx' }] } })));
    assert.notEqual(pod.status, 0, 'a pod by an agent is guardrailed');
    assert.match(pod.stderr, /could not record this request durably/);
    const cm = await kubectl(env.ADMIN_KUBECONFIG, ['-n', 'agents', 'apply', '-f', '-'], JSON.stringify(labelled({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `fc-cm-${id}` }, data: { a: 'b' } })));
    assert.equal(cm.status, 0, cm.stderr);
    assert.match(cm.stderr, /kubetrail could not record this request/, 'kubectl shows the admission warning');
  } finally {
    sink.failWith = undefined;
  }
});

test('namespaceObject and namespace label selectors see the real Namespace, read from the API server', async () => {
  const env = harness();
  const key = `kt-lock-${id}`;
  const file = path.join(w.policies, `locked-${id}.yaml`);
  const loaded = new Promise<void>((resolve) => {
    const off = w.webhook.policies.onChange(() => {
      off();
      resolve();
    });
  });
  writeFileSync(
    file,
    `apiVersion: kubetrail.io/v1alpha1
kind: GuardrailPolicy
metadata: {name: locked-namespaces}
spec:
  match:
    resourceRules: [{apiGroups: [""], resources: [configmaps], operations: [CREATE]}]
    namespaces: {selector: {matchLabels: {${key}: locked}}}
  validations:
    - expression: "false"
      messageExpression: "'namespace ' + namespaceObject.metadata.name + ' is locked (' + namespaceObject.metadata.labels['${key}'] + ')'"
`,
  );
  await loaded;
  const cm = (n: string): string => JSON.stringify(labelled({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `${n}-${id}` }, data: { a: 'b' } }));
  try {
    const open = await kubectl(env.AGENT_KUBECONFIG, ['-n', 'agents', 'apply', '-f', '-'], cm('unlocked'));
    assert.equal(open.status, 0, `the namespace lacks the label, so the selector does not match: ${open.stderr}`);
    const labelled_ = await kubectl(env.ADMIN_KUBECONFIG, ['label', 'namespace', 'agents', `${key}=locked`]);
    assert.equal(labelled_.status, 0, labelled_.stderr);
    let r = await kubectl(env.AGENT_KUBECONFIG, ['-n', 'agents', 'apply', '-f', '-'], cm('locked'));
    // The lookup caches each namespace for 100 ms; retry past it.
    for (let i = 0; i < 20 && r.status === 0; i++) {
      await kubectl(env.ADMIN_KUBECONFIG, ['-n', 'agents', 'delete', 'configmap', `locked-${id}`, '--ignore-not-found']);
      await new Promise((res) => setTimeout(res, 150));
      r = await kubectl(env.AGENT_KUBECONFIG, ['-n', 'agents', 'apply', '-f', '-'], cm('locked'));
    }
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /namespace agents is locked \(locked\)/);
  } finally {
    await kubectl(env.ADMIN_KUBECONFIG, ['label', 'namespace', 'agents', `${key}-`]);
    rmSync(file, { force: true });
  }
});
