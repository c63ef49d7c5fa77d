/**
 * Test support for the webhook: test-only PKI, a running webhook on a free
 * port over a policies directory copied from the starter pack, an HTTPS
 * client that trusts the test CA, and AdmissionReview builders.
 */
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { loadConfig, type Config, type ConfigInput } from '../../core/config.ts';
import { createLogger, type Logger } from '../../core/logger.ts';
import { createMetricsRegistry } from '../../core/health-server.ts';
import type { EventSink } from '../../core/sinks/sink.ts';
import { createCA, issueCert, type CertKeyPair } from '../../certs/generate.ts';
import { startWebhook, type Webhook } from '../../webhook/main.ts';

/** The repository's starter pack of policies. */
export const STARTER_PACK = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'policies');

/** Test PKI written to a temp dir. */
export interface TestPki {
  dir: string;
  ca: CertKeyPair;
  certFile: string;
  keyFile: string;
  caBundle: string;
}

/** Creates a CA and a serving cert for 127.0.0.1/localhost in a fresh temp dir. */
export function testPki(): TestPki {
  const dir = mkdtempSync(path.join(tmpdir(), 'kt-webhook-tls-'));
  const ca = createCA({ commonName: 'kubetrail-test-webhook-ca' });
  const serving = issueCert(ca, { commonName: 'kubetrail-webhook', ips: ['127.0.0.1'], dnsNames: ['localhost'] });
  const certFile = path.join(dir, 'tls.crt');
  const keyFile = path.join(dir, 'tls.key');
  writeFileSync(certFile, serving.certPem);
  writeFileSync(keyFile, serving.keyPem);
  return { dir, ca, certFile, keyFile, caBundle: Buffer.from(ca.certPem).toString('base64') };
}

/** A logger that discards everything (or keeps lines when `lines` is given). */
export function quietLogger(lines?: string[]): Logger {
  return createLogger({
    level: 'debug',
    destination: new Writable({
      write(chunk, _enc, cb) {
        lines?.push(String(chunk));
        cb();
      },
    }),
  });
}

/** A policies dir: a copy of the starter pack (or empty), removed by `cleanup`. */
export function policiesDir(withStarterPack = true): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'kt-webhook-policies-'));
  if (withStarterPack) cpSync(STARTER_PACK, dir, { recursive: true });
  return dir;
}

/** A running test webhook and what it was built from. */
export interface TestWebhook {
  webhook: Webhook;
  pki: TestPki;
  policies: string;
  config: Config;
  url: string;
  logLines: string[];
  close(): Promise<void>;
}

/** Starts a webhook on 127.0.0.1:0 with `sink`, the starter pack, and config overrides. */
export async function startTestWebhook(sink: EventSink, overrides: ConfigInput = {}, opts: { policies?: string } = {}): Promise<TestWebhook> {
  const pki = testPki();
  const policies = opts.policies ?? policiesDir();
  const config = loadConfig({ document: { ...overrides, policies: { dir: policies, reloadDebounceMs: 50 }, webhook: { ...(overrides.webhook ?? {}), tls: { certFile: pki.certFile, keyFile: pki.keyFile } } } });
  const logLines: string[] = [];
  const webhook = await startWebhook({ config, log: quietLogger(logLines), sink, registry: createMetricsRegistry(), listen: '127.0.0.1:0' });
  return {
    webhook,
    pki,
    policies,
    config,
    url: `https://127.0.0.1:${webhook.port}`,
    logLines,
    close: async () => {
      await webhook.close();
      rmSync(pki.dir, { recursive: true, force: true });
      if (!opts.policies) rmSync(policies, { recursive: true, force: true });
    },
  };
}

/** What an HTTPS call returned. */
export interface HttpResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  json(): any;
}

/** POSTs (or `method`s) to the webhook, trusting the test CA. */
export function call(url: string, caPem: string, body: string | Buffer, opts: { method?: string; contentType?: string | null; agent?: https.Agent } = {}): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    if (opts.contentType !== null) headers['content-type'] = opts.contentType ?? 'application/json';
    const req = https.request(url, { method: opts.method ?? 'POST', ca: caPem, headers, agent: opts.agent ?? false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text, json: () => JSON.parse(text) });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** A v1 AdmissionReview for `request` fields over sensible defaults. */
export function review(request: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: randomUUID(),
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      requestKind: { group: '', version: 'v1', kind: 'Pod' },
      requestResource: { group: '', version: 'v1', resource: 'pods' },
      name: 'web',
      namespace: 'agents',
      operation: 'CREATE',
      userInfo: { username: 'agent-ci', uid: 'u-1', groups: ['agents', 'system:authenticated'], extra: { 'kubetrail.io/session': ['sess-123'] } },
      object: pod(),
      oldObject: null,
      dryRun: false,
      options: { kind: 'CreateOptions', apiVersion: 'meta.k8s.io/v1' },
      ...request,
    },
  };
}

/** A small Pod; `extra` is merged into the container. */
export function pod(extra: Record<string, unknown> = {}, name = 'web'): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: 'agents', labels: { app: 'web' } },
    spec: { containers: [{ name: 'app', image: 'nginx:1.27', env: [{ name: 'DB_PASSWORD', value: 'hunter2' }, { name: 'MODE', value: 'prod' }], ...extra }] },
  };
}
