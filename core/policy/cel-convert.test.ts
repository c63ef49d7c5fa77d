import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compileCel, fromCelValue, toCelValue } from './cel.ts';

/** The reference: a full copy with every integral number as bigint (what toCelValue did before it shared subtrees). */
function fullCopy(v: unknown): unknown {
  if (typeof v === 'number') return Number.isInteger(v) ? BigInt(v) : v;
  if (v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) return v.map(fullCopy);
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(v)) Object.defineProperty(out, k, { value: fullCopy((v as Record<string, unknown>)[k]), enumerable: true, writable: true, configurable: true });
  return out;
}

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

test('the shared conversion evaluates every expression exactly as the full copy does, values and errors alike', () => {
  const eager = { object: fullCopy(pod) };
  const lazy = { object: toCelValue(deepFrozen(structuredClone(pod))) };
  for (const src of expressions) {
    const p = compileCel(src);
    const a = p.evaluate(eager);
    const b = p.evaluate(lazy);
    assert.equal(b.ok, a.ok, src);
    if (a.ok && b.ok) assert.deepEqual(fromCelValue(b.value), fromCelValue(a.value), src);
    else if (!a.ok && !b.ok) assert.equal(b.error.message, a.error.message, src);
  }
});

test('values read like a full copy: integral numbers as bigint, same keys in the same order; number-free subtrees shared; input untouched', () => {
  const input = deepFrozen(structuredClone(pod));
  const v = toCelValue(input) as typeof pod & Record<string, any>;
  assert.equal(v.spec.replicas as unknown, 3n);
  assert.equal(v.spec.ratio, 0.5);
  assert.ok(Array.isArray(v.spec.containers));
  assert.deepEqual(Object.keys(v.spec), Object.keys(input.spec));
  assert.deepEqual(JSON.parse(JSON.stringify(fromCelValue(v))), JSON.parse(JSON.stringify(fromCelValue(fullCopy(input)))));
  assert.equal(v.metadata, input.metadata, 'no number below: shared');
  assert.equal(v.spec.containers[1], input.spec.containers[1]);
  assert.notEqual(v.spec.containers[0], input.spec.containers[0], 'a number below: copied');
  assert.equal(v.spec.containers[0]?.securityContext, input.spec.containers[0]?.securityContext);
  assert.equal(input.spec.replicas, 3);
  assert.equal(input.spec.containers[0]?.ports?.[0]?.containerPort, 8080);
  const flat = deepFrozen({ a: 'x', b: [true, null, 'y'], c: 0.25 });
  assert.equal(toCelValue(flat), flat);
  assert.equal(toCelValue(7), 7n);
  assert.equal(toCelValue(7.5), 7.5);
  assert.equal(toCelValue('s'), 's');
  assert.equal(toCelValue(null), null);
  assert.deepEqual(toCelValue([1, 'a', [2]]), [1n, 'a', [2n]]);
});

test('a JSON member named __proto__ stays a member, the prototype is untouched', () => {
  const input = JSON.parse('{"__proto__": {"x": 1}, "constructor": "c", "n": 2}') as Record<string, unknown>;
  const v = toCelValue(input) as Record<string, unknown>;
  assert.equal(Object.getPrototypeOf(v), Object.prototype);
  assert.ok(Object.hasOwn(v, '__proto__'));
  assert.deepEqual(fromCelValue(Object.getOwnPropertyDescriptor(v, '__proto__')?.value), { x: 1 });
  assert.equal(v['constructor'], 'c');
  assert.equal(v['n'], 2n);
});
