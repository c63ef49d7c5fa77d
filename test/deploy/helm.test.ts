/**
 * The Helm chart (charts/kubetrail) with helm built from its Go module
 * (test/deploy/build-helm.sh): `helm lint`; `helm template` renders the same
 * objects as `kubectl apply -k manifests/` and every value takes effect (the
 * rendered config is loaded with kubetrail's own config schema); and
 * install / upgrade / uninstall against the real API server (no node: the
 * pods never run), after which no webhook configuration is left behind.
 */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, rmSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { loadConfig } from '../../core/config.ts';
import { createLogger } from '../../core/logger.ts';
import { startSelfManagedTls } from '../../certs/self-managed-runtime.ts';
import { harness, kubectl, run } from '../support/env.ts';
import { builtHelm, helmRunner } from './in-cluster-support.ts';
import { REPO, deleteNamespace, render, type K8sObject } from './support.ts';

const CHART = path.join(REPO, 'charts', 'kubetrail');
const scratch = mkdtempSync(path.join(tmpdir(), 'kt-helm-'));
const NS = 'kubetrail';
let kubeconfig = '';
let installed = false;

before(async () => {
  kubeconfig = harness().ADMIN_KUBECONFIG;
  await builtHelm();
});

after(async () => {
  if (installed) await helmRun(['uninstall', 'kubetrail', '-n', NS, '--wait=false']);
  await kubectl(kubeconfig, ['delete', 'validatingwebhookconfiguration,mutatingwebhookconfiguration', 'kubetrail', '--ignore-not-found']);
  await deleteNamespace(kubeconfig, NS);
  rmSync(scratch, { recursive: true, force: true });
});

const helmRun = (args: readonly string[]): ReturnType<typeof run> => helmRunner(kubeconfig, scratch)(args);

async function template(args: readonly string[] = []): Promise<K8sObject[]> {
  // --include-crds: the ApprovalRequest CRD is in the chart's crds/ (installed when absent, never owned or removed by helm, as Helm wants CRDs).
  const r = await helmRun(['template', 'kubetrail', CHART, '-n', NS, '--include-crds', ...args]);
  assert.equal(r.status, 0, r.stderr);
  return parseAllDocuments(r.stdout).map((d) => d.toJS() as K8sObject).filter((o) => o !== null);
}

