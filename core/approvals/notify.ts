/**
 * Outgoing notification when an approval is requested: one POST to a
 * configured URL, as a generic JSON body or in the shape of a Slack incoming
 * webhook (`{text, blocks}`). Best effort and bounded: the ApprovalRequest is
 * the state and the approval.requested event the record; a failed POST is
 * logged (never the body: it names the requester and the object) and counted.
 */
import type { Logger } from '../logger.ts';
import type { ApprovalRequest } from './types.ts';

/** Where and how to notify. */
export interface NotifierOptions {
  url: string;
  format: 'generic' | 'slack';
  timeoutMs: number;
  log: Logger;
}

/** The generic JSON body: enough for a bot or an agent to act, nothing masked away is added back. */
export function genericNotification(ar: ApprovalRequest): Record<string, unknown> {
  const r = ar.spec.request;
  return {
    type: 'approval.requested',
    name: ar.metadata.name,
    namespace: ar.metadata.namespace,
    requester: ar.spec.requester.username,
    request: { verb: r.verb, apiGroup: r.apiGroup, resource: r.resource, ...(r.subresource ? { subresource: r.subresource } : {}), ...(r.namespace ? { namespace: r.namespace } : {}), ...(r.name ? { name: r.name } : {}), ...(r.bodySha256 ? { bodySha256: r.bodySha256 } : {}) },
    policy: ar.spec.policy,
    rule: ar.spec.rule,
    reason: ar.spec.reason,
    expiresAt: ar.spec.expiresAt,
    minApprovals: ar.spec.minApprovals,
    approvers: ar.spec.approvers,
    approve: `kubetrail approvals approve ${ar.metadata.name} -n ${ar.metadata.namespace}`,
    deny: `kubetrail approvals deny ${ar.metadata.name} -n ${ar.metadata.namespace}`,
  };
}

/** The Slack incoming-webhook body (https://api.slack.com/messaging/webhooks): `text` plus one section block. */
export function slackNotification(ar: ApprovalRequest): Record<string, unknown> {
  const r = ar.spec.request;
  const target = `${r.resource}${r.subresource ? `/${r.subresource}` : ''} ${r.namespace ? `${r.namespace}/` : ''}${r.name ?? ''}`.trim();
  const text = `kubetrail: ${ar.spec.requester.username} asks to ${r.verb} ${target} (policy ${ar.spec.policy}: ${ar.spec.reason}). Approval ${ar.metadata.namespace}/${ar.metadata.name}, expires ${ar.spec.expiresAt}.`;
  return {
    text,
    blocks: [
      { type: 'section', text: { type: 'mrkdwn', text } },
      { type: 'section', text: { type: 'mrkdwn', text: `Approve: \`kubetrail approvals approve ${ar.metadata.name} -n ${ar.metadata.namespace}\`\nDeny: \`kubetrail approvals deny ${ar.metadata.name} -n ${ar.metadata.namespace}\`` } },
    ],
  };
}

/** Sends approval notifications. */
export class Notifier {
  readonly #o: NotifierOptions;
  readonly #pending = new Set<Promise<void>>();

  constructor(o: NotifierOptions) {
    this.#o = o;
  }

  /** Posts the notification of a new ApprovalRequest (does not wait for it; see {@link drain}). */
  requested(ar: ApprovalRequest): void {
    const body = this.#o.format === 'slack' ? slackNotification(ar) : genericNotification(ar);
    const p = fetch(this.#o.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal: AbortSignal.timeout(this.#o.timeoutMs) })
      .then(async (res) => {
        await res.arrayBuffer().catch(() => undefined);
        if (!res.ok) this.#o.log.warn({ status: res.status, approval: ar.metadata.name }, 'approval notification refused');
      })
      .catch((err: unknown) => this.#o.log.warn({ err: { name: (err as Error).name, code: (err as { code?: unknown }).code }, approval: ar.metadata.name }, 'approval notification failed'))
      .finally(() => this.#pending.delete(p));
    this.#pending.add(p);
  }

  /** Waits for notifications in flight (shutdown, tests). */
  async drain(): Promise<void> {
    await Promise.all([...this.#pending]);
  }
}
