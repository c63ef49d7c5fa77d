/**
 * `kubetrail sessions -o json | head` used to crash with an EPIPE stack
 * trace. Every command is spawned here with its stdout a pipe whose reading
 * end is closed before the command writes anything (the earliest a reader
 * like `head` can close it): each must exit quietly, with the exit code it
 * would have had (verify keeps its verdict), and no error on stderr. The
 * webhook server keeps serving with a closed stdout and still stops cleanly.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Registry } from 'prom-client';
import { createEventPipeline, localLogDir } from '../../core/pipeline.ts';
import { sessionData, sessionEnd, sessionStart } from '../../core/events/builders.ts';
import { apiRequestDraft, memoryLogger, pipelineConfig, tempDir } from '../pipeline/support.ts';
import { productEnv } from '../support/env.ts';

const REPO = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = path.join(REPO, 'cli', 'main.ts');
const dir = tempDir('kt-closed-pipe-');
after(() => rmSync(dir, { recursive: true, force: true }));

const dataDir = path.join(dir, 'data');
const logDir = localLogDir(dataDir, 'proxy');
const pub = path.join(dataDir, 'keys', 'dev-signing.pub.pem');
const SESSION = 'sess-closed-pipe';

before(async () => {
  const p = await createEventPipeline({ config: pipelineConfig(dataDir), log: memoryLogger().log, registry: new Registry(), component: 'proxy', instance: 'closed-pipe' });
  const actor = { username: 'agent-ci', groups: ['agents'], authn: 'token' as const };
  const correlation = { session: SESSION };
  const body = { kind: 'exec' as const, pod: 'web-0', namespace: 'agents', command: ['sh'], tty: true, stdin: true };
  await p.emit(sessionStart({ actor, correlation }, body));
  for (let i = 0; i < 50; i++) await p.emit(sessionData({ actor, correlation }, { chunk: i, stream: 'stdout', offset: i * 64, t: i, data: Buffer.alloc(64, 0x61 + (i % 26)).toString('base64') }));
  await p.emit(sessionEnd({ actor, correlation }, { ...body, outcome: 'completed', exitCode: 0, chunks: 50 }));
  for (let i = 0; i < 2000; i++) await p.emit(apiRequestDraft(i, 200));
  await p.close();
});

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

/** Spawns `kubetrail ...args` with a stdout pipe closed at once; resolves when it exits. */
function withClosedStdout(args: string[], onSpawn?: (child: ReturnType<typeof spawn>) => void): Promise<Exit> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], cwd: dir, env: productEnv() });
    child.stdout.destroy();
    const err: Buffer[] = [];
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stderr: Buffer.concat(err).toString('utf8') }));
    onSpawn?.(child);
  });
}

const certsOut = path.join(dir, 'certs');
const tokenFile = path.join(dir, 'token');

const CASES: { name: string; args: string[]; code: number }[] = [
  { name: 'kubetrail --help', args: ['--help'], code: 0 },
  { name: 'events (table)', args: ['events', '--log-dir', logDir], code: 0 },
  { name: 'events -o json', args: ['events', '--log-dir', logDir, '-o', 'json'], code: 0 },
  { name: 'sessions (table)', args: ['sessions', '--log-dir', logDir], code: 0 },
  { name: 'sessions -o json', args: ['sessions', '--log-dir', logDir, '-o', 'json'], code: 0 },
  { name: 'replay', args: ['replay', SESSION, '--log-dir', logDir, '--speed', '1000000'], code: 0 },
  { name: 'verify (text)', args: ['verify', '--public-key', pub, '--log-dir', logDir], code: 0 },
  { name: 'verify -o json', args: ['verify', '--public-key', pub, '--log-dir', logDir, '-o', 'json'], code: 0 },
  // A failed verification keeps its non-zero exit when the reader goes away.
  { name: 'verify with the wrong key', args: ['verify', '--public-key', path.join(dir, 'other.pub.pem'), '--log-dir', logDir], code: 1 },
  { name: 'kubeconfig', args: ['kubeconfig', '--server', 'https://127.0.0.1:9443', '--token-file', tokenFile], code: 0 },
  { name: 'certs', args: ['certs', '--out', certsOut, '--dns', 'localhost'], code: 0 },
  ...['events', 'sessions', 'replay', 'verify', 'webhook', 'proxy', 'kubeconfig', 'certs', 'start'].map((c) => ({ name: `${c} --help`, args: [c, '--help'], code: 0 })),
];

test('every command exits quietly, with its own exit code, when its stdout is closed before it writes', async () => {
  writeFileSync(tokenFile, 'not-a-real-token\n');
  const { generateKeyPairSync } = await import('node:crypto');
  writeFileSync(path.join(dir, 'other.pub.pem'), generateKeyPairSync('ed25519').publicKey.export({ format: 'pem', type: 'spki' }).toString());
  const failures: string[] = [];
  for (const c of CASES) {
    const r = await withClosedStdout(c.args);
    if (r.code !== c.code || r.signal !== null || /EPIPE|Error|at /.test(r.stderr.replace(/^kubetrail certs: .*$/gm, ''))) {
      failures.push(`${c.name}: exit ${r.code} signal ${r.signal} stderr ${JSON.stringify(r.stderr.slice(0, 400))}`);
    }
  }
  assert.deepEqual(failures, []);
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

function readyz(port: number): Promise<number> {
  return new Promise((resolve) => {
    http
      .get({ host: '127.0.0.1', port, path: '/readyz' }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      })
      .on('error', () => resolve(0));
  });
}

test('the webhook server with a closed stdout keeps serving, and stops cleanly on SIGTERM', async () => {
  const certs = await withClosedStdout(['certs', '--out', path.join(dir, 'wh-certs'), '--dns', 'localhost']);
  assert.equal(certs.code, 0, certs.stderr);
  const health = await freePort();
  const policies = path.join(dir, 'policies');
  mkdirSync(policies, { recursive: true });
  const config = path.join(dir, 'webhook.yaml');
  writeFileSync(
    config,
    [
      `dataDir: ${path.join(dir, 'wh-data')}`,
      `cluster: test`,
      `policies: { dir: ${policies} }`,
      `webhook:`,
      `  listen: 127.0.0.1:0`,
      `  health: 127.0.0.1:${health}`,
      `  tls: { certFile: ${path.join(dir, 'wh-certs', 'tls.crt')}, keyFile: ${path.join(dir, 'wh-certs', 'tls.key')} }`,
    ].join('\n') + '\n',
  );
  let child: ReturnType<typeof spawn> | undefined;
  const exited = withClosedStdout(['webhook', '--config', config], (c) => (child = c));
  let status = 0;
  for (let i = 0; i < 3000 && status !== 200; i++) {
    status = await readyz(health);
    if (status !== 200) await new Promise((r) => setTimeout(r, 10));
  }
  assert.equal(status, 200, 'the webhook became ready with its stdout closed');
  child?.kill('SIGTERM');
  const r = await exited;
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /EPIPE|Error/);
});
