/**
 * Test support for approvals against the real API server: the CRD from
 * manifests/base, approvers as real ServiceAccounts (TokenRequest tokens in
 * their own kubeconfigs), their RBAC, the approvals webhook registration, and
 * the `kubetrail approvals` CLI.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { harness, kubectl, run, type CommandResult } from '../support/env.ts';
import type { EventSink } from '../../core/sinks/sink.ts';
import type { EventDraft, EventType, KubetrailEvent } from '../../core/events/model.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = path.join(ROOT, 'bin', 'kubetrail.mjs');
const NODE = path.join(ROOT, 'node_modules', '.bin', 'node');

/** Applies the ApprovalRequest CRD and waits until it is served. */
export async function installCrd(): Promise<void> {
  const env = harness();
  const r = await kubectl(env.ADMIN_KUBECONFIG, ['apply', '-f', path.join(ROOT, 'manifests', 'base', 'approvalrequest-crd.yaml')]);
  if (r.status !== 0) throw new Error(`CRD: ${r.stderr}`);
  const w = await kubectl(env.ADMIN_KUBECONFIG, ['wait', '--for', 'condition=established', '--timeout=60s', 'crd/approvalrequests.kubetrail.io']);
  if (w.status !== 0) throw new Error(`CRD not established: ${w.stderr}`);
}

/** A ServiceAccount user with a kubeconfig of its own. */
export interface TestUser {
  name: string;
  username: string;
  kubeconfig: string;
}

/** Creates ServiceAccounts in `namespace` and a kubeconfig for each, with a TokenRequest token. */
export async function serviceAccountUsers(namespace: string, names: string[]): Promise<TestUser[]> {
  const env = harness();
  const dir = mkdtempSync(path.join(tmpdir(), 'kt-approvers-'));
  const out: TestUser[] = [];
  for (const name of names) {
    const c = await kubectl(env.ADMIN_KUBECONFIG, ['-n', namespace, 'create', 'serviceaccount', name]);
    if (c.status !== 0 && !/AlreadyExists/.test(c.stderr)) throw new Error(`serviceaccount ${name}: ${c.stderr}`);
    const t = await kubectl(env.ADMIN_KUBECONFIG, ['-n', namespace, 'create', 'token', name, '--duration=1h']);
    if (t.status !== 0) throw new Error(`token for ${name}: ${t.stderr}`);
    const kubeconfig = path.join(dir, `${name}.kubeconfig`);
    writeFileSync(
      kubeconfig,
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'h', cluster: { server: env.APISERVER_URL, 'certificate-authority-data': Buffer.from(readFileSync(env.APISERVER_CA)).toString('base64') } }],
        users: [{ name, user: { token: t.stdout.trim() } }],
        contexts: [{ name, context: { cluster: 'h', user: name } }],
        'current-context': name,
      }),
      { mode: 0o600 },
    );
    out.push({ name, username: `system:serviceaccount:${namespace}:${name}`, kubeconfig });
  }
  return out;
}

/** Applies `docs` (a List) as admin; throws on failure. */
export async function applyAsAdmin(docs: unknown[]): Promise<void> {
  const r = await kubectl(harness().ADMIN_KUBECONFIG, ['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: docs }));
  if (r.status !== 0) throw new Error(`apply: ${r.stderr}`);
}

/** RBAC for approvers: read ApprovalRequests, write their status, and the `approve` verb (omitted with approve=false). */
export function approverRbac(name: string, subjects: { kind: string; name: string; namespace?: string; apiGroup?: string }[], approve = true): unknown[] {
  const verbs = ['get', 'list', 'watch'];
  return [
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name },
      rules: [
        { apiGroups: ['kubetrail.io'], resources: ['approvalrequests'], verbs: approve ? [...verbs, 'approve'] : verbs },
        { apiGroups: ['kubetrail.io'], resources: ['approvalrequests/status'], verbs: ['get', 'update', 'patch'] },
        { apiGroups: ['authentication.k8s.io'], resources: ['selfsubjectreviews'], verbs: ['create'] },
      ],
    },
    { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name }, subjects },
  ];
}

/** Applies approver RBAC ({@link approverRbac}) named `name`; resolves its removal. */
export async function grantApprovers(name: string, subjects: { kind: string; name: string; namespace?: string; apiGroup?: string }[], approve = true): Promise<() => Promise<unknown>> {
  await applyAsAdmin(approverRbac(name, subjects, approve));
  return () => kubectl(harness().ADMIN_KUBECONFIG, ['delete', `clusterrole/${name}`, `clusterrolebinding/${name}`, '--ignore-not-found']);
}

