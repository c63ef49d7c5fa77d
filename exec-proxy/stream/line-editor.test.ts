import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LineEditor } from './line-editor.ts';

function lines(input: string | string[]): { line: string; opaque: boolean }[] {
  const ed = new LineEditor();
  const out: { line: string; opaque: boolean }[] = [];
  for (const chunk of Array.isArray(input) ? input : [input]) {
    for (const ev of ed.feed(Buffer.from(chunk, 'latin1'))) if (ev.type === 'enter') out.push({ line: ev.line, opaque: ev.opaque });
  }
  return out;
}

test('typed lines are rebuilt through the editing keys people use', () => {
  const cases: { name: string; input: string | string[]; line: string; opaque?: boolean }[] = [
    { name: 'plain text and CR', input: 'ls -l\r', line: 'ls -l' },
    { name: 'LF also ends a line', input: 'id\n', line: 'id' },
    { name: 'DEL erases the previous character', input: 'rmx\x7f -rf /\r', line: 'rm -rf /' },
    { name: 'ctrl-h erases too', input: 'lss\x08\r', line: 'ls' },
    { name: 'ctrl-u kills the line', input: 'echo hi\x15rm -rf /\r', line: 'rm -rf /' },
    { name: 'ctrl-w kills the previous word', input: 'echo safe\x17rm\r', line: 'echo rm' },
    { name: 'left arrow then insert', input: 'r -rf\x1b[D\x1b[D\x1b[D\x1b[Dm\r', line: 'rm -rf' },
    { name: 'left, right and DEL in the middle', input: 'abcd\x1b[D\x1b[D\x1b[C\x7f\r', line: 'abd' },
    { name: 'home (ctrl-a) then insert', input: '-rf /\x01rm \r', line: 'rm -rf /' },
    { name: 'SS3 arrows (application cursor mode)', input: 'ac\x1bODb\r', line: 'abc' },
    { name: 'Delete key removes under the cursor', input: 'abc\x1b[D\x1b[D\x1b[3~\r', line: 'ac' },
    { name: 'ctrl-c discards the line', input: 'rm -rf /\x03ls\r', line: 'ls' },
    { name: 'split across frames, escape sequence split too', input: ['rm -r', 'f\x1b', '[D\x1b[C /', '\r'], line: 'rm -rf /' },
    { name: 'bracketed paste is literal text', input: '\x1b[200~rm -rf /\x1b[201~\r', line: 'rm -rf /' },
    { name: 'history recall makes the line opaque', input: '\x1b[A\r', line: '', opaque: true },
    { name: 'tab completion makes the line opaque', input: 'rm -r\t /\r', line: 'rm -r /', opaque: true },
    { name: 'reverse search makes the line opaque', input: '\x12rm\r', line: 'rm', opaque: true },
  ];
  for (const c of cases) {
    const got = lines(c.input);
    assert.equal(got.length, 1, c.name);
    assert.equal(got[0]?.line, c.line, c.name);
    assert.equal(got[0]?.opaque, c.opaque ?? false, c.name);
  }
});

test('bytes are split at each Enter so the Enter can be held back', () => {
  const ed = new LineEditor();
  const evs = ed.feed(Buffer.from('ls\rrm x\r\npwd'));
  assert.deepEqual(
    evs.map((e) => (e.type === 'enter' ? ['enter', e.line, e.data.toString('latin1')] : ['bytes', e.data.toString('latin1')])),
    [['bytes', 'ls'], ['enter', 'ls', '\r'], ['bytes', 'rm x'], ['enter', 'rm x', '\r\n'], ['bytes', 'pwd']],
  );
  assert.equal(ed.line, 'pwd');
});

test('a line past maxLineBytes becomes opaque instead of growing without bound', () => {
  const ed = new LineEditor({ maxLineBytes: 4 });
  const evs = ed.feed(Buffer.from('abcdefgh\r'));
  const enter = evs.find((e) => e.type === 'enter');
  assert.ok(enter && enter.type === 'enter');
  assert.equal(enter.opaque, true);
  assert.equal(enter.line, 'abcd');
});
