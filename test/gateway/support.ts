/**
 * Shared set-up of the gateway tests: a gateway in this process, forwarding
 * to the harness API server as the harness admin (system:masters, which may
 * impersonate; in a cluster this is a ServiceAccount bound to an impersonate
 * ClusterRole), with test-generated TLS, an in-memory event sink, and
 * kubeconfigs written by `kubetrail kubeconfig`'s builder.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Registry } from 'prom-client';
import { createCA, issueCert } from '../../certs/generate.ts';
import { loadConfig, type ConfigInput } from '../../core/config.ts';
import { createLogger } from '../../core/logger.ts';
import { MemorySink } from '../../core/sinks/memory-sink.ts';
import type { EventSink } from '../../core/sinks/sink.ts';
import type { EventDraft, EventType, KubetrailEvent } from '../../core/events/model.ts';
import type { GuardrailPolicy } from '../../core/policy/guardrail.ts';
import { buildKubeconfig } from '../../cli/kubeconfig.ts';
import { startGateway, type Gateway } from '../../exec-proxy/main.ts';
import { harness, kubectl } from '../support/env.ts';
import type { OidcIssuer } from '../tools/oidc-issuer.ts';

/** A gateway under test. */
export interface TestGateway {
  gw: Gateway;
  sink: MemorySink;
  caPem: string;
  dir: string;
  /** Writes a token file and a kubeconfig routing through the gateway; returns the kubeconfig path. */
  kubeconfigFor(token: string, namespace?: string): string;
  /** One HTTPS request to the gateway; never throws on HTTP status. */
  request(opts: { method?: string; path: string; headers?: Record<string, string | string[]>; body?: string }): Promise<{ status: number; headers: Record<string, unknown>; body: string }>;
  close(): Promise<void>;
}

/** A short unique suffix for names. */
export function uniq(): string {
  return randomBytes(4).toString('hex');
}

/**
 * Starts a gateway with `issuers` as OIDC issuers (audience `kubetrail`,
 * usernames `oidc:<sub>`, groups `oidc:<g>`), forwarding to the harness API
 * server unless `upstreamKubeconfig` names another.
 */
