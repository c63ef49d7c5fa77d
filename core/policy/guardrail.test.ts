import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { parse } from 'yaml';
import { compileGuardrail, evaluateGuardrails, isGuardrailed, toDecision, type GuardrailPolicy } from './guardrail.ts';
import { parseEnvelope } from './document.ts';
import { PolicyStore } from './store.ts';
import { PolicyError } from './errors.ts';
import type { PolicyInput, PolicyRequest } from './match.ts';

const STARTER = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'policies');

async function starterPack(): Promise<readonly GuardrailPolicy[]> {
  const store = new PolicyStore({ dir: STARTER, compilers: { GuardrailPolicy: compileGuardrail } });
  const set = await store.load();
  await store.close();
  return set.of<GuardrailPolicy>('GuardrailPolicy');
}

const agent = { username: 'agent-ci', groups: ['agents', 'system:authenticated'] };
const human = { username: 'alice', groups: ['devs', 'system:authenticated'] };

function req(over: Partial<PolicyRequest> & Pick<PolicyRequest, 'operation'>, resource: string, group = '', version = 'v1'): PolicyRequest {
  const [res = '', sub] = resource.split('/');
  return { userInfo: agent, resource: { group, version, resource: res }, ...(sub ? { subResource: sub } : {}), namespace: 'agents', name: 'x', ...over };
}

function podWith(spec: Record<string, unknown>): Record<string, unknown> {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' }, spec: { containers: [{ name: 'app', image: 'nginx' }], ...spec } };
}

function deployWith(podSpec: Record<string, unknown>): Record<string, unknown> {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'd' },
    spec: { selector: { matchLabels: { a: 'b' } }, template: { metadata: { labels: { a: 'b' } }, spec: { containers: [{ name: 'app', image: 'nginx' }], ...podSpec } } },
  };
}