const key = (o: K8sObject): string => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name.replace(/^kubetrail-config-[a-z0-9]{10}$/, 'kubetrail-config')}`;
const find = (objs: K8sObject[], kind: string, name: string): K8sObject & Record<string, any> => {
  const o = objs.find((x) => x.kind === kind && x.metadata.name === name);
  assert.ok(o, `${kind}/${name}`);
  return o as K8sObject & Record<string, any>;
};

test('helm lint passes', async () => {
  const r = await helmRun(['lint', CHART, '--strict']);
  assert.equal(r.status, 0, r.stdout + r.stderr);
});

test('helm template renders the objects of kubectl apply -k manifests/ (the release namespace is helm\'s to create)', async () => {
  const chart = (await template()).map(key).sort();
  const kustomize = (await render(kubeconfig, path.join(REPO, 'manifests'))).filter((o) => o.kind !== 'Namespace').map(key).sort();
  assert.deepEqual(chart, kustomize);
});

test('the chart\'s defaults equal the manifests\' in what matters: webhooks, RBAC rules, pod security, the config', async () => {
  const chart = await template(['--set', 'image.repository=registry.example.com/kubetrail/kubetrail']);
  const kust = await render(kubeconfig, path.join(REPO, 'manifests'));
  for (const kind of ['ValidatingWebhookConfiguration', 'MutatingWebhookConfiguration']) assert.deepEqual(find(chart, kind, 'kubetrail')['webhooks'], find(kust, kind, 'kubetrail')['webhooks'], kind);
  for (const [kind, name] of [['ClusterRole', 'kubetrail-proxy'], ['ClusterRole', 'kubetrail-webhook-configurations'], ['Role', 'kubetrail-self-managed-webhook'], ['Role', 'kubetrail-self-managed-proxy']] as const) {
    assert.deepEqual(find(chart, kind, name)['rules'], find(kust, kind, name)['rules'], `${kind}/${name}`);
  }
  for (const c of ['webhook', 'proxy']) {
    const a = find(chart, 'StatefulSet', `kubetrail-${c}`).spec.template.spec;
    const b = find(kust, 'StatefulSet', `kubetrail-${c}`).spec.template.spec;
    assert.deepEqual(a.securityContext, b.securityContext);
    assert.deepEqual(a.containers[0].securityContext, b.containers[0].securityContext);
    assert.equal(a.containers[0].image, b.containers[0].image);
  }
  const chartConfig = loadConfig({ env: {}, document: parseYaml(find(chart, 'ConfigMap', 'kubetrail-config')['data']['config.yaml']) });
  const kustConfig = loadConfig({ env: {}, file: path.join(REPO, 'manifests', 'components', 'self-managed', 'config.yaml') });
  assert.deepEqual(chartConfig, kustConfig);
});

test('values take effect: image, replicas, Kafka with TLS and SASL, OIDC issuers, policies, failurePolicy, exclusions, resources, Service type', async () => {
  const values = path.join(scratch, 'values.yaml');
  writeFileSync(
    values,
    JSON.stringify({
      image: { repository: 'reg.local/kt', tag: '9.9.9' },
      webhook: { replicas: 3, failurePolicy: 'Ignore', namespaceExclusions: ['monitoring'], resources: { requests: { cpu: '250m', memory: '256Mi' }, limits: { memory: '1Gi' } } },
      proxy: { replicas: 4, service: { type: 'NodePort' } },
      kafka: {
        brokers: ['kafka-0.kafka:9093'],
        existingSecret: 'kafka-creds',
        tls: { caFile: '/etc/kubetrail/kafka/ca.crt' },
        sasl: { mechanism: 'scram-sha-512', username: 'kubetrail', passwordFile: '/etc/kubetrail/kafka/password' },
      },
      oidc: { issuers: [{ issuer: { url: 'https://issuer.example.com', audiences: ['kubetrail'] }, claimMappings: { username: { claim: 'sub', prefix: 'oidc:' } } }] },
      policies: { starterPack: false, inline: { 'mine.yaml': 'kind: GuardrailPolicy\n' } },
    }),
  );
  const objs = await template(['-f', values]);
  const wh = find(objs, 'StatefulSet', 'kubetrail-webhook');
  assert.equal(wh.spec.replicas, 3);
  assert.equal(wh.spec.template.spec.containers[0].image, 'reg.local/kt:9.9.9');
  assert.deepEqual(wh.spec.template.spec.containers[0].resources, { requests: { cpu: '250m', memory: '256Mi' }, limits: { memory: '1Gi' } });
  assert.ok(wh.spec.template.spec.volumes.some((v: { name: string; secret?: { secretName: string } }) => v.name === 'kafka' && v.secret?.secretName === 'kafka-creds'));
  assert.equal(find(objs, 'StatefulSet', 'kubetrail-proxy').spec.replicas, 4);
  assert.equal(find(objs, 'Service', 'kubetrail-proxy').spec.type, 'NodePort');
  const vwc = find(objs, 'ValidatingWebhookConfiguration', 'kubetrail')['webhooks'] as { name: string; failurePolicy: string; namespaceSelector: { matchExpressions?: { values: string[] }[] } }[];
  const validate = vwc.find((w) => w.name === 'validate.kubetrail.io');
  assert.equal(validate?.failurePolicy, 'Ignore');
  assert.deepEqual(validate?.namespaceSelector.matchExpressions?.[0]?.values, ['kube-system', 'kube-node-lease', NS, 'monitoring']);
  const cfg = loadConfig({ env: {}, document: parseYaml(find(objs, 'ConfigMap', 'kubetrail-config')['data']['config.yaml']) });
  assert.deepEqual(cfg.kafka?.brokers, ['kafka-0.kafka:9093']);
  assert.equal(cfg.kafka?.ssl?.caFile, '/etc/kubetrail/kafka/ca.crt');
  assert.equal(cfg.kafka?.sasl?.mechanism, 'scram-sha-512');
  assert.equal(cfg.proxy.authn.jwt[0]?.issuer.url, 'https://issuer.example.com');
  assert.deepEqual(Object.keys(find(objs, 'ConfigMap', 'kubetrail-policies')['data']), ['mine.yaml']);

  const own = await template(['--set', 'policies.existingConfigMap=site-policies']);
  assert.equal(own.some((o) => o.kind === 'ConfigMap' && o.metadata.name === 'kubetrail-policies'), false);
  const vol = find(own, 'StatefulSet', 'kubetrail-webhook').spec.template.spec.volumes.find((v: { name: string }) => v.name === 'policies');
  assert.equal(vol.configMap.name, 'site-policies');
  assert.ok((find(own, 'Role', 'kubetrail-read-own-config')['rules'][0].resourceNames as string[]).includes('site-policies'));
});

test('a bad failurePolicy or Service type is refused with a clear error', async () => {
  const r = await helmRun(['template', 'kubetrail', CHART, '--set', 'webhook.failurePolicy=Maybe']);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /webhook\.failurePolicy must be Fail or Ignore/);
  const s = await helmRun(['template', 'kubetrail', CHART, '--set', 'proxy.service.type=Ingress']);
  assert.match(s.stderr, /proxy\.service\.type must be ClusterIP, NodePort or LoadBalancer/);
});

test('the chart\'s starter pack is the one in policies/', () => {
  const dir = path.join(CHART, 'files', 'policies');
  const mine = readdirSync(dir).sort();
  const repo = readdirSync(path.join(REPO, 'manifests', 'base', 'policies')).filter((f) => f !== 'kustomization.yaml').sort();
  assert.deepEqual(mine, repo);
  for (const f of mine) assert.equal(readFileSync(path.join(dir, f), 'utf8'), readFileSync(path.join(REPO, 'manifests', 'base', 'policies', f), 'utf8'), f);
});

test('helm install (server dry run, then real), upgrade and uninstall against the API server leave no webhook configuration behind', async () => {
  const dry = await helmRun(['install', 'kubetrail', CHART, '-n', NS, '--create-namespace', '--dry-run=server']);
  assert.equal(dry.status, 0, dry.stderr);
  const inst = await helmRun(['install', 'kubetrail', CHART, '-n', NS, '--create-namespace']);
  installed = inst.status === 0;
  assert.equal(inst.status, 0, inst.stderr);
  const got = await kubectl(kubeconfig, ['get', 'validatingwebhookconfiguration,mutatingwebhookconfiguration', 'kubetrail', '-o', 'name']);
  assert.equal(got.status, 0, got.stderr);
  // What the webhook leader does once it runs: write the caBundle (here as the admin, with kubetrail's own code).
  const cfg = loadConfig({ env: {}, document: { dataDir: path.join(scratch, 'data'), selfManaged: { namespace: NS, kubeconfig, tls: {} } } });
  const leader = await startSelfManagedTls({ config: cfg, log: createLogger({ level: 'silent' }), role: 'webhook', manual: true, identity: 'helm-test', dir: path.join(scratch, 'tls') });
  await leader.elector?.step();
  await leader.certificates?.reconcile();
  await leader.close();
  const bundleText = async (): Promise<string> => (await kubectl(kubeconfig, ['get', 'validatingwebhookconfiguration', 'kubetrail', '-o', 'jsonpath={.webhooks[*].clientConfig.caBundle}'])).stdout;
  const written = await bundleText();
  const entries = (await kubectl(kubeconfig, ['get', 'validatingwebhookconfiguration', 'kubetrail', '-o', 'jsonpath={.webhooks[*].name}'])).stdout.split(' ').filter((n) => n !== '');
  assert.ok(entries.length >= 4);
  assert.equal(written.split(' ').filter((b) => b.length > 100).length, entries.length, 'each validating webhook got the caBundle');
  // The release namespace is writable though no webhook runs (it is outside every fail-closed entry): the upgrade works,
  // and keeps the caBundle (the chart does not set it).
  const up = await helmRun(['upgrade', 'kubetrail', CHART, '-n', NS, '--set', 'webhook.replicas=3']);
  assert.equal(up.status, 0, up.stderr);
  assert.equal(await bundleText(), written);
  const sts = await kubectl(kubeconfig, ['-n', NS, 'get', 'statefulset', 'kubetrail-webhook', '-o', 'jsonpath={.spec.replicas}']);
  assert.equal(sts.stdout, '3');
  const un = await helmRun(['uninstall', 'kubetrail', '-n', NS]);
  assert.equal(un.status, 0, un.stderr);
  installed = false;
  const left = await kubectl(kubeconfig, ['get', 'validatingwebhookconfiguration,mutatingwebhookconfiguration', '-o', 'name']);
  assert.doesNotMatch(left.stdout, /kubetrail/);
});
