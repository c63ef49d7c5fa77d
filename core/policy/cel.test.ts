import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compileCel, fromCelValue, toCelValue } from './cel.ts';
import { PolicyError } from './errors.ts';

const pod = {
  kind: 'Pod',
  metadata: { name: 'web', labels: { app: 'web' } },
  spec: {
    replicas: 3,
    containers: [
      { name: 'app', image: 'nginx', securityContext: { privileged: true }, ports: [{ containerPort: 80 }] },
      { name: 'side', image: 'busybox' },
    ],
    volumes: [{ name: 'h', hostPath: { path: '/' } }],
  },
};
const activation = {
  object: toCelValue(pod),
  oldObject: null,
  request: toCelValue({ operation: 'CREATE', userInfo: { username: 'agent-ci', groups: ['agents', 'system:authenticated'] }, namespace: 'agents' }),
  namespaceObject: null,
};

test('the expressions the starter pack relies on evaluate as CEL specifies', () => {
  const cases: [string, unknown][] = [
    ['has(object.spec.volumes)', true],
    ['has(object.spec.hostPID)', false],
    ['object.spec.containers.exists(c, c.?securityContext.?privileged.orValue(false))', true],
    ['object.spec.containers.all(c, c.image != "")', true],
    ['object.spec.containers.exists_one(c, c.name == "side")', true],
    ['object.spec.containers.map(c, c.name)', ['app', 'side']],
    ['object.spec.containers.filter(c, has(c.ports)).size()', 1],
    ['"agents" in request.userInfo.groups', true],
    ['request.namespace in ["kube-system", "kubetrail"]', false],
    ['object.metadata.name.startsWith("we") && object.metadata.name.endsWith("b") && object.metadata.name.contains("e")', true],
    ['object.metadata.name.matches("^w[a-z]+$")', true],
    ['object.spec.?hostNetwork.orValue(false)', false],
    ['object.spec.replicas + 1', 4],
    ['object.spec.containers[0].ports[0].containerPort < 1024', true],
    ['oldObject == null', true],
    ['object.metadata.labels["app"]', 'web'],
    ['["a", "b"].join(",")', 'a,b'],
    ['size(object.spec.containers)', 2],
  ];
  for (const [src, want] of cases) {
    const r = compileCel(src).evaluate(activation);
    assert.ok(r.ok, `${src}: ${r.ok ? '' : r.error.message}`);
    assert.deepEqual(fromCelValue(r.value), want, src);
  }
});

test('a runtime error is returned as a typed error, never thrown', () => {
  const cases: [string, string][] = [
    ['object.spec.hostPID', 'CEL_ERR_RUNTIME'],
    ['1 / (object.spec.replicas - 3) == 1', 'CEL_ERR_RUNTIME'],
    ['object.metadata.labels.app > 1', 'CEL_ERR_RUNTIME'],
  ];
  for (const [src, code] of cases) {
    const r = compileCel(src, { expect: 'bool' }).evaluate(activation);
    assert.equal(r.ok, false, src);
    if (!r.ok) {
      assert.equal(r.error.code, code, src);
      assert.ok(r.error.message.length > 0);
    }
  }
});

test('a result of the wrong type is an error of its own', () => {
  const r = compileCel('object.metadata', { expect: 'bool' }).evaluate(activation);
  assert.equal(r.ok, false);
  if (!r.ok) assert.equal(r.error.code, 'CEL_ERR_RESULT_TYPE');
  const s = compileCel('object.spec.replicas', { expect: 'string' }).evaluate(activation);
  assert.equal(s.ok, false);
});

test('syntax errors, unknown variables, unknown functions and statically wrong result types fail at compile time with the field path', () => {
  const cases = ['object.spec.(', 'user.name == "x"', 'object.frobnicate()', '"abc"', '   '];
  for (const src of cases) {
    assert.throws(
      () => compileCel(src, { expect: 'bool', path: 'spec.validations.0.expression' }),
      (err: unknown) => err instanceof PolicyError && err.code === 'POLICY_ERR_CEL_COMPILE' && err.issues[0]?.path === 'spec.validations.0.expression',
      src,
    );
  }
});

test('toCelValue never mutates its input and fromCelValue gives JSON back', () => {
  const input = { a: [1, 2.5, { b: 7 }], c: 'x', d: null };
  const snapshot = structuredClone(input);
  const cel = toCelValue(input);
  assert.deepEqual(input, snapshot);
  assert.deepEqual(cel, { a: [1n, 2.5, { b: 7n }], c: 'x', d: null });
  assert.deepEqual(fromCelValue(cel), input);
  assert.equal(fromCelValue(2n ** 70n), (2n ** 70n).toString());
});
