/**
 * The repository's Dockerfile builds with buildah (test/deploy/build-image.sh:
 * `buildah bud` on a local stand-in for the node:24 base, which cannot be
 * pulled here), and the image is what the manifests expect: a numeric
 * non-root user equal to the pods' runAsUser, code not writable by that user
 * (the pods also mount the root filesystem read-only), no package manager,
 * production dependencies only, no tests or keys. The image is inspected
 * through its files and config; no container is run.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { cacheDir } from '../harness/harness.ts';
import { harness, run } from '../support/env.ts';
import { REPO, find, render } from './support.ts';

const BUILDAH = ['--root', path.join(cacheDir(), 'buildah-app', 'root'), '--runroot', path.join(cacheDir(), 'buildah-app', 'run'), '--storage-driver', 'vfs'];
let image = '';
let archiveBytes = 0;
let ctr = '';
let root = '';

function buildah(args: readonly string[]): ReturnType<typeof run> {
  return run('buildah', [...BUILDAH, ...args], undefined, { timeoutMs: 15 * 60_000, env: { ...process.env, STORAGE_DRIVER: 'vfs' } });
}

before(async () => {
  const b = await run('bash', [path.join(REPO, 'test', 'deploy', 'build-image.sh')], undefined, { timeoutMs: 20 * 60_000 });
  assert.equal(b.status, 0, b.stderr);
  const out = Object.fromEntries(b.stdout.trim().split('\n').map((l) => l.split('=', 2) as [string, string]));
  image = out['IMAGE'] ?? '';
  archiveBytes = Number(out['SIZE']);
  const c = await buildah(['from', '--quiet', '--pull=never', image]);
  assert.equal(c.status, 0, c.stderr);
  ctr = c.stdout.trim();
  const m = await buildah(['mount', ctr]);
  assert.equal(m.status, 0, m.stderr);
  root = m.stdout.trim();
});

after(async () => {
  if (ctr) {
    await buildah(['umount', ctr]);
    await buildah(['rm', ctr]);
  }
});

test('the image runs as the numeric non-root user the pods require, with kubetrail as its entrypoint', async () => {
  const i = await buildah(['inspect', '--type', 'image', image]);
  assert.equal(i.status, 0, i.stderr);
  const cfg = (JSON.parse(i.stdout) as { OCIv1: { config: { User: string; Entrypoint: string[]; WorkingDir: string } } }).OCIv1.config;
  assert.equal(cfg.User, '10001:10001');
  assert.deepEqual(cfg.Entrypoint, ['node', '--disable-warning=TimeoutNegativeWarning', 'cli/main.ts']);
  assert.equal(cfg.WorkingDir, '/app');
  const objs = await render(harness().ADMIN_KUBECONFIG, path.join(REPO, 'manifests'));
  for (const c of ['webhook', 'proxy']) {
    const pod = (find(objs, 'StatefulSet', `kubetrail-${c}`) as unknown as { spec: { template: { spec: { securityContext: { runAsUser: number; runAsNonRoot: boolean }; containers: { securityContext: { readOnlyRootFilesystem: boolean } }[] } } } }).spec.template.spec;
    assert.equal(`${pod.securityContext.runAsUser}:${pod.securityContext.runAsUser}`, cfg.User, `${c}: runAsUser is the image's user`);
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.equal(pod.containers[0]?.securityContext.readOnlyRootFilesystem, true);
  }
  process.stdout.write(`# image ${image}: OCI archive ${(archiveBytes / 1024 / 1024).toFixed(1)} MiB\n`);
});

test('the image holds the runtime sources and production dependencies only, owned by root, and no package manager', () => {
  for (const p of ['app/cli/main.ts', 'app/core/config.ts', 'app/node_modules/kafkajs/package.json', 'app/node_modules/@kubernetes/client-node/package.json', 'usr/local/bin/node']) assert.ok(existsSync(path.join(root, p)), p);
  for (const p of ['app/node_modules/typescript', 'app/node_modules/node', 'app/test', 'app/docs', 'app/manifests', 'usr/local/bin/npm', 'usr/local/lib/node_modules/npm']) assert.equal(existsSync(path.join(root, p)), false, `${p} is not in the image`);
  const walk = (dir: string, out: string[] = []): string[] => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p, out);
      else out.push(p);
    }
    return out;
  };
  const files = walk(path.join(root, 'app'));
  // kubetrail's own files (dependencies ship their own tests; not kubetrail's to prune).
  const own = files.filter((f) => !f.includes(`${path.sep}node_modules${path.sep}`));
  assert.ok(own.length > 50);
  assert.deepEqual(own.filter((f) => /\.test\.ts$|\.pem$|\.key$|\.crt$/.test(f)), [], 'no tests, keys or certificates');
  for (const f of [path.join(root, 'app'), path.join(root, 'app', 'cli', 'main.ts'), path.join(root, 'app', 'node_modules')]) {
    const s = statSync(f);
    assert.equal(s.uid, 0, `${f} is owned by root`);
    assert.equal(s.mode & 0o022, 0, `${f} is writable by its owner only`);
  }
});