/** A policies directory holding one `requireApproval` GuardrailPolicy (approval by platform-oncall) with one validation. */
export function approvalPolicyDir(name: string, resourceRules: { apiGroups: string[]; resources: string[]; operations: string[] }[], expression: string, message: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'kubetrail-approval-policies-'));
  writeFileSync(
    path.join(dir, 'p.yaml'),
    JSON.stringify({
      apiVersion: 'kubetrail.io/v1alpha1',
      kind: 'GuardrailPolicy',
      metadata: { name },
      spec: { action: 'requireApproval', approval: 'platform-oncall', match: { resourceRules }, validations: [{ expression, message }] },
    }),
  );
  return dir;
}

/**
 * Registers a test webhook for ApprovalRequests and for the test's own writes
 * (label `kubetrail-test=<id>`, and CONNECT of `connectPods`), waiting until
 * its probe reaches `sink`; resolves the removals, to run in reverse order.
 */
export async function registerForApprovals(
  id: string,
  w: { url: string; pki: { caBundle: string } },
  sink: { ofType(type: 'admission.review'): { target?: { name?: string } }[] },
  connectPods?: string[],
): Promise<(() => Promise<unknown>)[]> {
  const { registerWebhooks } = await import('../webhook/support.ts');
  const approvals = await registerApprovalWebhook(id, w.url, w.pki.caBundle);
  const writes = await registerWebhooks(harness().ADMIN_KUBECONFIG, { id, url: w.url, caBundle: w.pki.caBundle, ...(connectPods ? { connectPods } : {}) }, () =>
    sink.ofType('admission.review').some((e) => e.target?.name === `kt-probe-${id}`),
  );
  return [approvals, writes];
}

/** Registers the approvals webhook entry (ApprovalRequests and their status, every namespace). */
export async function registerApprovalWebhook(id: string, url: string, caBundle: string): Promise<() => Promise<void>> {
  await applyAsAdmin([
    {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingWebhookConfiguration',
      metadata: { name: `kt-approvals-${id}` },
      webhooks: [
        {
          name: 'approvals.validate.kubetrail.io',
          clientConfig: { url: `${url}/validate`, caBundle },
          rules: [{ operations: ['CREATE', 'UPDATE'], apiGroups: ['kubetrail.io'], apiVersions: ['v1alpha1'], resources: ['approvalrequests', 'approvalrequests/status'] }],
          admissionReviewVersions: ['v1'],
          sideEffects: 'NoneOnDryRun',
          failurePolicy: 'Fail',
          timeoutSeconds: 10,
        },
      ],
    },
  ]);
  return async () => void (await kubectl(harness().ADMIN_KUBECONFIG, ['delete', 'validatingwebhookconfiguration', `kt-approvals-${id}`, '--ignore-not-found']));
}

/** Runs `kubetrail approvals ...` with a kubeconfig. */
export function approvalsCli(kubeconfig: string, args: string[]): Promise<CommandResult> {
  return run(NODE, [BIN, 'approvals', '--kubeconfig', kubeconfig, ...args], undefined, { timeoutMs: 120_000 });
}

/** The ApprovalRequest name in a denial message. */
export function approvalName(text: string): string | undefined {
  return /ApprovalRequest [a-z0-9-]+\/(ar-[0-9a-f]{10}-[0-9a-z]+)/.exec(text)?.[1];
}

/**
 * A sink that writes to a real event pipeline (local log, chained and signed)
 * and keeps what it wrote for assertions, as MemorySink does.
 */
export class RecordingSink implements EventSink {
  readonly events: KubetrailEvent[] = [];
  readonly #inner: EventSink;
  constructor(inner: EventSink) {
    this.#inner = inner;
  }
  async emit<T extends EventType>(draft: EventDraft<T>): Promise<KubetrailEvent<T>> {
    const e = await this.#inner.emit(draft);
    this.events.push(e);
    return e;
  }
  ofType<T extends EventType>(type: T): KubetrailEvent<T>[] {
    return this.events.filter((e): e is KubetrailEvent<T> => e.type === type);
  }
  flush(): Promise<void> {
    return this.#inner.flush();
  }
  close(): Promise<void> {
    return this.#inner.close();
  }
}

/** Runs `kubetrail <args>` (events, verify). */
export function kubetrailCli(args: string[]): Promise<CommandResult> {
  return run(NODE, [BIN, ...args], undefined, { timeoutMs: 120_000 });
}
