import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compileObjectMasking, LAST_APPLIED_ANNOTATION, MASK, maskObject, splitMaskPath } from './object.ts';

const masking = compileObjectMasking({ envNamePatterns: ['PASSWORD', 'SECRET', 'TOKEN', 'KEY', 'CREDENTIAL'], paths: ['spec.template.spec.containers.*.args', 'data.note'] });

function deepFrozen<T>(o: T): T {
  if (o !== null && typeof o === 'object') {
    for (const v of Object.values(o)) deepFrozen(v);
    Object.freeze(o);
  }
  return o;
}

test('Secret data and stringData values are masked, keys kept, and the input is untouched', () => {
  const secret = deepFrozen({
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 's', annotations: { [LAST_APPLIED_ANNOTATION]: JSON.stringify({ apiVersion: 'v1', kind: 'Secret', data: { password: 'aHVudGVyMg==' } }) } },
    data: { password: 'aHVudGVyMg==', user: 'YWRtaW4=' },
    stringData: { token: 'plain-token' },
    type: 'Opaque',
  });
  const masked = maskObject(masking, secret) as typeof secret;
  assert.deepEqual(masked.data, { password: MASK, user: MASK });
  assert.deepEqual(masked.stringData, { token: MASK });
  assert.equal(masked.type, 'Opaque');
  assert.equal(secret.data.password, 'aHVudGVyMg==');
  const lastApplied = JSON.parse(masked.metadata.annotations[LAST_APPLIED_ANNOTATION]);
  assert.deepEqual(lastApplied.data, { password: MASK });
  assert.doesNotMatch(JSON.stringify(masked), /aHVudGVyMg|plain-token|YWRtaW4/);
});

test('env values whose names match are masked in pods, init, ephemeral containers and every workload template', () => {
  const env = [
    { name: 'DB_PASSWORD', value: 'hunter2' },
    { name: 'api_token', value: 'tok' },
    { name: 'LOG_LEVEL', value: 'debug' },
    { name: 'FROM_SECRET', valueFrom: { secretKeyRef: { name: 's', key: 'k' } } },
  ];
  const podSpec = { containers: [{ name: 'a', env }], initContainers: [{ name: 'i', env }], ephemeralContainers: [{ name: 'e', env }] };
  const objects: [string, unknown, (o: any) => any[]][] = [
    ['Pod', { kind: 'Pod', spec: podSpec }, (o) => [o.spec.containers[0], o.spec.initContainers[0], o.spec.ephemeralContainers[0]]],
    ['Deployment', { kind: 'Deployment', spec: { template: { spec: podSpec } } }, (o) => [o.spec.template.spec.containers[0], o.spec.template.spec.initContainers[0]]],
    ['StatefulSet', { kind: 'StatefulSet', spec: { template: { spec: podSpec } } }, (o) => [o.spec.template.spec.containers[0]]],
    ['Job', { kind: 'Job', spec: { template: { spec: podSpec } } }, (o) => [o.spec.template.spec.containers[0]]],
    ['CronJob', { kind: 'CronJob', spec: { jobTemplate: { spec: { template: { spec: podSpec } } } } }, (o) => [o.spec.jobTemplate.spec.template.spec.containers[0]]],
  ];
  for (const [kind, obj, containers] of objects) {
    const input = deepFrozen(structuredClone(obj));
    const out = maskObject(masking, input);
    for (const c of containers(out)) {
      assert.deepEqual(
        c.env.map((e: { name: string; value?: string }) => [e.name, e.value]),
        [
          ['DB_PASSWORD', MASK],
          ['api_token', MASK],
          ['LOG_LEVEL', 'debug'],
          ['FROM_SECRET', undefined],
        ],
        kind,
      );
      assert.deepEqual(c.env[3].valueFrom, { secretKeyRef: { name: 's', key: 'k' } }, kind);
    }
    assert.doesNotMatch(JSON.stringify(out), /hunter2|"tok"/, kind);
  }
});

test('configured paths mask whatever is there, with * over keys and indexes; a ConfigMap is otherwise untouched', () => {
  const d = maskObject(masking, {
    kind: 'Deployment',
    spec: { template: { spec: { containers: [{ name: 'a', args: ['--password', 'x'] }, { name: 'b' }] } } },
  }) as any;
  assert.equal(d.spec.template.spec.containers[0].args, MASK);
  assert.deepEqual(d.spec.template.spec.containers[1], { name: 'b' });
  const cm = maskObject(masking, { kind: 'ConfigMap', data: { note: 'n', other: 'o' } }) as any;
  assert.deepEqual(cm.data, { note: MASK, other: 'o' });
});

