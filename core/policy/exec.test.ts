import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { compileExecPolicy, evaluateExec, execPolicyCompiler, hasLineRules, opaqueLineDecision, type CompiledExecPolicy, type ExecInput } from './exec.ts';
import { maskingPolicyCompiler, type CompiledMaskingPolicy } from '../masking/stream.ts';
import { PolicyStore } from './store.ts';
import { PolicyError } from './errors.ts';

const doc = (spec: Record<string, unknown>, name = 'p'): unknown => ({ apiVersion: 'kubetrail.io/v1alpha1', kind: 'ExecPolicy', metadata: { name }, spec });
const input = (over: Partial<ExecInput> = {}): ExecInput => ({
  kind: 'exec', namespace: 'agents', pod: 'web-1', container: 'app', command: ['sh'], tty: true,
  user: { username: 'agent-ci', groups: ['agents'], authn: 'token' }, ...over,
});

const policy = compileExecPolicy(
  doc({
    match: { namespaces: ['agents'] },
    rules: [
      { name: 'no-rm', on: 'session', expression: 'command.exists(c, c == "rm")', message: 'rm is not allowed' },
      { name: 'no-shell-for-bots', on: 'session', expression: '"bots" in user.groups && command[0] == "sh"' },
      { name: 'audit-cat', action: 'audit', expression: 'command.size() > 0 && command[0] == "cat" && session.namespace == "agents"' },
      { name: 'no-typed-rm', on: 'line', expression: 'line.matches("^\\\\s*rm\\\\s")', message: 'no rm in shells' },
    ],
  }),
  'exec.yaml',
);

test('session rules decide on command, identity and match', () => {
  const cases = [
    { name: 'allowed command', in: input({ command: ['ls'] }), allowed: true, action: 'allow' },
    { name: 'rm anywhere in argv is denied', in: input({ command: ['busybox', 'rm', '-rf', '/'] }), allowed: false, rule: 'no-rm' },
    { name: 'group-based rule', in: input({ user: { username: 'b', groups: ['bots'], authn: 'token' } }), allowed: false, rule: 'no-shell-for-bots' },
    { name: 'audit rule allows but is reported', in: input({ command: ['cat', '/etc/hosts'] }), allowed: true, action: 'audit', rule: 'audit-cat' },
    { name: 'other namespaces are not matched', in: input({ namespace: 'prod', command: ['rm'] }), allowed: true, action: 'allow' },
  ];
  for (const c of cases) {
    const ev = evaluateExec([policy], c.in, 'session');
    assert.equal(ev.decision.allowed, c.allowed, c.name);
    if (c.action) assert.equal(ev.decision.action, c.action, c.name);
    if (c.rule) assert.equal(ev.decision.rule, c.rule, c.name);
  }
});

test('line rules see the typed line, and only in the line phase', () => {
  assert.equal(hasLineRules([policy], input()), true);
  assert.equal(evaluateExec([policy], input({ line: 'rm -rf /tmp/x' }), 'line').decision.allowed, false);
  assert.equal(evaluateExec([policy], input({ line: 'ls -l' }), 'line').decision.allowed, true);
  assert.equal(evaluateExec([policy], input({ line: 'rm -rf /' }), 'session').decision.allowed, true);
  assert.equal(opaqueLineDecision([policy], input()).allowed, false);
});

test('a rule that fails at run time denies (fail closed)', () => {
  const p = compileExecPolicy(doc({ rules: [{ name: 'idx', expression: 'command[3] == "x"' }] }), 't');
  const ev = evaluateExec([p], input({ command: ['ls'] }), 'session');
  assert.equal(ev.decision.allowed, false);
  assert.equal(ev.fired[0]?.error, true);
});