test('the starter pack denies what it promises and admits ordinary work', async () => {
  const pack = await starterPack();
  type Case = [name: string, input: PolicyInput, allowed: boolean, message?: RegExp];
  const cases: Case[] = [
    ['a plain pod', { request: req({ operation: 'CREATE' }, 'pods'), object: podWith({}), oldObject: null }, true],
    ['a privileged pod', { request: req({ operation: 'CREATE' }, 'pods'), object: podWith({ containers: [{ name: 'app', securityContext: { privileged: true } }] }), oldObject: null }, false, /privileged containers are not allowed for agents \(container app\)/],
    ['a privileged init container', { request: req({ operation: 'CREATE' }, 'pods'), object: podWith({ initContainers: [{ name: 'init', securityContext: { privileged: true } }] }), oldObject: null }, false, /container init/],
    ['a hostPath pod', { request: req({ operation: 'CREATE' }, 'pods'), object: podWith({ volumes: [{ name: 'v', hostPath: { path: '/' } }] }), oldObject: null }, false, /hostPath/],
    ['a hostNetwork pod', { request: req({ operation: 'CREATE' }, 'pods'), object: podWith({ hostNetwork: true }), oldObject: null }, false, /hostNetwork/],
    ['a hostPID pod', { request: req({ operation: 'CREATE' }, 'pods'), object: podWith({ hostPID: true }), oldObject: null }, false, /hostPID/],
    ['a hostNetwork: false pod', { request: req({ operation: 'CREATE' }, 'pods'), object: podWith({ hostNetwork: false }), oldObject: null }, true],
    ['a privileged pod by a human', { request: req({ operation: 'CREATE', userInfo: human }, 'pods'), object: podWith({ hostPID: true }), oldObject: null }, true],
    ['a plain deployment', { request: req({ operation: 'CREATE' }, 'deployments', 'apps'), object: deployWith({}), oldObject: null }, true],
    ['a hostNetwork deployment', { request: req({ operation: 'UPDATE' }, 'deployments', 'apps'), object: deployWith({ hostNetwork: true }), oldObject: deployWith({}) }, false, /hostNetwork/],
    [
      'a privileged cronjob',
      {
        request: req({ operation: 'CREATE' }, 'cronjobs', 'batch'),
        object: { kind: 'CronJob', metadata: { name: 'c' }, spec: { schedule: '* * * * *', jobTemplate: { spec: { template: { spec: { containers: [{ name: 'j', securityContext: { privileged: true } }] } } } } } },
        oldObject: null,
      },
      false,
      /privileged/,
    ],
    ['a cluster-admin binding', { request: req({ operation: 'CREATE' }, 'clusterrolebindings', 'rbac.authorization.k8s.io'), object: { kind: 'ClusterRoleBinding', metadata: { name: 'b' }, roleRef: { kind: 'ClusterRole', name: 'cluster-admin' }, subjects: [{ kind: 'User', name: 'agent-ci' }] }, oldObject: null }, false, /cluster-admin/],
    ['a binding to system:authenticated', { request: req({ operation: 'CREATE' }, 'rolebindings', 'rbac.authorization.k8s.io'), object: { kind: 'RoleBinding', metadata: { name: 'b' }, roleRef: { kind: 'Role', name: 'view' }, subjects: [{ kind: 'Group', name: 'system:authenticated' }] }, oldObject: null }, false, /every user/],
    ['a narrow binding', { request: req({ operation: 'CREATE' }, 'rolebindings', 'rbac.authorization.k8s.io'), object: { kind: 'RoleBinding', metadata: { name: 'b' }, roleRef: { kind: 'Role', name: 'view' }, subjects: [{ kind: 'User', name: 'bob' }] }, oldObject: null }, true],
    ['a wildcard role', { request: req({ operation: 'CREATE' }, 'roles', 'rbac.authorization.k8s.io'), object: { kind: 'Role', metadata: { name: 'r' }, rules: [{ apiGroups: [''], resources: ['*'], verbs: ['get'] }] }, oldObject: null }, false, /wildcard/],
    ['exec into kube-system', { request: req({ operation: 'CONNECT', namespace: 'kube-system' }, 'pods/exec'), object: { kind: 'PodExecOptions', command: ['sh', '-c', 'id'] }, oldObject: null }, false, /agents may not exec into kube-system \(command: sh -c id\)/],
    ['port-forward into kube-system', { request: req({ operation: 'CONNECT', namespace: 'kube-system' }, 'pods/portforward'), object: { kind: 'PodPortForwardOptions' }, oldObject: null }, false, /portforward into kube-system$/],
    ['exec into agents', { request: req({ operation: 'CONNECT' }, 'pods/exec'), object: { kind: 'PodExecOptions', command: ['sh'] }, oldObject: null }, true],
    ['namespace deletion', { request: req({ operation: 'DELETE', namespace: '', name: 'prod' }, 'namespaces'), object: null, oldObject: { kind: 'Namespace', metadata: { name: 'prod' } } }, false, /agents may not delete namespaces \(namespace prod\)/],
    ['a configmap in kubetrail', { request: req({ operation: 'CREATE', namespace: 'kubetrail' }, 'configmaps'), object: { kind: 'ConfigMap', metadata: { name: 'c' } }, oldObject: null }, false, /kubetrail namespace/],
    ['deleting the kubetrail namespace', { request: req({ operation: 'DELETE', namespace: '', name: 'kubetrail' }, 'namespaces'), object: null, oldObject: null }, false, /kubetrail namespace/],
    ['a cluster-scoped create is not "inside kubetrail"', { request: req({ operation: 'CREATE', namespace: '' }, 'clusterroles', 'rbac.authorization.k8s.io'), object: { kind: 'ClusterRole', metadata: { name: 'x' }, rules: [] }, oldObject: null }, true],
  ];
  for (const [name, input, allowed, message] of cases) {
    const out = evaluateGuardrails(pack, input, 'admission');
    assert.equal(out.allowed, allowed, `${name}: ${out.message ?? ''}`);
    assert.deepEqual(out.errors, [], name);
    if (message) assert.match(out.message ?? '', message, name);
    if (!allowed) {
      assert.equal(out.action, 'deny', name);
      assert.ok(out.policy, name);
      assert.ok(out.decisions.some((d) => d.action === 'deny' && d.policy === out.policy), name);
      assert.equal(isGuardrailed(pack, input, 'admission'), true, name);
      assert.equal(toDecision(out).allowed, false);
    }
  }
});

function policy(spec: Record<string, unknown>, name = 'p'): GuardrailPolicy {
  return compileGuardrail(parseEnvelope({ apiVersion: 'kubetrail.io/v1alpha1', kind: 'GuardrailPolicy', metadata: { name }, spec }));
}

const cmInput = (over: Partial<PolicyRequest> = {}, data: Record<string, string> = { a: 'b' }): PolicyInput => ({
  request: req({ operation: 'CREATE', ...over }, 'configmaps'),
  object: { kind: 'ConfigMap', metadata: { name: 'c', labels: { team: 'x' } }, data },
  oldObject: null,
});

