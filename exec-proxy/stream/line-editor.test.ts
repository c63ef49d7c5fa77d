import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LineEditor, type TypedLine } from './line-editor.ts';

/** Every key that may run a line, with the readings that would run. */
function enters(input: string | string[]): TypedLine[][] {
  const ed = new LineEditor();
  const out: TypedLine[][] = [];
  for (const chunk of Array.isArray(input) ? input : [input]) {
    for (const ev of ed.feed(Buffer.from(chunk, 'latin1'))) if (ev.type === 'enter') out.push([...ev.lines]);
  }
  return out;
}

test('typed lines are rebuilt through the editing keys readline and busybox share', () => {
  const cases: { name: string; input: string | string[]; line: string; opaque?: boolean }[] = [
    { name: 'plain text and CR', input: 'ls -l\r', line: 'ls -l' },
    { name: 'LF (ctrl-j) also ends a line', input: 'id\n', line: 'id' },
    { name: 'ctrl-o runs the line too', input: 'id\x0f', line: 'id' },
    { name: 'DEL erases the previous character', input: 'rmx\x7f -rf /\r', line: 'rm -rf /' },
    { name: 'ctrl-h erases too', input: 'lss\x08\r', line: 'ls' },
    { name: 'ctrl-u kills the line', input: 'echo hi\x15rm -rf /\r', line: 'rm -rf /' },
    { name: 'ctrl-w kills the previous word', input: 'echo safe\x17rm\r', line: 'echo rm' },
    { name: 'ctrl-d deletes under the cursor', input: 'rmZ\x02\x04 -rf\r', line: 'rm -rf' },
    { name: 'left arrow then insert', input: 'r -rf\x1b[D\x1b[D\x1b[D\x1b[Dm\r', line: 'rm -rf' },
    { name: 'left, right and DEL in the middle', input: 'abcd\x1b[D\x1b[D\x1b[C\x7f\r', line: 'abd' },
    { name: 'home (ctrl-a) then insert', input: '-rf /\x01rm \r', line: 'rm -rf /' },
    { name: 'SS3 arrows (application cursor mode)', input: 'ac\x1bODb\r', line: 'abc' },
    { name: 'Delete key removes under the cursor', input: 'abc\x1b[D\x1b[D\x1b[3~\r', line: 'ac' },
    { name: 'ctrl-c discards the line', input: 'rm -rf /\x03ls\r', line: 'ls' },
    { name: 'split across frames, escape sequence split too', input: ['rm -r', 'f\x1b', '[D\x1b[C /', '\r'], line: 'rm -rf /' },
    { name: 'history recall makes the line opaque', input: '\x1b[A\r', line: '', opaque: true },
    { name: 'tab completion makes the line opaque', input: 'rm -r\t /\r', line: 'rm -r /', opaque: true },
    { name: 'reverse search makes the line opaque', input: '\x12rm\r', line: 'rm', opaque: true },
    { name: 'undo (ctrl-_) makes the line opaque', input: 'rm\x1f\r', line: 'rm', opaque: true },
    { name: 'ctrl-left is a word move, opaque', input: 'rm\x1b[1;5D\r', line: 'rm', opaque: true },
    { name: 'a meta key is opaque', input: 'RM\x01\x1bl\r', line: 'RM', opaque: true },
    { name: 'a byte >= 0x80 is opaque', input: 'RM\x01\xec\r', line: 'RM', opaque: true },
    { name: 'a quoted ctrl-u kills nothing', input: 'rm #\x16\x15\r', line: 'rm #', opaque: true },
    { name: 'ctrl-] takes the next key as its argument', input: 'rm #\x1d\x15\r', line: 'rm #', opaque: true },
    { name: 'a line ending in a backslash is judged with the next one', input: 'r\\\rm -rf /\r', line: 'rm -rf /' },
  ];
  for (const c of cases) {
    const got = enters(c.input).filter((e) => e.length > 0);
    assert.equal(got.length, 1, c.name);
    assert.deepEqual(got[0]?.[0], { line: c.line, opaque: c.opaque ?? false }, c.name);
  }
});

