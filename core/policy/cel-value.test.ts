import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compileCel, fromCelValue, toCelValue } from './cel.ts';
import { lazyCelValue } from './cel-value.ts';

function deepFrozen<T>(o: T): T {
  if (o !== null && typeof o === 'object') {
    for (const v of Object.values(o)) deepFrozen(v);
    Object.freeze(o);
  }
  return o;
}

const pod = {
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'p', labels: { app: 'shop' }, annotations: {} },
  spec: {
    replicas: 3,
    ratio: 0.5,
    hostNetwork: false,
    nothing: null,
    containers: [
      { name: 'a', image: 'x', ports: [{ containerPort: 8080 }], securityContext: { privileged: true } },
      { name: 'b', image: 'y', env: [{ name: 'K', value: 'v' }] },
    ],
    volumes: [],
    '1': 'numeric key',
    'a.b': 'dotted',
  },
};

const expressions = [
  'object.spec.replicas + 1',
  'object.spec.replicas == 3',
  'object.spec.ratio * 2.0',
  'object.spec.containers.size()',
  'object.spec.containers.exists(c, c.?securityContext.?privileged.orValue(false) == true)',
  "object.spec.containers.filter(c, has(c.env)).map(c, c.name).join(',')",
  'object.spec.containers[0].ports[0].containerPort + 1',
  'object.spec.containers.map(c, c.name)',
  'object.spec.?volumes.orValue([]).exists(v, has(v.hostPath))',
  '!object.spec.?hostNetwork.orValue(false)',
  "'app' in object.metadata.labels",
  "object.metadata.labels == {'app': 'shop'}",
  'object.spec.containers[1].env == [{"name": "K", "value": "v"}]',
  'object.spec.nothing == null',
  'object.spec.volumes + object.spec.containers',
  'object.metadata',
  'object.spec.containers.all(c, c.image.size() > 0)',
  "object.spec['a.b']",
  'object.spec.missing',
  'object.spec.containers[5]',
  'object.spec.replicas + 0.5',
];

test('the lazy view evaluates every expression exactly as the eager conversion does, values and errors alike', () => {
  const eager = { object: toCelValue(pod) };
  const lazy = { object: lazyCelValue(deepFrozen(structuredClone(pod))) };
  for (const src of expressions) {
    const p = compileCel(src);
    const a = p.evaluate(eager);
    const b = p.evaluate(lazy);
    assert.equal(b.ok, a.ok, src);
    if (a.ok && b.ok) assert.deepEqual(fromCelValue(b.value), fromCelValue(a.value), src);
    else if (!a.ok && !b.ok) assert.equal(b.error.message, a.error.message, src);
  }
});

test('the view reads like toCelValue: integral numbers as bigint, arrays as arrays, same keys; input untouched', () => {
  const input = deepFrozen(structuredClone(pod));
  const v = lazyCelValue(input) as typeof pod & Record<string, any>;
  assert.equal(v.spec.replicas as unknown, 3n);
  assert.equal(v.spec.ratio, 0.5);
  assert.ok(Array.isArray(v.spec.containers));
  assert.ok(v.spec.containers instanceof Array);
  assert.equal(v.spec.containers.length, 2);
  assert.equal(v.spec.containers.constructor, Array);
  assert.equal(v.spec.constructor, Object);
  assert.deepEqual(Object.keys(v.spec), Object.keys(input.spec));
  assert.deepEqual(JSON.parse(JSON.stringify(fromCelValue(v))), JSON.parse(JSON.stringify(fromCelValue(toCelValue(input)))));
  assert.equal(v.spec, v.spec, 'one view per object');
  assert.equal(input.spec.replicas, 3);
  assert.equal(lazyCelValue(7), 7n);
  assert.equal(lazyCelValue('s'), 's');
  assert.equal(lazyCelValue(null), null);
});

test('the view refuses writes', () => {
  const v = lazyCelValue({ a: { b: 1 } }) as Record<string, Record<string, unknown>>;
  assert.throws(() => {
    (v['a'] as Record<string, unknown>)['b'] = 2;
  }, TypeError);
  assert.throws(() => delete v['a'], TypeError);
  assert.throws(() => Object.defineProperty(v, 'x', { value: 1 }), TypeError);
});

test('JSON keys named like prototype members are data, the prototype is not converted', () => {
  const input = JSON.parse('{"__proto__": {"x": 1}, "constructor": "c", "n": 2}') as Record<string, unknown>;
  const v = lazyCelValue(input) as Record<string, unknown>;
  assert.equal(v['constructor'], 'c');
  assert.equal(v['n'], 2n);
  assert.deepEqual(fromCelValue((v as Record<string, Record<string, unknown>>)['__proto__']), { x: 1 });
  const plain = lazyCelValue({ a: 1 }) as Record<string, unknown>;
  assert.equal(Object.getPrototypeOf(plain), Object.prototype);
});
