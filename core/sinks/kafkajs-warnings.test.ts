import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';

const script = (silence: boolean): string => `
${silence ? `(await import(${JSON.stringify(new URL('./kafkajs-warnings.ts', import.meta.url).href)})).silenceKafkajsTimeoutWarning();` : ''}
setTimeout(() => {}, -1795714036151);
process.emitWarning('still printed', 'SomeOtherWarning');
await new Promise((r) => setTimeout(r, 20));
`;

function stderrOf(silence: boolean): string {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script(silence)], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stderr;
}

test('only the TimeoutNegativeWarning kafkajs causes is dropped; other warnings still print', () => {
  const plain = stderrOf(false);
  assert.match(plain, /TimeoutNegativeWarning/);
  assert.match(plain, /SomeOtherWarning: still printed/);
  const silenced = stderrOf(true);
  assert.doesNotMatch(silenced, /TimeoutNegativeWarning/);
  assert.match(silenced, /SomeOtherWarning: still printed/);
});