test('bad ExecPolicy documents are rejected with every issue and its path', () => {
  const cases = [
    { d: doc({ rules: [] }), path: 'spec.rules' },
    { d: doc({ rules: [{ name: 'a', expression: 'command ==' }] }), path: 'spec.rules.0.expression' },
    { d: doc({ rules: [{ name: 'a', expression: 'command + 1' }] }), path: 'spec.rules.0.expression' },
    { d: doc({ rules: [{ name: 'a', expression: '"x"' }] }), path: 'spec.rules.0.expression' },
    { d: doc({ rules: [{ name: 'a', expression: 'true', action: 'explode' }] }), path: 'spec.rules.0.action' },
    { d: doc({ rules: [{ name: 'a', expression: 'nosuchvar' }] }), path: 'spec.rules.0.expression' },
    { d: { ...(doc({ rules: [{ name: 'a', expression: 'true' }] }) as object), apiVersion: 'v1' }, path: 'apiVersion' },
  ];
  for (const c of cases) {
    assert.throws(() => compileExecPolicy(c.d, 'bad.yaml'), (e: unknown) => e instanceof PolicyError && e.issues.some((i) => i.path === c.path && i.file === 'bad.yaml'), c.path);
  }
});

test('ExecPolicy and MaskingPolicy documents load from a policy directory through PolicyStore, and a bad one is reported with file and path', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'kubetrail-exec-policies-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(
    path.join(dir, 'exec.yaml'),
    [
      'apiVersion: kubetrail.io/v1alpha1',
      'kind: ExecPolicy',
      'metadata: {name: agents-exec}',
      'spec:',
      '  rules:',
      '    - {name: no-rm, expression: \'command.exists(c, c == "rm")\'}',
      '---',
      'apiVersion: kubetrail.io/v1alpha1',
      'kind: MaskingPolicy',
      'metadata: {name: default}',
      'spec: {builtins: [jwt]}',
      '',
    ].join('\n'),
  );
  const store = new PolicyStore({ dir, compilers: { ExecPolicy: execPolicyCompiler, MaskingPolicy: maskingPolicyCompiler } });
  const set = await store.load();
  const execs = set.of<CompiledExecPolicy>('ExecPolicy');
  assert.equal(execs.length, 1);
  assert.equal(evaluateExec(execs, input({ command: ['rm', 'x'] }), 'session').decision.allowed, false);
  assert.equal(set.of<CompiledMaskingPolicy>('MaskingPolicy')[0]?.patterns[0]?.name, 'jwt');

  writeFileSync(path.join(dir, 'bad.yaml'), 'apiVersion: kubetrail.io/v1alpha1\nkind: ExecPolicy\nmetadata: {name: bad}\nspec: {rules: [{name: x, expression: "command +"}]}\n');
  assert.equal(await store.reload(), false);
  const err = store.lastError();
  assert.ok(err?.issues.some((i) => i.file?.endsWith('bad.yaml') && i.path === 'spec.rules.0.expression'), JSON.stringify(err?.issues));
  assert.equal(store.current().of('ExecPolicy').length, 1, 'the previous set stays active');
  await store.close();
});

test('a typed line the gateway could not follow is denied even when it looks empty, and allow still applies the rules', async () => {
  const { judgeTypedLine } = await import('./exec.ts');
  // History recall and yank fill the remote line without one typed character.
  assert.equal(judgeTypedLine([policy], input({ line: '' }), true).decision.allowed, false);
  assert.equal(judgeTypedLine([policy], input({ line: '' }), true).decision.rule, 'opaqueLines');
  const lenient = compileExecPolicy(doc({ opaqueLines: 'allow', rules: [{ name: 'no-rm', on: 'line', expression: 'line.matches("^\\\\s*rm\\\\b")' }] }), 't');
  assert.equal(judgeTypedLine([lenient], input({ line: 'rm -rf /' }), true).decision.allowed, false);
  assert.equal(judgeTypedLine([lenient], input({ line: 'ls' }), true).decision.allowed, true);
  assert.equal(judgeTypedLine([lenient], input({ line: 'ls' }), false).decision.allowed, true);
});
