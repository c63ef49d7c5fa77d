import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { createLogger } from './logger.ts';

function capture(): { stream: Writable; lines: () => Record<string, unknown>[] } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk.toString());
      cb();
    },
  });
  return { stream, lines: () => chunks.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) };
}

test('authorization headers, tokens and passwords never reach the log', () => {
  const { stream, lines } = capture();
  const log = createLogger({ destination: stream });
  const secret = 'eyJhbGciOiJSUzI1NiJ9.secret-token';
  log.info({ req: { headers: { authorization: `Bearer ${secret}`, 'sec-websocket-protocol': `base64url.bearer.authorization.k8s.io.${secret}` } } }, 'request');
  log.info({ token: secret, kafka: { password: secret } }, 'config');
  log.child({ session: 's1' }).warn({ headers: { authorization: secret } }, 'child');
  const text = JSON.stringify(lines());
  assert.equal(text.includes(secret), false, text);
  assert.equal(lines().length, 3);
  assert.ok(text.includes('[REDACTED]'));
});

test('messages are constant and data goes in fields', () => {
  const { stream, lines } = capture();
  createLogger({ destination: stream, name: 'webhook' }).info({ uid: 'abc' }, 'review admitted');
  const [line] = lines();
  assert.equal(line?.['msg'], 'review admitted');
  assert.equal(line?.['uid'], 'abc');
  assert.equal(line?.['name'], 'webhook');
});