test('the canonical-mode reading is judged as well', () => {
  // Without a line editor, ctrl-a is a character and "#" does not comment out the command.
  const got = enters('touch x \x01#\r');
  assert.deepEqual(got, [[{ line: '#touch x ', opaque: false }, { line: 'touch x \x01#', opaque: false }]]);
  // ctrl-d hands the text to the shell: Backspace cannot take it back.
  assert.deepEqual(enters('rm\x04\x7f\x7f -rf\r')[0]?.[1], { line: 'rm -rf', opaque: false });
});

test('a CR that a key reads as its argument is still judged, and the reading keeps its text', () => {
  const got = enters(['rm\x16\r', 'x\r']);
  assert.equal(got.length, 2);
  assert.deepEqual(got[0], [{ line: 'rm', opaque: true }]);
  assert.deepEqual(got[1], [{ line: 'rmx', opaque: true }, { line: 'rm\rx', opaque: false }]);
});

test('an Enter inside a bracketed paste may run the line in a shell without paste support', () => {
  const got = enters('\x1b[200~echo a\recho b\x1b[201~\r');
  assert.deepEqual(got[0]?.[0], { line: 'echo a', opaque: false });
  assert.deepEqual(got[1]?.[0], { line: 'echo a\necho b', opaque: false });
});

test('bytes are split at each key that may run a line, so it can be held back', () => {
  const ed = new LineEditor();
  const evs = [...ed.feed(Buffer.from('ls\rrm x\r\npwd'))];
  assert.deepEqual(
    evs.map((e) => (e.type === 'enter' ? ['enter', e.lines.map((l) => l.line).join('|'), e.data.toString('latin1')] : ['bytes', e.data.toString('latin1')])),
    [['bytes', 'ls'], ['enter', 'ls', '\r'], ['bytes', 'rm x'], ['enter', 'rm x', '\r'], ['enter', '', '\n'], ['bytes', 'pwd']],
  );
  assert.equal(ed.line, 'pwd');
});

test('a blocked line is cleared remotely with ctrl-e (repeated) ctrl-u, and with ctrl-c when a continued line waits', () => {
  const ed = new LineEditor();
  for (const ev of ed.feed(Buffer.from('rm -rf /'))) assert.equal(ev.type, 'bytes');
  const clear = '\x05'.repeat(16) + '\x15';
  assert.equal(ed.blocked().toString('latin1'), clear);
  for (const ev of ed.feed(Buffer.from('rm \\\r-rf'))) void ev;
  assert.equal(ed.blocked().toString('latin1'), `${clear}\x03`);
  assert.equal(ed.line, '');
});

test('a line blocked inside a bracketed paste ends the paste and drops the rest of it', () => {
  const ed = new LineEditor();
  const out: string[] = [];
  for (const ev of ed.feed(Buffer.from('\x1b[200~rm -rf /\recho rest\x1b[201~ls\r'))) {
    if (ev.type === 'bytes') out.push(ev.data.toString('latin1'));
    else if (ev.lines.some((l) => l.line.startsWith('rm'))) out.push(ed.blocked().toString('latin1'));
    else out.push(ev.data.toString('latin1'));
  }
  assert.deepEqual(out, ['\x1b[200~rm -rf /', `\x1b[201~${'\x05'.repeat(16)}\x15`, 'ls', '\r']);
});

test('a line past maxLineBytes becomes opaque instead of growing without bound', () => {
  const ed = new LineEditor({ maxLineBytes: 4 });
  const enter = [...ed.feed(Buffer.from('abcdefgh\r'))].find((e) => e.type === 'enter');
  assert.ok(enter && enter.type === 'enter');
  assert.deepEqual(enter.lines[0], { line: 'abcd', opaque: true });
});