test('warn yields admission warnings, audit only a decision, requireApproval a denial naming the approver', () => {
  const set = [
    policy({ action: 'warn', validations: [{ expression: 'false', message: 'careful' }] }, 'w'),
    policy({ action: 'audit', validations: [{ expression: 'false', message: 'noted' }] }, 'a'),
  ];
  const out = evaluateGuardrails(set, cmInput(), 'admission');
  assert.equal(out.allowed, true);
  assert.deepEqual(out.warnings, ['w: careful']);
  assert.deepEqual(
    out.decisions.map((d) => [d.policy, d.action, d.message]),
    [
      ['w', 'warn', 'careful'],
      ['a', 'audit', 'noted'],
    ],
  );
  assert.equal(out.guardrailed, false);

  const appr = [policy({ action: 'requireApproval', approval: 'platform-oncall', validations: [{ expression: 'false', message: 'big change' }] }, 'r')];
  const o2 = evaluateGuardrails(appr, cmInput(), 'admission');
  assert.equal(o2.allowed, false);
  assert.equal(o2.action, 'requireApproval');
  assert.match(o2.message ?? '', /big change \(requires approval by platform-oncall/);
  assert.equal(o2.guardrailed, true);
});

test('deny wins over requireApproval and every refusing message is reported', () => {
  const set = [
    policy({ action: 'requireApproval', approval: 'x', validations: [{ expression: 'false', message: 'needs approval' }] }, 'r'),
    policy({ validations: [{ expression: 'false', message: 'no' }] }, 'd'),
  ];
  const out = evaluateGuardrails(set, cmInput(), 'admission');
  assert.equal(out.action, 'deny');
  assert.equal(out.policy, 'r');
  assert.match(out.message ?? '', /needs approval.*; no$/);
});

test('matching: resources, operations, namespaces, label selectors, subjects and stages all narrow a policy', () => {
  const deny = { validations: [{ expression: 'false', message: 'no' }] };
  type Case = [name: string, spec: Record<string, unknown>, input: PolicyInput, stage: 'admission' | 'gateway', matched: boolean];
  const nsObj = { kind: 'Namespace', metadata: { name: 'agents', labels: { env: 'prod' } } };
  const cases: Case[] = [
    ['resource matches', { match: { resourceRules: [{ apiGroups: [''], resources: ['configmaps'] }] } }, cmInput(), 'admission', true],
    ['other resource', { match: { resourceRules: [{ apiGroups: [''], resources: ['secrets'] }] } }, cmInput(), 'admission', false],
    ['other group', { match: { resourceRules: [{ apiGroups: ['apps'], resources: ['*'] }] } }, cmInput(), 'admission', false],
    ['operation not listed', { match: { resourceRules: [{ apiGroups: ['*'], resources: ['*'], operations: ['DELETE'] }] } }, cmInput(), 'admission', false],
    ['version not listed', { match: { resourceRules: [{ apiGroups: ['*'], apiVersions: ['v2'], resources: ['*'] }] } }, cmInput(), 'admission', false],
    ['main resource rule skips a subresource', { match: { resourceRules: [{ apiGroups: [''], resources: ['pods'] }] } }, { request: req({ operation: 'CONNECT' }, 'pods/exec'), object: {}, oldObject: null }, 'admission', false],
    ['pods/* covers exec', { match: { resourceRules: [{ apiGroups: [''], resources: ['pods/*'] }] } }, { request: req({ operation: 'CONNECT' }, 'pods/exec'), object: {}, oldObject: null }, 'admission', true],
    ['namespace excluded', { match: { namespaces: { exclude: ['agents'] } } }, cmInput(), 'admission', false],
    ['namespace not included', { match: { namespaces: { include: ['prod'] } } }, cmInput(), 'admission', false],
    ['selector matches', { match: { namespaces: { selector: { matchLabels: { env: 'prod' } } } } }, { ...cmInput(), namespaceObject: nsObj }, 'admission', true],
    ['selector expression NotIn', { match: { namespaces: { selector: { matchExpressions: [{ key: 'env', operator: 'NotIn', values: ['prod'] }] } } } }, { ...cmInput(), namespaceObject: nsObj }, 'admission', false],
    ['selector with unknown namespace fails closed', { match: { namespaces: { selector: { matchLabels: { env: 'prod' } } } } }, cmInput(), 'admission', true],
    ['selector with known namespace without labels', { match: { namespaces: { selector: { matchLabels: { env: 'prod' } } } } }, { ...cmInput(), namespaceObject: null }, 'admission', false],
    ['user glob', { match: { subjects: { users: ['agent-*'] } } }, cmInput(), 'admission', true],
    ['other group', { match: { subjects: { groups: ['admins'] } } }, cmInput(), 'admission', false],
    ['service account', { match: { subjects: { serviceAccounts: [{ namespace: 'ci', name: '*' }] } } }, cmInput({ userInfo: { username: 'system:serviceaccount:ci:builder', groups: [] } }), 'admission', true],
    ['excluded subject', { match: { excludeSubjects: { users: ['agent-ci'] } } }, cmInput(), 'admission', false],
    ['gateway-only policy at admission', { stages: ['gateway'] }, cmInput(), 'admission', false],
    ['gateway policy at gateway', { stages: ['gateway'] }, cmInput(), 'gateway', true],
    ['admission policy at gateway', {}, cmInput(), 'gateway', false],
    ['matchCondition false', { matchConditions: [{ name: 'has-b', expression: "has(object.data.b)" }] }, cmInput(), 'admission', false],
    ['matchCondition true', { matchConditions: [{ name: 'has-a', expression: "has(object.data.a)" }] }, cmInput(), 'admission', true],
  ];
  for (const [name, spec, input, stage, matched] of cases) {
    const out = evaluateGuardrails([policy({ ...deny, ...spec })], input, stage);
    assert.equal(out.allowed, !matched, name);
    assert.equal(out.matchedPolicies.length, matched ? 1 : 0, name);
  }
});

test('a CEL runtime error denies under failurePolicy Fail and only warns under Ignore; it is always reported', () => {
  const spec = { validations: [{ name: 'r', expression: 'object.spec.replicas > 1', message: 'x' }] };
  const fail = evaluateGuardrails([policy(spec)], cmInput(), 'admission');
  assert.equal(fail.allowed, false);
  assert.match(fail.message ?? '', /policy p rule r could not be evaluated: No such key: spec/);
  assert.equal(fail.errors.length, 1);
  const ign = evaluateGuardrails([policy({ ...spec, failurePolicy: 'Ignore' })], cmInput(), 'admission');
  assert.equal(ign.allowed, true);
  assert.equal(ign.errors.length, 1);
  assert.equal(ign.warnings.length, 1);
});

test('messageExpression wins over message, and variables feed the validations', () => {
  const p = policy({
    variables: [
      { name: 'keys', expression: 'object.data.map(k, k)' },
      { name: 'n', expression: 'variables.keys.size()' },
    ],
    validations: [{ expression: 'variables.n < 2', message: 'static', messageExpression: "'too many keys: ' + string(variables.n)" }],
  });
  assert.equal(evaluateGuardrails([p], cmInput({}, { a: '1' }), 'admission').allowed, true);
  const out = evaluateGuardrails([p], cmInput({}, { a: '1', b: '2' }), 'admission');
  assert.equal(out.message, 'too many keys: 2');
});

test('invalid GuardrailPolicy documents fail with the field path of the problem', () => {
  const cases: [unknown, string][] = [
    [{ apiVersion: 'v1', kind: 'GuardrailPolicy', metadata: { name: 'x' }, spec: {} }, 'apiVersion'],
    [{ apiVersion: 'kubetrail.io/v1alpha1', kind: 'GuardrailPolicy', metadata: { name: 'X_bad' }, spec: {} }, 'metadata.name'],
    [{ apiVersion: 'kubetrail.io/v1alpha1', kind: 'GuardrailPolicy', metadata: { name: 'x' }, spec: { validations: [] } }, 'spec.validations'],
    [{ apiVersion: 'kubetrail.io/v1alpha1', kind: 'GuardrailPolicy', metadata: { name: 'x' }, spec: { validations: [{ expression: 'object.(' }] } }, 'spec.validations.0.expression'],
    [{ apiVersion: 'kubetrail.io/v1alpha1', kind: 'GuardrailPolicy', metadata: { name: 'x' }, spec: { action: 'nuke', validations: [{ expression: 'true' }] } }, 'spec.action'],
    [{ apiVersion: 'kubetrail.io/v1alpha1', kind: 'GuardrailPolicy', metadata: { name: 'x' }, spec: { action: 'requireApproval', validations: [{ expression: 'true' }] } }, 'spec.approval'],
    [{ apiVersion: 'kubetrail.io/v1alpha1', kind: 'GuardrailPolicy', metadata: { name: 'x' }, spec: { validations: [{ expression: 'true' }], match: { resourceRules: [{ resources: ['pods'] }] } } }, 'spec.match.resourceRules.0.apiGroups'],
    [{ apiVersion: 'kubetrail.io/v1alpha1', kind: 'GuardrailPolicy', metadata: { name: 'x' }, spec: { validations: [{ expression: 'true' }], bogus: 1 } }, 'spec'],
    [parse('apiVersion: kubetrail.io/v1alpha1\nkind: GuardrailPolicy\nmetadata: {name: x}\nspec:\n  validations:\n    - expression: "1"\n'), 'spec.validations.0.expression'],
  ];
  for (const [doc, pathWanted] of cases) {
    assert.throws(
      () => compileGuardrail(parseEnvelope(doc)),
      (err: unknown) => err instanceof PolicyError && err.issues.some((i) => i.path === pathWanted),
      pathWanted,
    );
  }
});
