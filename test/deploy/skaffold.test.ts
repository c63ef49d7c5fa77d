/**
 * skaffold.yaml against skaffold's own published JSON schema (fetched from the
 * skaffold Go module into the cache, not vendored), and against the manifests
 * it deploys; and the `node` profile's custom build script and render hook on
 * their own, against the harness node. CI has no skaffold binary (no registry
 * serves it) and no Docker engine, so `skaffold run`/`dev` themselves were run
 * by hand (docs/testing.md, "skaffold on the harness node").
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { before, test } from 'node:test';
import { Ajv, type ValidateFunction } from 'ajv';
import { parse as parseYaml } from 'yaml';
import { harness, run } from '../support/env.ts';
import { deleteLocalPvs } from './in-cluster-support.ts';
import { REPO, SKAFFOLD_SCHEMA_VERSION, find, preparedManifests, render, skaffoldSchema } from './support.ts';

interface SkaffoldConfig {
  apiVersion: string;
  build: { artifacts: { image: string; docker?: { dockerfile: string } }[] };
  manifests: { kustomize: { paths: string[] }; hooks?: { before?: { host: { command: string[] } }[] } };
  deploy: { kubectl?: object };
  portForward: { resourceType: string; resourceName: string; namespace: string; port: number; localPort: number }[];
  profiles: { name: string; manifests?: { kustomize?: { paths: string[] } } }[];
}

let validate: ValidateFunction;
const config = parseYaml(readFileSync(path.join(REPO, 'skaffold.yaml'), 'utf8')) as SkaffoldConfig;

before(async () => {
  const schema = await skaffoldSchema();
  // The schema carries editor hints (x-intellij-html-description, enumDescriptions): not strict mode.
  const ajv = new Ajv({ strict: false, allErrors: true });
  validate = ajv.compile(schema);
});

test(`skaffold.yaml validates against skaffold's published ${SKAFFOLD_SCHEMA_VERSION} JSON schema`, () => {
  assert.equal(config.apiVersion, `skaffold/${SKAFFOLD_SCHEMA_VERSION}`);
  const ok = validate(config);
  assert.equal(ok, true, JSON.stringify(validate.errors, null, 2));
});

const broken: { name: string; mutate: (c: SkaffoldConfig & Record<string, unknown>) => void }[] = [
  { name: 'an unknown top-level field', mutate: (c) => void (c['deployy'] = {}) },
  { name: 'an unknown field in the kustomize renderer', mutate: (c) => void ((c.manifests.kustomize as unknown as Record<string, unknown>)['path'] = 'x') },
  { name: 'a port-forward port that is not a number', mutate: (c) => void ((c.portForward[0] as unknown as Record<string, unknown>)['localPort'] = 'ninety') },
];
for (const b of broken) {
  test(`the schema check is real: skaffold.yaml with ${b.name} is rejected`, () => {
    const copy = structuredClone(config) as SkaffoldConfig & Record<string, unknown>;
    b.mutate(copy);
    assert.equal(validate(copy), false);
  });
}

test('skaffold builds the image the manifests name, from the Dockerfile, and deploys the dev overlay with kustomize and kubectl', async (t) => {
  const env = harness();
  assert.deepEqual(config.build.artifacts.map((a) => a.image), ['kubetrail']);
  const dockerfile = config.build.artifacts[0]?.docker?.dockerfile ?? 'Dockerfile';
  assert.ok(existsSync(path.join(REPO, dockerfile)));
  assert.deepEqual(config.manifests.kustomize.paths, ['manifests/overlays/dev']);
  assert.ok(config.deploy.kubectl);
  const prod = config.profiles.find((p) => p.name === 'prod');
  assert.deepEqual(prod?.manifests?.kustomize?.paths, ['manifests/overlays/prod']);
  for (const p of [...config.manifests.kustomize.paths, ...(prod?.manifests?.kustomize?.paths ?? [])]) assert.ok(existsSync(path.join(REPO, p, 'kustomization.yaml')), p);

  // What skaffold deploys: every container uses the image skaffold builds, and the port-forward target exists.
  const prepared = await preparedManifests();
  t.after(() => prepared.cleanup());
  const objs = await render(env.ADMIN_KUBECONFIG, path.join(prepared.dir, 'overlays', 'dev'));
  const images = objs
    .filter((o) => o.kind === 'Deployment')
    .flatMap((o) => ((o['spec'] as { template: { spec: { containers: { image: string }[] } } }).template.spec.containers ?? []).map((c) => c.image));
  assert.deepEqual(images, ['kubetrail', 'kubetrail']);
  const pf = config.portForward[0];
  assert.ok(pf);
  assert.equal(pf.resourceType, 'service');
  const svc = find(objs, 'Service', pf.resourceName) as { metadata: { namespace?: string }; spec?: { ports: { port: number }[] } } & ReturnType<typeof find>;
  assert.equal(svc.metadata.namespace, pf.namespace);
  assert.ok((svc['spec'] as { ports: { port: number }[] }).ports.some((p) => p.port === pf.port));
});

test("skaffold's render hook creates the dev overlay's certificates with kubetrail certs", () => {
  const cmd = config.manifests.hooks?.before?.[0]?.host.command ?? [];
  assert.deepEqual(cmd.slice(0, 6), ['npm', 'run', '--silent', 'kubetrail', '--', 'certs']);
  assert.equal(cmd[cmd.indexOf('--out') + 1], 'manifests/overlays/dev/certs');
  const dns = (cmd[cmd.indexOf('--dns') + 1] ?? '').split(',');
  // The API server calls the webhook Service by this name; the proxy's is what in-cluster agents use.
  assert.ok(dns.includes('kubetrail-webhook.kubetrail.svc'));
  assert.ok(dns.includes('kubetrail-proxy.kubetrail.svc'));
  // The port-forwarded proxy is reached as localhost.
  assert.ok(dns.includes('localhost'));
});

interface NodeProfile {
  build: { local: { push: boolean }; artifacts: { image: string; custom: { buildCommand: string; dependencies: { paths: string[] } } }[] };
  manifests: { hooks: { before: { host: { command: string[] } }[] }; kustomize: { paths: string[] } };
}

test("the node profile builds with the repository's buildah script, without pushing, and renders the one-command install from its hook", () => {
  const node = config.profiles.find((p) => p.name === 'node') as unknown as NodeProfile | undefined;
  assert.ok(node, 'a node profile');
  assert.equal(node.build.local.push, false);
  assert.deepEqual(node.build.artifacts.map((a) => a.image), ['kubetrail']);
  assert.equal(node.build.artifacts[0]?.custom.buildCommand, 'bash test/deploy/skaffold-build.sh');
  // Every directory the image's sources come from (build-image.sh hashes the same) triggers a rebuild.
  for (const d of ['bin', 'cli', 'core', 'certs', 'webhook', 'exec-proxy', 'policies', 'Dockerfile']) assert.ok(node.build.artifacts[0]?.custom.dependencies.paths.includes(d), d);
  assert.deepEqual(node.manifests.hooks.before[0]?.host.command, ['node_modules/.bin/node', 'test/deploy/skaffold-node-manifests.ts']);
  assert.deepEqual(node.manifests.kustomize.paths, ['test/.harness/skaffold/manifests']);
});

test("the node profile's build script imports the image into the node's containerd as the tag asked for and as <name>:<image ID>; its render hook names that image and the harness Kafka", { skip: !harness().NODE_NAME && 'the harness runs no node' }, async (t) => {
  const env = harness();
  const tag = `kubetrail:skaffold-ci-${process.pid}`;
  const pushed = await run('bash', [path.join(REPO, 'test', 'deploy', 'skaffold-build.sh')], undefined, { env: { ...process.env, IMAGE: tag, PUSH_IMAGE: 'true' } });
  assert.equal(pushed.status, 1);
  assert.match(pushed.stderr, /there is no registry to push to here; use build\.local\.push: false/);
  const b = await run('bash', [path.join(REPO, 'test', 'deploy', 'skaffold-build.sh')], undefined, { timeoutMs: 20 * 60_000, env: { ...process.env, IMAGE: tag, PUSH_IMAGE: 'false' } });
  assert.equal(b.status, 0, b.stderr);
  const id = /\(image ID ([0-9a-f]{12})\)/.exec(b.stderr)?.[1];
  assert.ok(id, b.stderr);
  const sock = path.join(env.HARNESS_DIR, 'node', 'containerd', 'containerd.sock');
  const ls = await run('ctr', ['--address', sock, '-n', 'k8s.io', 'images', 'ls', '-q']);
  const refs = ls.stdout.split('\n');
  assert.ok(refs.includes(`docker.io/library/${tag}`), 'the tag skaffold asks for');
  const byId = refs.find((r) => r.startsWith(`docker.io/library/kubetrail:${id}`));
  assert.ok(byId && /^docker\.io\/library\/kubetrail:[0-9a-f]{64}$/.test(byId), 'the reference skaffold deploys without a push');
  t.after(() => run('ctr', ['--address', sock, '-n', 'k8s.io', 'images', 'rm', `docker.io/library/${tag}`]));

  t.after(() => deleteLocalPvs());
  const hook = await run(process.execPath, [path.join(REPO, 'test', 'deploy', 'skaffold-node-manifests.ts')], undefined, { env: { ...process.env } });
  assert.equal(hook.status, 0, hook.stderr);
  const objs = await render(env.ADMIN_KUBECONFIG, path.join(REPO, 'test', '.harness', 'skaffold', 'manifests'));
  const sts = objs.filter((o) => o.kind === 'StatefulSet');
  assert.deepEqual(sts.flatMap((o) => (o['spec'] as { template: { spec: { containers: { image: string }[] } } }).template.spec.containers.map((c) => c.image)), ['kubetrail:dev', 'kubetrail:dev']);
  const cfg = JSON.stringify(objs.filter((o) => o.kind === 'ConfigMap'));
  assert.ok(cfg.includes(env.KAFKA_NODE_BROKERS ?? 'no pod listener'), 'Kafka is the harness broker');
  const pvs = await run('kubectl', ['--kubeconfig', env.ADMIN_KUBECONFIG, 'get', 'pv', '-l', 'kubetrail.test/local-pv=true', '-o', 'jsonpath={.items[*].spec.claimRef.name}']);
  assert.deepEqual(pvs.stdout.split(' ').sort(), ['data-kubetrail-proxy-0', 'data-kubetrail-proxy-1', 'data-kubetrail-webhook-0', 'data-kubetrail-webhook-1']);
});