test('a correlation key gives equal masks for equal values and different masks otherwise, never the value', () => {
  const m = compileObjectMasking({ correlationKey: Buffer.from('k'.repeat(32)) });
  const a = maskObject(m, { kind: 'Secret', apiVersion: 'v1', data: { x: 'same', y: 'same', z: 'other' } }) as any;
  assert.match(a.data.x, /^\*\*\*MASKED:[0-9a-f]{16}\*\*\*$/);
  assert.equal(a.data.x, a.data.y);
  assert.notEqual(a.data.x, a.data.z);
});

test('non-objects and odd shapes pass through without throwing', () => {
  for (const v of [null, 1, 'x', [1, { env: 'nope' }], { kind: 'Secret', apiVersion: 'v1', data: 'not-a-map' }, { metadata: { annotations: { [LAST_APPLIED_ANNOTATION]: 'not json' } } }]) {
    assert.doesNotThrow(() => maskObject(masking, v));
  }
  assert.equal((maskObject(masking, { kind: 'Secret', apiVersion: 'v1', data: 'not-a-map' }) as any).data, MASK);
  assert.equal((maskObject(masking, { metadata: { annotations: { [LAST_APPLIED_ANNOTATION]: 'not json' } } }) as any).metadata.annotations[LAST_APPLIED_ANNOTATION], MASK);
  assert.deepEqual(splitMaskPath('metadata.annotations.a\\.b/c'), ['metadata', 'annotations', 'a.b/c']);
  assert.throws(() => compileObjectMasking({ envNamePatterns: ['('] }), TypeError);
});

test('value patterns mask secret-shaped substrings in every string, keys untouched, input untouched', () => {
  const jwt = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhZ2VudCJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ';
  const patterns = [
    { name: 'jwt', regex: /eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}/g },
    { name: 'aws-access-key', regex: /AKIA[A-Z0-9]{16}/g },
  ];
  const input = deepFrozen({
    kind: 'ConfigMap',
    metadata: { name: 'c', annotations: { note: `token ${jwt} here` } },
    data: { [`key-${'AKIAABCDEFGHIJKLMNOP'}`]: `aws=AKIAABCDEFGHIJKLMNOP and again AKIAABCDEFGHIJKLMNOP`, plain: 'nothing to see' },
  });
  const out = maskObject(masking, input, patterns) as any;
  assert.equal(out.metadata.annotations.note, 'token [masked:jwt] here');
  assert.equal(out.data['key-AKIAABCDEFGHIJKLMNOP'], 'aws=[masked:aws-access-key] and again [masked:aws-access-key]');
  assert.equal(out.data.plain, 'nothing to see');
  assert.match(input.metadata.annotations.note, /eyJ/);
  const exec = maskObject(masking, { kind: 'PodExecOptions', command: ['sh', '-c', `curl -H "Authorization: Bearer ${jwt}" x`] }, patterns) as any;
  assert.equal(exec.command[2], 'curl -H "Authorization: Bearer [masked:jwt]" x');
});

test('env name decisions are per masking configuration, over many distinct names, and scalars stay in place in copied arrays', () => {
  const byPassword = compileObjectMasking({ envNamePatterns: ['PASSWORD'] });
  const byToken = compileObjectMasking({ envNamePatterns: ['TOKEN'] });
  const pod = (names: string[]) => deepFrozen({ kind: 'Pod', spec: { containers: [{ name: 'c', args: ['x', 1, null], env: names.map((n) => ({ name: n, value: `v-${n}` })) }] } });
  const values = (o: unknown) => (o as { spec: { containers: { env: { name: string; value: string }[] }[] } }).spec.containers[0]!.env.map((e) => e.value);
  // The same names, alternately under two configurations: each answers by its own patterns.
  for (let round = 0; round < 3; round++) {
    assert.deepEqual(values(maskObject(byPassword, pod(['DB_PASSWORD', 'API_TOKEN', 'PLAIN']))), [MASK, 'v-API_TOKEN', 'v-PLAIN']);
    assert.deepEqual(values(maskObject(byToken, pod(['DB_PASSWORD', 'API_TOKEN', 'PLAIN']))), ['v-DB_PASSWORD', MASK, 'v-PLAIN']);
  }
  // Many distinct names: every decision is the regex's.
  const many = Array.from({ length: 5000 }, (_, i) => (i % 7 === 0 ? `X${i}_PASSWORD` : `X${i}_SETTING`));
  const got = values(maskObject(byPassword, pod(many)));
  assert.deepEqual(got, many.map((n) => (n.endsWith('_PASSWORD') ? MASK : `v-${n}`)));
  assert.deepEqual(values(maskObject(byPassword, pod(['LATE_PASSWORD', 'LATE']))), [MASK, 'v-LATE']);
  // Scalars in arrays are kept in place when an array is copied around a masked entry.
  const mixed = deepFrozen({ env: [1, 'a', null, { name: 'A_PASSWORD', value: 's' }, true, 'b'] });
  assert.deepEqual(maskObject(byPassword, mixed), { env: [1, 'a', null, { name: 'A_PASSWORD', value: MASK }, true, 'b'] });
});

