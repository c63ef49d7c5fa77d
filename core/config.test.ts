import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { loadConfig } from './config.ts';
import { ConfigError } from './errors.ts';

const tmpDirs: string[] = [];
after(() => {
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
});

function tmpFile(name: string, text: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'kt-config-'));
  tmpDirs.push(dir);
  const f = path.join(dir, name);
  writeFileSync(f, text);
  return f;
}

function issuesOf(fn: () => unknown): { path: string; message: string }[] {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    return [...err.issues];
  }
  assert.fail('expected a ConfigError');
}

test('an empty configuration gets every default and is frozen', () => {
  const cfg = loadConfig({});
  assert.equal(cfg.cluster, 'dev');
  assert.equal(cfg.webhook.listen, '0.0.0.0:8443');
  assert.equal(cfg.proxy.health, '0.0.0.0:8081');
  assert.equal(cfg.kafka, undefined);
  assert.equal(cfg.spool.overflow, 'fail-closed');
  assert.ok(path.isAbsolute(cfg.dataDir));
  assert.ok(Object.isFrozen(cfg) && Object.isFrozen(cfg.webhook));
  assert.throws(() => {
    (cfg as { cluster: string }).cluster = 'x';
  }, TypeError);
});

test('a YAML file is read and its relative paths resolve against the file', () => {
  const f = tmpFile('kubetrail.yaml', 'cluster: prod-eu\ndataDir: data\nkafka:\n  brokers: [a:9092, b:9092]\nwebhook:\n  tls: {certFile: tls.crt, keyFile: tls.key}\n');
  const cfg = loadConfig({ argv: ['--config', f] });
  assert.equal(cfg.cluster, 'prod-eu');
  assert.deepEqual(cfg.kafka?.brokers, ['a:9092', 'b:9092']);
  assert.equal(cfg.kafka?.topics.events, 'kubetrail.events');
  assert.equal(cfg.dataDir, path.join(path.dirname(f), 'data'));
  assert.equal(cfg.webhook.tls?.certFile, path.join(path.dirname(f), 'tls.crt'));
});

test('KUBETRAIL_* variables override the file, field by field', () => {
  const f = tmpFile('k.yaml', 'cluster: from-file\nwebhook: {listen: "127.0.0.1:1"}\n');
  const cfg = loadConfig({
    file: f,
    env: {
      KUBETRAIL_CLUSTER: 'from-env',
      KUBETRAIL_KAFKA_BROKERS: '10.0.0.1:9092, 10.0.0.2:9092',
      KUBETRAIL_WEBHOOK_MAX_BODY_BYTES: '1024',
      KUBETRAIL_WEBHOOK_FAIL_CLOSED: 'false',
      KUBETRAIL_PROXY_UPSTREAM_IN_CLUSTER: 'true',
      HOME: '/ignored',
    },
  });
  assert.equal(cfg.cluster, 'from-env');
  assert.deepEqual(cfg.kafka?.brokers, ['10.0.0.1:9092', '10.0.0.2:9092']);
  assert.equal(cfg.webhook.maxBodyBytes, 1024);
  assert.equal(cfg.webhook.failClosed, false);
  assert.equal(cfg.webhook.listen, '127.0.0.1:1');
  assert.equal(cfg.proxy.upstream.inCluster, true);
});

test('every error is reported at once, each with its field path', () => {
  const issues = issuesOf(() =>
    loadConfig({
      document: {
        webhook: { listen: 'not-an-address', maxBodyBytes: -1 },
        kafka: { brokers: [], format: 'xml' },
        spool: { overflow: 'maybe' },
        bogus: 1,
      },
      env: { KUBETRAIL_NO_SUCH_FIELD: 'x' },
    }),
  );
  const paths = issues.map((i) => i.path).sort();
  for (const p of ['KUBETRAIL_NO_SUCH_FIELD', 'webhook.listen', 'webhook.maxBodyBytes', 'kafka.brokers', 'kafka.format', 'spool.overflow', '']) {
    assert.ok(paths.includes(p), `missing issue for ${p || '(root: unknown key)'}; got ${paths.join(', ')}`);
  }
});

test('rules spanning fields are checked', () => {
  const issues = issuesOf(() =>
    loadConfig({
      document: {
        proxy: {
          upstream: { inCluster: true, kubeconfig: '/x' },
          authn: { jwt: [{ issuer: { url: 'https://issuer.example', audiences: ['kubetrail'] }, claimMappings: { username: { claim: 'sub' } } }] },
        },
        kafka: { brokers: ['a:1'], sasl: { mechanism: 'plain', username: 'u' } },
      },
    }),
  );
  const paths = issues.map((i) => i.path);
  assert.ok(paths.includes('proxy.upstream'));
  assert.ok(paths.includes('proxy.authn.jwt.0.claimMappings.username.prefix'));
  assert.ok(paths.includes('kafka.sasl'));
});

test('a JWT issuer must be https', () => {
  const issues = issuesOf(() =>
    loadConfig({ document: { proxy: { authn: { jwt: [{ issuer: { url: 'http://issuer.example', audiences: ['a'] }, claimMappings: { username: { claim: 'sub', prefix: '' } } }] } } } }),
  );
  assert.ok(issues.some((i) => i.path === 'proxy.authn.jwt.0.issuer.url'));
});

test('an unreadable or malformed file is a clear error naming the file', () => {
  const missing = issuesOf(() => loadConfig({ file: '/nonexistent/kubetrail.yaml' }));
  assert.match(missing[0]?.message ?? '', /cannot read config file \/nonexistent\/kubetrail.yaml: ENOENT/);
  const bad = tmpFile('bad.yaml', 'cluster: [unclosed\n');
  assert.match(issuesOf(() => loadConfig({ file: bad }))[0]?.message ?? '', /not valid YAML/);
  const list = tmpFile('list.yaml', '- a\n- b\n');
  assert.match(issuesOf(() => loadConfig({ file: list }))[0]?.message ?? '', /must be a mapping/);
});

test('the config knows no test-side variable: KUBETRAIL_HARNESS_ENV, KUBETRAIL_TEST_* and the like are unknown settings like any other', () => {
  // The test side keeps its own list and leaves these out of a product process's environment (test/support/env.ts productEnv).
  const names = ['KUBETRAIL_HARNESS_ENV', 'KUBETRAIL_TEST_FILTER', 'KUBETRAIL_KEEP_HARNESS', 'KUBETRAIL_CACHE'];
  const issues = issuesOf(() => loadConfig({ env: Object.fromEntries(names.map((n) => [n, 'x'])) }));
  assert.deepEqual(issues.map((i) => i.path).sort(), [...names].sort());
  for (const i of issues) assert.equal(i.message, 'unknown setting (no config field has this name)');
});