export async function startTestGateway(
  opts: { issuers?: OidcIssuer[]; sink?: EventSink; guardrails?: () => readonly GuardrailPolicy[]; proxy?: Record<string, unknown>; upstreamKubeconfig?: string; registry?: Registry; approvals?: Record<string, unknown> } = {},
): Promise<TestGateway> {
  const env = harness();
  const dir = mkdtempSync(path.join(tmpdir(), 'kubetrail-gw-'));
  const ca = createCA({ commonName: 'gateway-test-ca' });
  const serving = issueCert(ca, { commonName: 'kubetrail-gateway', ips: ['127.0.0.1'], dnsNames: ['localhost'] });
  const doc: ConfigInput = {
    cluster: 'test',
    dataDir: dir,
    policies: { dir: path.join(dir, 'no-policies') },
    proxy: {
      listen: '127.0.0.1:0',
      upstream: { kubeconfig: opts.upstreamKubeconfig ?? env.ADMIN_KUBECONFIG },
      authn: {
        jwt: (opts.issuers ?? []).map((i) => ({
          issuer: { url: i.url, audiences: ['kubetrail'], certificateAuthority: i.caPem },
          claimMappings: { username: { claim: 'sub', prefix: 'oidc:' }, groups: { claim: 'groups', prefix: 'oidc:' } },
        })),
        tokenReview: true,
      },
      ...(opts.proxy ?? {}),
    } as ConfigInput['proxy'],
    ...(opts.approvals ? { approvals: opts.approvals as ConfigInput['approvals'] } : {}),
  };
  const config = loadConfig({ document: doc });
  const sink = (opts.sink as MemorySink | undefined) ?? new MemorySink({ source: { component: 'proxy', instance: 'test', cluster: 'test' } });
  const log = createLogger({ level: (process.env['GATEWAY_TEST_LOG'] as 'info' | undefined) ?? 'silent' });
  const gw = await startGateway({ config, log, sink, tls: { cert: serving.certPem, key: serving.keyPem }, ...(opts.guardrails ? { guardrails: opts.guardrails } : {}), ...(opts.registry ? { registry: opts.registry } : {}) });
  const agent = new https.Agent({ ca: ca.certPem, keepAlive: false });
  return {
    gw,
    sink,
    caPem: ca.certPem,
    dir,
    kubeconfigFor(token, namespace) {
      const id = uniq();
      const tokenFile = path.join(dir, `token-${id}`);
      writeFileSync(tokenFile, token, { mode: 0o600 });
      const file = path.join(dir, `kubeconfig-${id}`);
      writeFileSync(file, buildKubeconfig({ server: gw.url, caPem: ca.certPem, tokenFile, ...(namespace ? { namespace } : {}) }), { mode: 0o600 });
      return file;
    },
    request(r) {
      return new Promise((resolve, reject) => {
        const req = https.request(`${gw.url}${r.path}`, { method: r.method ?? 'GET', headers: r.headers ?? {}, agent }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', reject);
        });
        req.on('error', reject);
        req.end(r.body);
      });
    },
    async close() {
      await gw.close();
      agent.destroy();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Creates a namespace (as admin) with a Role `gw-editor` (read/write configmaps,
 * secrets, pods; the harness has no controller-manager, so the aggregated
 * `edit` ClusterRole is empty) and returns a cleanup function.
 */
export async function createNamespace(name: string): Promise<() => Promise<void>> {
  const env = harness();
  const r = await kubectl(env.ADMIN_KUBECONFIG, ['create', 'namespace', name]);
  if (r.status !== 0) throw new Error(`create namespace ${name}: ${r.stderr}`);
  await adminApply(`apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: gw-editor, namespace: ${name}}
rules:
- {apiGroups: [""], resources: [configmaps, secrets, pods, pods/exec, pods/attach, pods/portforward, pods/log], verbs: ["*"]}
`);
  return async () => void (await kubectl(env.ADMIN_KUBECONFIG, ['delete', 'namespace', name, '--wait=false', '--ignore-not-found']));
}

/** Applies a manifest as admin; throws with kubectl's stderr on failure. */
export async function adminApply(yaml: string): Promise<void> {
  const env = harness();
  const r = await kubectl(env.ADMIN_KUBECONFIG, ['apply', '-f', '-'], yaml);
  if (r.status !== 0) throw new Error(`apply failed: ${r.stderr}`);
}

/** A ServiceAccount in `ns` bound to `gw-editor` there, and a fresh token for it. */
export async function serviceAccountWithToken(ns: string, name: string): Promise<string> {
  await adminApply(`apiVersion: v1
kind: ServiceAccount
metadata: {name: ${name}, namespace: ${ns}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: ${name}-edit, namespace: ${ns}}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: gw-editor}
subjects:
- {kind: ServiceAccount, name: ${name}, namespace: ${ns}}
`);
  const env = harness();
  const r = await kubectl(env.ADMIN_KUBECONFIG, ['-n', ns, 'create', 'token', name, '--duration=1h']);
  if (r.status !== 0) throw new Error(`create token: ${r.stderr}`);
  return r.stdout.trim();
}

/** Audit log entries (JSON lines) of the harness API server that satisfy `pred`. */
export async function auditEntries(pred: (e: Record<string, unknown>) => boolean): Promise<Record<string, unknown>[]> {
  const { readFile } = await import('node:fs/promises');
  const text = await readFile(harness().APISERVER_AUDIT_LOG, 'utf8');
  const out: Record<string, unknown>[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let e: Record<string, unknown>;
    try {
      e = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue;
    }
    if (pred(e)) out.push(e);
  }
  return out;
}

/** A MemorySink whose emits wait at a gate while it is set; `waiting` lists the drafts that reached the gate. */
export class GatedSink implements EventSink {
  readonly inner = new MemorySink({ source: { component: 'proxy', instance: 'test', cluster: 'test' } });
  gate: Promise<void> | undefined;
  waiting: EventDraft<EventType>[] = [];
  async emit<T extends EventType>(draft: EventDraft<T>): Promise<KubetrailEvent<T>> {
    if (this.gate) {
      this.waiting.push(draft as EventDraft<EventType>);
      await this.gate;
    }
    return this.inner.emit(draft);
  }
  flush(): Promise<void> {
    return this.inner.flush();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}