test('built as a canonical view: the same masking, keys sorted in memory, and sealing serializes it as the writer does', async () => {
  const { canonicalJson, canonicalJsonByWriter } = await import('../chain/canonical.ts');
  const { realisticPod } = await import('../../test/bench/webhook.ts');
  const plain = compileObjectMasking({ envNamePatterns: ['PASSWORD', 'SECRET', 'TOKEN', 'KEY', 'CREDENTIAL'] });
  const patterns = [{ name: 'aws-key', regex: /AKIA[0-9A-Z]{16}/g }];
  const cases: [string, typeof masking, unknown, typeof patterns][] = [
    ['a realistic 15 KiB Pod', plain, realisticPod('p'), []],
    ['a Deployment template with unsorted keys and secret env', plain, { spec: { template: { spec: { containers: [{ name: 'c', env: [{ value: 'hunter2', name: 'DB_PASSWORD' }, { name: 'PLAIN', value: 'x' }], image: 'i' }] } } }, metadata: { name: 'd' }, kind: 'Deployment' }, []],
    ['value patterns in arrays and members', plain, { z: ['AKIAABCDEFGHIJKLMNOP', 1, null, true], a: { s: 'key AKIAABCDEFGHIJKLMNOP here' } }, patterns],
    ['a Secret (masked after the walk)', masking, { kind: 'Secret', apiVersion: 'v1', metadata: { name: 's' }, data: { b: 'eA==', a: 'eQ==' } }, []],
    ['configured paths (masked after the walk)', masking, { spec: { template: { spec: { containers: [{ name: 'c', args: ['--x'] }] } } } }, []],
    ['a last-applied annotation (masked after the walk)', plain, { metadata: { annotations: { [LAST_APPLIED_ANNOTATION]: JSON.stringify({ spec: { containers: [{ env: [{ name: 'API_TOKEN', value: 't' }], name: 'c' }] }, kind: 'Pod' }) }, name: 'p' }, kind: 'Pod' }, []],
    ['integer-like keys (no view: built the ordinary way)', plain, { b: { '10': 1, '9': 2 }, a: [{ env: 1 }] }, []],
    ['a Date (no view)', plain, { when: new Date(0), env: [{ name: 'SECRET_X', value: 'v' }] }, []],
    ['an empty object', plain, {}, []],
  ];
  for (const [name, m, input, pats] of cases) {
    const frozen = deepFrozen(structuredClone(input));
    const ordinary = maskObject(m, frozen, pats);
    const view = maskObject(m, frozen, pats, { canonicalView: true });
    assert.deepEqual(view, ordinary, `${name}: same masking`);
    assert.deepEqual(frozen, input, `${name}: input untouched`);
    const event = { apiVersion: 'kubetrail.io/v1', body: { object: view, operation: 'CREATE' }, id: 'x', type: 'admission.review' };
    assert.equal(canonicalJson(event), canonicalJsonByWriter({ ...event, body: { ...event.body, object: ordinary } }), `${name}: canonical JSON unchanged`);
  }
  // The walk leaves the Pod's own keys sorted in memory: JSON.stringify of the result is already canonical.
  const pod = maskObject(plain, realisticPod('p'), [], { canonicalView: true });
  assert.equal(JSON.stringify(pod), canonicalJsonByWriter(pod));
  assert.notEqual(JSON.stringify(maskObject(plain, realisticPod('p'))), canonicalJsonByWriter(pod));
});
