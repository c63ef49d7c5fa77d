/**
 * `kubetrail approvals`: what approvers (and waiting agents) run, with their
 * own kubectl-style credentials (--kubeconfig, --context, $KUBECONFIG).
 *
 *   kubetrail approvals list [-n NS | -A] [--phase P] [-o table|json]
 *   kubetrail approvals show NAME [-n NS] [-o yaml|json]
 *   kubetrail approvals approve NAME [-n NS] [--comment TEXT]
 *   kubetrail approvals deny NAME [-n NS] [--comment TEXT]
 *   kubetrail approvals wait NAME [-n NS] [--timeout 10m]
 *
 * A decision is a status update naming the caller as the API server
 * authenticates them (SelfSubjectReview); kubetrail's webhook refuses it
 * unless it names that user, who may `approve` and is not the requester.
 * `wait` exits 0 when approved (or already used), 1 when denied or expired,
 * 3 when the timeout passes first.
 */
import { stringify } from 'yaml';
import { parseCommandArgs } from './args.ts';
import { ApprovalStore } from '../core/approvals/store.ts';
import { effectivePhase, withDecision } from '../core/approvals/lifecycle.ts';
import type { ApprovalRequest } from '../core/approvals/types.ts';
import { ApprovalError } from '../core/approvals/errors.ts';

const USAGE = `usage: kubetrail approvals list [-n NS | -A] [--phase P] [-o table|json]
       kubetrail approvals show NAME [-n NS] [-o yaml|json]
       kubetrail approvals approve NAME [-n NS] [--comment TEXT]
       kubetrail approvals deny NAME [-n NS] [--comment TEXT]
       kubetrail approvals wait NAME [-n NS] [--timeout 10m]
flags: --kubeconfig F, --context C (default: $KUBECONFIG or ~/.kube/config, as kubectl)
`;

const OPTIONS = {
  help: { type: 'boolean', short: 'h' },
  kubeconfig: { type: 'string' },
  context: { type: 'string' },
  namespace: { type: 'string', short: 'n' },
  'all-namespaces': { type: 'boolean', short: 'A' },
  phase: { type: 'string' },
  output: { type: 'string', short: 'o' },
  comment: { type: 'string' },
  timeout: { type: 'string' },
} as const;

/** Parses 90s / 10m / 1h / a number of seconds into ms; undefined when invalid. */
function parseDuration(s: string): number | undefined {
  const m = /^(\d+)(ms|s|m|h)?$/.exec(s.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  const unit = m[2] ?? 's';
  return n * (unit === 'ms' ? 1 : unit === 's' ? 1000 : unit === 'm' ? 60_000 : 3_600_000);
}

function target(ar: ApprovalRequest): string {
  const r = ar.spec.request;
  return `${r.resource}${r.subresource ? `/${r.subresource}` : ''}${r.name ? ` ${r.namespace ? `${r.namespace}/` : ''}${r.name}` : ''}`;
}

function table(items: ApprovalRequest[], now: number): string {
  const rows = [['NAMESPACE', 'NAME', 'PHASE', 'REQUESTER', 'VERB', 'TARGET', 'POLICY', 'APPROVALS', 'EXPIRES']];
  for (const a of items) {
    const approvals = (a.status?.decisions ?? []).filter((d) => d.decision === 'approve').length;
    rows.push([a.metadata.namespace, a.metadata.name, effectivePhase(a, now), a.spec.requester.username, a.spec.request.verb, target(a), a.spec.policy, `${approvals}/${a.spec.minApprovals}`, a.spec.expiresAt]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd()).join('\n') + '\n';
}

/** The `approvals` subcommand. */
export async function run(argv: string[]): Promise<number> {
  const parsed = parseCommandArgs('approvals', USAGE, argv, OPTIONS, true);
  if (typeof parsed === 'number') return parsed;
  const { values: v, positionals } = parsed;
  const [verb, name, ...extra] = positionals;
  const fail = (msg: string): number => {
    process.stderr.write(`kubetrail approvals: ${msg}\n${USAGE}`);
    return 2;
  };
  if (verb === undefined) return fail('missing subcommand');
  if (extra.length > 0) return fail(`unexpected argument '${extra[0]}'`);
  const store = new ApprovalStore({ ...(v.kubeconfig ? { kubeconfig: v.kubeconfig } : {}), ...(v.context ? { context: v.context } : {}) });
  const now = Date.now();
  try {
    switch (verb) {
      case 'list': {
        if (name !== undefined) return fail(`unexpected argument '${name}'`);
        let items = await store.list(v['all-namespaces'] ? undefined : v.namespace);
        if (v.phase) items = items.filter((a) => effectivePhase(a, now) === v.phase);
        items.sort((a, b) => (a.metadata.creationTimestamp ?? '').localeCompare(b.metadata.creationTimestamp ?? ''));
        if (v.output === 'json') for (const a of items) process.stdout.write(`${JSON.stringify(a)}\n`);
        else process.stdout.write(table(items, now));
        return 0;
      }
      case 'show': {
        if (name === undefined) return fail('show needs a NAME');
        const ar = await store.find(name, v.namespace);
        process.stdout.write(v.output === 'json' ? `${JSON.stringify(ar, null, 2)}\n` : stringify(ar));
        return 0;
      }
      case 'approve':
      case 'deny': {
        if (name === undefined) return fail(`${verb} needs a NAME`);
        const me = await store.whoAmI();
        for (let attempt = 0; attempt < 5; attempt++) {
          const ar = await store.find(name, v.namespace);
          const status = withDecision(ar, me, verb, v.comment, Date.now());
          const done = await store.replaceStatus(ar, status);
          if (done === undefined) continue; // written meanwhile: read again
          process.stdout.write(`${verb === 'approve' ? 'approved' : 'denied'} ${done.metadata.namespace}/${done.metadata.name} as ${me.username}: now ${done.status?.phase ?? 'Pending'}\n`);
          return 0;
        }
        process.stderr.write(`kubetrail approvals: ${name} kept changing while deciding; try again\n`);
        return 1;
      }
      case 'wait': {
        if (name === undefined) return fail('wait needs a NAME');
        const timeoutMs = parseDuration(v.timeout ?? '10m');
        if (timeoutMs === undefined) return fail(`--timeout: not a duration: ${v.timeout ?? ''}`);
        const found = await store.find(name, v.namespace);
        const ar = await store.waitFor(found.metadata.namespace, name, (a) => effectivePhase(a, Date.now()) !== 'Pending', { timeoutMs });
        const phase = effectivePhase(ar, Date.now());
        process.stdout.write(`${ar.metadata.namespace}/${ar.metadata.name}: ${phase}\n`);
        if (phase === 'Approved' || phase === 'Used') return 0;
        return phase === 'Pending' ? 3 : 1;
      }
      default:
        return fail(`unknown subcommand "${verb}"`);
    }
  } catch (err) {
    if (err instanceof ApprovalError) {
      process.stderr.write(`kubetrail approvals ${verb}: ${err.message} (${err.code})\n`);
      return 1;
    }
    throw err;
  }
}
