/**
 * skaffold.yaml against skaffold's own published JSON schema (fetched from the
 * skaffold Go module into the cache, not vendored), and against the manifests
 * it deploys. There is no skaffold binary or Docker engine here, so this is
 * what can be checked without running `skaffold dev`.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { before, test } from 'node:test';
import { Ajv, type ValidateFunction } from 'ajv';
import { parse as parseYaml } from 'yaml';
import { harness } from '../support/env.ts';
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
