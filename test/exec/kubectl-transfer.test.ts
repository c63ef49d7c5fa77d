/**
 * Bulk streams through the relay with the machine's kubectl: `kubectl cp`
 * both ways with a 50 MB file, and `kubectl port-forward` (tunnelled
 * SPDY/3.1 over WebSocket) carrying HTTP.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { kubectl } from '../support/env.ts';
import { recorded, sessionEnd, startRig } from './helpers.ts';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

test('kubectl cp copies a 50 MB file into the pod and back intact, and the transfer is recorded in full', async (t) => {
  const rig = await startRig();
  t.after(() => rig.close());
  const dir = mkdtempSync(path.join(tmpdir(), 'kubetrail-cp-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const src = path.join(dir, 'big.bin');
  const content = randomBytes(50 * 1024 * 1024);
  writeFileSync(src, content);
  const podDir = path.join(dir, 'pod');
  mkdirSync(podDir);
  const up = await kubectl(rig.gw.kubeconfig, ['cp', src, `web-1:${podDir}/big.bin`], undefined, { timeoutMs: 120_000 });
  assert.equal(up.status, 0, up.stderr);
  assert.equal(sha(readFileSync(path.join(podDir, 'big.bin'))), sha(content), 'arrived intact in the pod');
  const upId = rig.gw.sessions.at(-1) as string;
  const upEnd = await sessionEnd(rig.sink, upId);
  assert.equal(upEnd.exitCode, 0);
  assert.ok((upEnd.bytesIn ?? 0) > 50 * 1024 * 1024);
  assert.equal(recorded(rig.sink, upId, 'stdin').length, upEnd.bytesIn, 'every stdin byte recorded, in order');

  const back = path.join(dir, 'back.bin');
  const down = await kubectl(rig.gw.kubeconfig, ['cp', `web-1:${podDir}/big.bin`, back], undefined, { timeoutMs: 120_000 });
  assert.equal(down.status, 0, down.stderr);
  assert.equal(sha(readFileSync(back)), sha(content), 'arrived intact locally');
  const downId = rig.gw.sessions.at(-1) as string;
  const downEnd = await sessionEnd(rig.sink, downId);
  assert.equal(recorded(rig.sink, downId, 'output').length, downEnd.bytesOut, 'every stdout and stderr byte recorded, in order');
});

test('kubectl port-forward carries HTTP through the tunnelled SPDY protocol; the session records ports and bytes, not content', async (t) => {
  const rig = await startRig();
  t.after(() => rig.close());
  const body = 'hello through port-forward ' + 'x'.repeat(100_000);
  const http = createServer((_req, res) => res.end(body));
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', () => r()));
  t.after(() => http.close());
  const remote = (http.address() as AddressInfo).port;
  const pf = spawn('kubectl', ['--kubeconfig', rig.gw.kubeconfig, 'port-forward', 'web-1', `:${remote}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => pf.kill('SIGKILL'));
  let out = '';
  let errOut = '';
  pf.stderr.on('data', (c: Buffer) => (errOut += c.toString()));
  const local = await new Promise<number>((resolve, reject) => {
    pf.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /Forwarding from 127\.0\.0\.1:(\d+) ->/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    pf.on('exit', () => reject(new Error(`kubectl port-forward exited: ${errOut}`)));
  });
  for (let i = 0; i < 3; i++) {
    const res = await fetch(`http://127.0.0.1:${local}/`);
    assert.equal(await res.text(), body);
  }
  pf.kill('SIGINT');
  await new Promise((r) => pf.once('exit', r));
  const id = rig.gw.sessions.at(-1) as string;
  const end = await sessionEnd(rig.sink, id);
  assert.equal(end.kind, 'portforward');
  assert.equal(end.protocol, 'SPDY/3.1+portforward.k8s.io');
  assert.deepEqual(end.ports, [remote]);
  assert.ok((end.bytesOut ?? 0) > 3 * body.length, `bytesOut ${end.bytesOut}`);
  assert.ok((end.bytesIn ?? 0) > 0);
  assert.ok(!rig.sink.events.some((e) => e.type === 'session.data' && e.correlation?.session === id), 'no content recorded');
});
