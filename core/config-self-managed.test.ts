/** The selfManaged section of the configuration: defaults and the rules spanning its fields. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfig } from './config.ts';
import { ConfigError } from './errors.ts';

const issues = (document: unknown): string[] => {
  try {
    loadConfig({ env: {}, document });
    return [];
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.issues.map((i) => `${i.path}: ${i.message}`);
  }
};

test('an empty selfManaged.tls gets the shipped names and timings', () => {
  const cfg = loadConfig({ env: {}, document: { selfManaged: { inCluster: true, tls: {}, signingKey: {} } } });
  assert.equal(cfg.selfManaged?.namespace, 'kubetrail');
  assert.deepEqual(cfg.selfManaged?.tls?.dnsNames, ['kubetrail-webhook.kubetrail.svc', 'kubetrail-proxy.kubetrail.svc']);
  assert.equal(cfg.selfManaged?.tls?.secret, 'kubetrail-tls');
  assert.equal(cfg.selfManaged?.tls?.rolloverGraceSeconds, 120);
  assert.equal(cfg.selfManaged?.signingKey?.configMap, 'kubetrail-signing-public-key');
});

test('timings that could fail a review during a renewal are refused, each with its field', () => {
  assert.deepEqual(issues({ selfManaged: { tls: { rolloverGraceSeconds: 10, pollIntervalSeconds: 10, renewDeadlineSeconds: 15, caRenewBeforeDays: 400, dnsNames: [] } } }).sort(), [
    'selfManaged.tls.caRenewBeforeDays: must be below caValidityDays',
    'selfManaged.tls.dnsNames: at least one DNS name or IP address',
    'selfManaged.tls.renewDeadlineSeconds: must be below leaseDurationSeconds',
    'selfManaged.tls.rolloverGraceSeconds: must exceed pollIntervalSeconds, or a replica could serve a certificate from a CA the API server does not trust yet',
  ]);
  assert.deepEqual(issues({ selfManaged: { inCluster: true, kubeconfig: '/k' } }), ['selfManaged: set either inCluster or kubeconfig, not both']);
});
