/**
 * Attack class: typed lines that a shell runs although the gateway's
 * typed-line guard blocked them (issue 13 item 3). Each case types keys into a
 * REAL shell under a pty (test/tools/pty-shell.py): the keys go through the
 * same TypedLineGuard and ExecPolicy evaluation as a session, the shell gets
 * exactly what the guard forwards, and the test then looks at what the shell
 * did. The policy blocks any line containing "touch"; every case tries to make
 * the shell run `touch pwned` anyway. The file must never exist, and a plain
 * allowed line typed afterwards must still run (so a case cannot pass because
 * the shell stopped listening).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { compileExecPolicy, judgeTypedLine, type ExecInput } from '../../core/policy/exec.ts';
import { TypedLineGuard } from '../../exec-proxy/stream/typed-line-guard.ts';

const DRIVER = fileURLToPath(new URL('../tools/pty-shell.py', import.meta.url));

const policy = compileExecPolicy(
  {
    apiVersion: 'kubetrail.io/v1alpha1',
    kind: 'ExecPolicy',
    metadata: { name: 'no-touch' },
    spec: { rules: [{ name: 'no-touch', on: 'line', expression: 'line.contains("touch")', message: 'touch is not allowed' }] },
  },
  'typed-line.test.ts',
);

const input: ExecInput = { kind: 'exec', namespace: 'default', pod: 'web-0', container: 'app', command: ['sh'], tty: true, user: { username: 'agent', groups: [], authn: 'oidc' } };

interface Shell {
  name: string;
  argv: string[];
  available: boolean;
}

const SHELLS: Shell[] = [
  { name: 'bash', argv: ['bash', '--norc', '--noprofile', '-i'], available: spawnSync('bash', ['-c', 'true']).status === 0 },
  { name: 'busybox sh', argv: ['/bin/busybox', 'sh', '-i'], available: existsSync('/bin/busybox') },
  // No line editor: the kernel's canonical mode edits the line (as for dash).
  { name: 'bash --noediting', argv: ['bash', '--norc', '--noprofile', '--noediting', '-i'], available: spawnSync('bash', ['-c', 'true']).status === 0 },
];

interface Case {
  name: string;
  /** Client frames, as latin1 strings. */
  keys: string[];
  /** Lines in the shell's history file before it starts. */
  history?: string[];
}

const CASES: Case[] = [
  { name: 'ctrl-o (operate-and-get-next) is checked like Enter', keys: ['touch pwned\x0f'] },
  { name: 'ctrl-j is checked like Enter', keys: ['touch pwned\n'] },
  { name: 'undo with ctrl-_ after a block does not bring the line back unchecked', keys: ['touch pwned\r', '\x1f\r'] },
  { name: 'undo with ctrl-x ctrl-u after a block does not bring the line back unchecked', keys: ['touch pwned\r', '\x18\x15\r'] },
  { name: 'ctrl-d deletes the character under the cursor', keys: ['touZch pwned\x01\x06\x06\x06\x04\r'] },
  { name: 'ctrl-v makes the next key literal, so a quoted ctrl-u kills nothing', keys: ['touch pwned #\x16\x15\r'] },
  { name: 'ctrl-] reads a character to search for, so the ctrl-u after it kills nothing', keys: ['touch pwned #\x1d\x15\r'] },
  { name: 'ctrl-y yanks killed text back', keys: ['touch pwned\x01\x0b\x19\r'] },
  { name: 'ctrl-t transposes characters', keys: ['tuoch pwned\x01\x06\x06\x14\r'] },
  { name: 'history recall (up arrow) of a line never typed here', keys: ['\x1b[A\r'], history: ['touch pwned'] },
  { name: 'history recall (ctrl-p)', keys: ['\x10\r'], history: ['touch pwned'] },
  { name: 'tab completion', keys: ['tou\t pwned\r'] },
  { name: 'an Enter inside a bracketed paste', keys: ['\x1b[200~touch pwned #\r\x1b[201~', '\r'] },
  { name: 'a line continued with a backslash is judged with its continuation', keys: ['tou\\\r', 'ch pwned\r'] },
  { name: 'a CR inside an unfinished escape sequence', keys: ['touch pwned\x1b[\r'] },
  { name: 'ctrl-left moves by word, not by character', keys: ['tch pwned\x1b[1;5D\x1b[1;5D\x06ou\r'] },
  { name: 'a byte with the high bit set is a meta key in the C locale (M-l: downcase-word)', keys: ['TOUCH pwned\x01\xec\r'] },
  { name: 'alt-l downcases a word', keys: ['TOUCH pwned\x01\x1bl\r'] },
  { name: 'without a line editor ctrl-a is a character, so "#" typed after it comments nothing out', keys: ['touch pwned \x01#\r'] },
  { name: 'without a line editor ctrl-d hands the text over, and Backspace cannot take it back', keys: ['tou\x04\x7f\x7f\x7fch pwned\r'] },
];

