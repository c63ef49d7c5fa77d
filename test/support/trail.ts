/**
 * A synthetic trail for index tests and `bench:index`: a deterministic mix of
 * what a cluster records (reads and writes through the gateway, admission
 * updates with old and new objects, exec sessions with typed lines, blocked
 * lines, requireApproval decisions), as event drafts, or as whole events with
 * ids, times and (unverifiable) chain fields for writing a local log directly.
 */
import { mkdirSync, openSync, closeSync, writeSync } from 'node:fs';
import path from 'node:path';
import { deflateRawSync } from 'node:zlib';
import type { EventDraft, KubetrailEvent } from '../../core/events/model.ts';
import { uuidv7 } from '../../core/events/ids.ts';
import { canonicalJson } from '../../core/chain/canonical.ts';

const RESOURCES = ['configmaps', 'pods', 'deployments', 'secrets', 'services', 'jobs'] as const;
const VERBS = ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'] as const;
const COMMANDS = [['sh'], ['ls', '-l', '/'], ['cat', '/etc/hostname'], ['env'], ['ps', 'aux'], ['tar', 'cf', '-', '/data']] as const;
const LINES = ['ls -la', 'cat /etc/passwd', 'curl http://example.com', 'rm -rf /tmp/x', 'kubectl get pods', 'echo done'] as const;

/** Users u0..u{users-1}, namespaces ns0..ns{namespaces-1}. */
export interface TrailShape {
  users: number;
  namespaces: number;
}

const DEFAULT_SHAPE: TrailShape = { users: 50, namespaces: 100 };

/** The i-th draft of the synthetic trail. */
export function trailDraft(i: number, shape: TrailShape = DEFAULT_SHAPE): EventDraft {
  const user = `u${i % shape.users}`;
  const ns = `ns${(i * 7) % shape.namespaces}`;
  const actor = { username: user, groups: [`team-${i % 5}`, 'system:authenticated'], authn: 'oidc' as const };
  const resource = RESOURCES[i % RESOURCES.length] as string;
  const name = `${resource.slice(0, 3)}-${i % 997}`;
  const k = i % 100;
  const session = `s-${Math.floor(i / 100)}`;
  if (k < 70) {
    const verb = VERBS[i % VERBS.length] as string;
    return {
      type: 'api.request',
      actor,
      target: { group: '', version: 'v1', resource, namespace: ns, name },
      correlation: { request: `r-${i}`, auditId: `a-${i}` },
      body: { verb, method: verb === 'get' || verb === 'list' || verb === 'watch' ? 'GET' : 'POST', path: `/api/v1/namespaces/${ns}/${resource}/${name}`, status: 200, latencyMs: 2, bytesIn: 0, bytesOut: 512 },
    };
  }
  if (k < 85) {
    const allowed = i % 9 !== 0;
    return {
      type: 'admission.review',
      actor,
      target: { group: 'apps', version: 'v1', resource: 'deployments', namespace: ns, name },
      correlation: { admissionUid: `adm-${i}` },
      body: {
        operation: 'UPDATE',
        dryRun: false,
        webhook: 'validate',
        object: { metadata: { name, namespace: ns }, spec: { replicas: (i % 5) + 1 } },
        oldObject: { metadata: { name, namespace: ns }, spec: { replicas: (i % 5) + 2 } },
        decision: allowed ? { allowed: true } : { allowed: false, action: 'deny', policy: 'no-scale-down', rule: 'min-replicas', message: 'replicas below 2' },
      },
    };
  }
  if (k < 95) {
    const command = [...(COMMANDS[i % COMMANDS.length] as readonly string[])];
    if (k < 88) return { type: 'session.start', actor, target: { resource: 'pods', subresource: 'exec', namespace: ns, name: `pod-${i % 97}` }, correlation: { session }, body: { kind: 'exec', pod: `pod-${i % 97}`, namespace: ns, command, tty: true, stdin: true } };
    if (k < 92) {
      const text = `${LINES[i % LINES.length] as string}\r`;
      return { type: 'session.data', actor, target: { resource: 'pods', subresource: 'exec', namespace: ns, name: `pod-${i % 97}` }, correlation: { session }, body: { chunk: k - 88, stream: 'stdin', offset: 0, t: (k - 88) * 100, data: deflateRawSync(Buffer.from(text)).toString('base64'), encoding: 'deflate-raw', size: Buffer.byteLength(text) } };
    }
    return { type: 'session.end', actor, target: { resource: 'pods', subresource: 'exec', namespace: ns, name: `pod-${i % 97}` }, correlation: { session }, body: { kind: 'exec', pod: `pod-${i % 97}`, namespace: ns, command, exitCode: 0, outcome: 'completed', durationMs: 1200, chunks: 4 } };
  }
  const approval = k >= 98;
  return {
    type: 'guardrail.decision',
    actor,
    target: { resource: 'pods', subresource: 'exec', namespace: ns, name: `pod-${i % 97}` },
    correlation: { session },
    body: { policy: approval ? 'prod-exec' : 'no-curl', rule: approval ? 'approve-shell' : 'curl', action: approval ? 'requireApproval' : 'deny', message: approval ? 'needs an approver' : 'curl is blocked', input: { line: LINES[i % LINES.length] as string } },
  };
}

/** The i-th event of the synthetic trail, whole (time = start + i ms). */
export function trailEvent(i: number, start: number, shape: TrailShape = DEFAULT_SHAPE): KubetrailEvent {
  const d = trailDraft(i, shape);
  const t = start + i;
  return { apiVersion: 'kubetrail.io/v1', ...d, id: uuidv7(t), time: new Date(t).toISOString(), source: { component: 'proxy', instance: 'bench', cluster: 'bench' }, chain: { seq: i + 1, prev: '', hash: '' } } as KubetrailEvent;
}

/** Writes `n` synthetic events as a local log under `dataDir/log/proxy` (segments of `segmentEvents` lines). Returns the events' canonical lines' total bytes. */
export function writeTrail(dataDir: string, n: number, start: number, shape: TrailShape = DEFAULT_SHAPE, segmentEvents = 200_000): number {
  const dir = path.join(dataDir, 'log', 'proxy');
  mkdirSync(dir, { recursive: true });
  let bytes = 0;
  let fd = -1;
  let buf: string[] = [];
  const flush = (): void => {
    if (buf.length === 0) return;
    const s = buf.join('');
    bytes += Buffer.byteLength(s);
    writeSync(fd, s);
    buf = [];
  };
  for (let i = 0; i < n; i++) {
    if (i % segmentEvents === 0) {
      flush();
      if (fd >= 0) closeSync(fd);
      fd = openSync(path.join(dir, `${String(i / segmentEvents + 1).padStart(12, '0')}.ndjson`), 'w');
    }
    buf.push(canonicalJson(trailEvent(i, start, shape)) + '\n');
    if (buf.length >= 5000) flush();
  }
  flush();
  if (fd >= 0) closeSync(fd);
  return bytes;
}
