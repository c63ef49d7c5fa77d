import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { compileGuardrail, evaluateGuardrails, type GuardrailPolicy } from './guardrail.ts';
import { compileMutation } from './mutation.ts';
import { PolicyStore, type PolicySet } from './store.ts';

const deny = (name: string, message: string): string => `apiVersion: kubetrail.io/v1alpha1
kind: GuardrailPolicy
metadata: {name: ${name}}
spec:
  validations:
    - expression: "false"
      message: ${message}
`;

function tmp(): string {
  return mkdtempSync(path.join(tmpdir(), 'kt-policy-'));
}

const input = {
  request: { operation: 'CREATE', userInfo: { username: 'u', groups: [] }, resource: { group: '', version: 'v1', resource: 'configmaps' }, namespace: 'n', name: 'c' },
  object: { metadata: { name: 'c' } },
  oldObject: null,
};

function nextChange(store: PolicyStore): Promise<PolicySet> {
  return new Promise((resolve) => {
    const off = store.onChange((s) => {
      off();
      resolve(s);
    });
  });
}

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 400 && !cond(); i++) await new Promise((r) => setTimeout(r, 25));
  assert.ok(cond(), what);
}

test('multi-document files load; known kinds without a compiler are skipped; empty documents ignored; dotfiles ignored', async (t) => {
  const dir = tmp();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(
    path.join(dir, 'a.yaml'),
    `${deny('one', 'first')}---\n${deny('two', 'second')}---\napiVersion: kubetrail.io/v1alpha1\nkind: ExecPolicy\nmetadata: {name: e}\nspec: {anything: goes}\n---\n`,
  );
  writeFileSync(path.join(dir, '.hidden.yaml'), 'not: [valid');
  writeFileSync(path.join(dir, 'README.md'), '# not a policy');
  const registry = new Registry();
  const store = new PolicyStore({ dir, registry, compilers: { GuardrailPolicy: compileGuardrail } });
  t.after(() => store.close());
  const set = await store.load();
  assert.equal(set.generation, 1);
  assert.deepEqual(set.of<GuardrailPolicy>('GuardrailPolicy').map((p) => p.name), ['one', 'two']);
  assert.deepEqual(set.entries('GuardrailPolicy').map((e) => e.index), [0, 1]);
  assert.deepEqual(set.of('ExecPolicy'), []);
  assert.match(await registry.metrics(), /kubetrail_policy_reloads_total\{result="ok"\} 1/);
});

test('an unknown kind, an invalid field, a CEL error and a duplicate name are each rejected with file, document index and field path', async (t) => {
  const cases: [string, RegExp][] = [
    [`${deny('ok', 'x')}---\napiVersion: kubetrail.io/v1alpha1\nkind: FirewallPolicy\nmetadata: {name: f}\nspec: {}\n`, /bad\.yaml#1: kind: must be one of/],
    [`apiVersion: kubetrail.io/v1alpha1\nkind: GuardrailPolicy\nmetadata: {name: g}\nspec:\n  action: explode\n  validations: [{expression: "true"}]\n`, /bad\.yaml#0: spec\.action:/],
    [`apiVersion: kubetrail.io/v1alpha1\nkind: GuardrailPolicy\nmetadata: {name: g}\nspec:\n  validations: [{expression: "object.("}]\n`, /bad\.yaml#0: spec\.validations\.0\.expression: does not parse/],
    [`${deny('same', 'x')}---\n${deny('same', 'y')}`, /bad\.yaml#1: metadata\.name: duplicate GuardrailPolicy "same"/],
    [`apiVersion: kubetrail.io/v1alpha1\nkind: MutationPolicy\nmetadata: {name: m}\nspec: {}\n`, /bad\.yaml#0: spec: set at least one of/],
    ['key: [unclosed', /bad\.yaml#0: \(document\): not valid YAML/],
  ];
  for (const [text, want] of cases) {
    const dir = tmp();
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(path.join(dir, 'bad.yaml'), text);
    const store = new PolicyStore({ dir, compilers: { GuardrailPolicy: compileGuardrail, MutationPolicy: compileMutation } });
    await assert.rejects(store.load(), (err: Error) => want.test(err.message), String(want));
    assert.match(store.lastError()?.message ?? '', want);
    assert.equal(store.current().generation, 0);
    await store.close();
  }
});

test('a policy edited on disk takes effect after the debounce, and a bad edit keeps the previous set active', async (t) => {
  const dir = tmp();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(path.join(dir, 'p.yaml'), deny('p', 'version-one'));
  const store = new PolicyStore({ dir, debounceMs: 50, compilers: { GuardrailPolicy: compileGuardrail } });
  t.after(() => store.close());
  await store.load();
  store.watch();
  const msg = (): string | undefined => evaluateGuardrails(store.current().of<GuardrailPolicy>('GuardrailPolicy'), input, 'admission').message;
  assert.equal(msg(), 'version-one');

  const changed = nextChange(store);
  writeFileSync(path.join(dir, 'p.yaml'), deny('p', 'version-two'));
  const set = await changed;
  assert.equal(set.generation, 2);
  assert.equal(msg(), 'version-two');

  writeFileSync(path.join(dir, 'p.yaml'), deny('p', 'version-three') + '    - expression: "object.("\n');
  await until(() => store.lastError() !== undefined, 'the bad edit was never noticed');
  assert.match(store.lastError()?.message ?? '', /p\.yaml#0: spec\.validations\.1\.expression: does not parse/);
  assert.equal(store.current().generation, 2);
  assert.equal(msg(), 'version-two');
  assert.equal(store.stats.failed, 1);

  const fixed = nextChange(store);
  writeFileSync(path.join(dir, 'p.yaml'), deny('p', 'version-four'));
  await fixed;
  assert.equal(msg(), 'version-four');
  assert.equal(store.lastError(), undefined);
});

test('a ConfigMap-style ..data symlink swap is picked up', async (t) => {
  const dir = tmp();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // The kubelet's atomic writer layout: ..<ts>/file, ..data -> ..<ts>, file -> ..data/file.
  mkdirSync(path.join(dir, '..2026_01'));
  writeFileSync(path.join(dir, '..2026_01', 'policy.yaml'), deny('cm', 'from-first-configmap'));
  symlinkSync('..2026_01', path.join(dir, '..data'));
  symlinkSync(path.join('..data', 'policy.yaml'), path.join(dir, 'policy.yaml'));
  const store = new PolicyStore({ dir, debounceMs: 50, compilers: { GuardrailPolicy: compileGuardrail } });
  t.after(() => store.close());
  await store.load();
  store.watch();
  const msg = (): string | undefined => evaluateGuardrails(store.current().of<GuardrailPolicy>('GuardrailPolicy'), input, 'admission').message;
  assert.equal(msg(), 'from-first-configmap');

  const changed = nextChange(store);
  mkdirSync(path.join(dir, '..2026_02'));
  writeFileSync(path.join(dir, '..2026_02', 'policy.yaml'), deny('cm', 'from-second-configmap'));
  symlinkSync('..2026_02', path.join(dir, '..data_tmp'));
  renameSync(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
  rmSync(path.join(dir, '..2026_01'), { recursive: true });
  await changed;
  assert.equal(msg(), 'from-second-configmap');
});
