/**
 * Recording to the real local log, then reading it back with the real CLI:
 * `kubetrail sessions` lists the session, `kubetrail replay` reproduces the
 * output byte for byte, and `--export` writes asciicast v2 that a strict
 * parser (written to the spec) accepts.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { loadConfig } from '../../core/config.ts';
import { createLogger } from '../../core/logger.ts';
import { createEventPipeline } from '../../core/pipeline.ts';
import { drainSessions } from '../../exec-proxy/stream/index.ts';
import { startFakeUpstream } from '../tools/fake-exec-upstream.ts';
import { startStreamGateway } from '../tools/stream-gateway.ts';
import { REPO_ROOT } from '../harness/harness.ts';
import { productEnv } from '../support/env.ts';
import { parseAsciicast } from './asciicast-parser.ts';

function runBytes(cmd: string, args: string[]): Promise<{ status: number | null; stdout: Buffer; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: productEnv() });
    const out: Buffer[] = [];
    let err = '';
    c.stdout.on('data', (d: Buffer) => out.push(d));
    c.stderr.on('data', (d: Buffer) => (err += d.toString()));
    c.on('close', (status) => resolve({ status, stdout: Buffer.concat(out), stderr: err }));
  });
}

const cli = (args: string[]) => runBytes(process.execPath, [path.join(REPO_ROOT, 'cli', 'main.ts'), ...args]);

test('a recorded session is listed by kubetrail sessions and replayed byte for byte; its asciicast export is valid v2', async (t) => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'kubetrail-replay-'));
  const config = loadConfig({ document: { dataDir, cluster: 'replay-test' } });
  const pipeline = await createEventPipeline({ config, log: createLogger({ level: 'silent' }), registry: new Registry(), component: 'proxy', instance: 'replay-test' });
  const up = await startFakeUpstream({ token: 'upstream-token' });
  const gw = await startStreamGateway({ upstream: up.url, upstreamToken: 'upstream-token', sink: pipeline });
  t.after(async () => {
    await gw.close();
    await up.close();
    rmSync(dataDir, { recursive: true, force: true });
  });
  // Output with a tab, a multi-byte character split across two writes, a non-UTF-8 byte, and a pause.
  const script = `printf 'one\\ttwo\\n'; printf '\\342\\202'; sleep 0.2; printf '\\254 euro\\n\\377 raw\\n'; seq 1 2000`;
  const k = await runBytes('kubectl', ['--kubeconfig', gw.kubeconfig, 'exec', 'web-1', '--', 'sh', '-c', script]);
  assert.equal(k.status, 0, k.stderr);
  const id = gw.sessions.at(-1) as string;
  await drainSessions();
  await pipeline.close();

  const list = await cli(['sessions', '--log-dir', dataDir, '-o', 'json']);
  assert.equal(list.status, 0, list.stderr);
  const rows = list.stdout.toString().trim().split('\n').map((l) => JSON.parse(l) as { type: string; correlation: { session: string }; body: { exitCode?: number; command?: string[] } });
  const mine = rows.find((r) => r.correlation.session === id);
  assert.equal(mine?.type, 'session.end');
  assert.equal(mine?.body.exitCode, 0);
  const table = await cli(['sessions', '--log-dir', dataDir, '--pod', 'web-1']);
  assert.match(table.stdout.toString(), new RegExp(`${id}.*agent-ci.*exec.*agents/web-1`));
  const none = await cli(['sessions', '--log-dir', dataDir, '--pod', 'other-pod', '-o', 'json']);
  assert.equal(none.stdout.toString(), '');

  const replay = await cli(['replay', id, '--log-dir', dataDir, '--speed', '50']);
  assert.equal(replay.status, 0, replay.stderr);
  assert.ok(replay.stdout.equals(k.stdout), 'replayed bytes equal what kubectl printed');

  const cast = path.join(dataDir, 'session.cast');
  const exp = await cli(['replay', id, '--log-dir', dataDir, '--export', cast]);
  assert.equal(exp.status, 0, exp.stderr);
  const parsed = parseAsciicast(readFileSync(cast, 'utf8'));
  assert.equal(parsed.header.command, `sh -c ${script}`);
  const out = parsed.events.filter((e) => e[1] === 'o').map((e) => e[2]).join('');
  assert.equal(out, new TextDecoder().decode(k.stdout), 'asciicast output is the UTF-8 reading of the same bytes');
  assert.match(out, /€ euro/, 'the split character is whole');
  const times = parsed.events.map((e) => e[0]);
  assert.ok((times.at(-1) ?? 0) >= 0.15, 'the pause is kept');

  // The real player, when this machine has it (CI may not): it must accept the file and print the same output.
  const which = await runBytes('sh', ['-c', 'command -v asciinema']);
  if (which.status === 0) {
    const played = await runBytes('asciinema', ['play', '-s', '100', '-i', '0.01', cast]);
    assert.equal(played.status, 0, played.stderr);
    assert.equal(played.stdout.toString('utf8'), out, 'asciinema play prints the recorded output');
  } else {
    t.diagnostic('asciinema not installed: skipped `asciinema play` check');
  }

  const missing = await cli(['replay', 'no-such-session', '--log-dir', dataDir]);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /no session no-such-session/);
});