function segmentsFor(guard: TypedLineGuard, keys: string[]): { hex: string; executes: boolean }[] {
  const segs: { hex: string; executes: boolean }[] = [];
  let pending: Buffer[] = [];
  for (const frame of keys) {
    for (const c of guard.feed(Buffer.from(frame, 'latin1')).chunks) {
      pending.push(c.data);
      if (c.executes) {
        segs.push({ hex: Buffer.concat(pending).toString('hex'), executes: true });
        pending = [];
      }
    }
    // ctrl-c makes the shell print a new prompt: wait for it (the driver then syncs).
    if (frame.includes('\x03') && pending.length > 0) {
      segs.push({ hex: Buffer.concat(pending).toString('hex'), executes: true });
      pending = [];
    }
  }
  if (pending.length > 0) segs.push({ hex: Buffer.concat(pending).toString('hex'), executes: false });
  return segs;
}

function runShell(shell: Shell, dir: string, segments: { hex: string; executes: boolean }[]): string {
  const env = { PATH: '/usr/bin:/bin', HOME: dir, TERM: 'xterm', LANG: 'C', LC_ALL: 'C', PS1: 'P$((n+=1))> ', PS2: 'P$((n+=1))> ', HISTFILE: path.join(dir, '.history') };
  const r = spawnSync('python3', [DRIVER], { input: JSON.stringify({ argv: shell.argv, cwd: dir, env, segments, await_file: path.join(dir, 'ok') }), encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, `pty driver failed: ${r.stderr}`);
  return Buffer.from((JSON.parse(r.stdout) as { transcript: string }).transcript, 'hex').toString('latin1');
}

for (const shell of SHELLS) {
  for (const c of CASES) {
    test(`${shell.name}: ${c.name}`, { skip: shell.available ? false : `${shell.argv[0]} not installed` }, () => {
      const dir = mkdtempSync(path.join(tmpdir(), 'typed-line-'));
      try {
        writeFileSync(path.join(dir, '.history'), (c.history ?? []).map((l) => `${l}\n`).join(''));
        const guard = new TypedLineGuard((line, opaque) => judgeTypedLine([policy], { ...input, line }, opaque));
        // Afterwards: clear the line, and type an allowed line, which must run.
        const segments = segmentsFor(guard, [...c.keys, '\x05\x15\r', 'echo ok > ok\r']);
        const transcript = runShell(shell, dir, segments);
        const why = `transcript: ${JSON.stringify(transcript.slice(-1500))}`;
        assert.equal(existsSync(path.join(dir, 'pwned')), false, `the shell ran the blocked line; ${why}`);
        assert.equal(existsSync(path.join(dir, 'ok')) ? readFileSync(path.join(dir, 'ok'), 'utf8') : '', 'ok\n', `the allowed line after it did not run; ${why}`);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
}
