/**
 * The gateway's side of human approval (issue 17). The webhook decides and
 * keeps the record: a write that needs approval comes back from the API
 * server as a 403 Status whose `details` name the ApprovalRequest
 * (webhook/approvals.ts). The gateway then holds the client up to
 * `approval.holdSeconds`, watching that ApprovalRequest in the API server
 * (so an approval made through any replica, or straight to the API server,
 * releases it), and resends the same bytes the moment it is approved: the
 * webhook matches them to the approval and admits them. One ApprovalRequest
 * per request, whichever path it takes. Still pending: a 403 naming the
 * ApprovalRequest and the commands to wait for and grant it.
 */
import type { IncomingMessage } from 'node:http';
import { effectivePhase } from '../core/approvals/lifecycle.ts';
import type { ApprovalStore } from '../core/approvals/store.ts';
import type { ApprovalGate } from '../core/approvals/gate.ts';
import { APPROVAL_GROUP, APPROVAL_PLURAL, type ApprovalPhase } from '../core/approvals/types.ts';

/** What the gateway needs to hold requests (absent: approval denials pass through as they are). */
export interface ApprovalHold {
  store: ApprovalStore;
  /** Longest hold (ms); 0 answers at once. */
  holdMs: number;
  /** Creates and uses ApprovalRequests for the gateway's own ExecPolicy requireApproval rules. */
  gate?: ApprovalGate;
}

/** The ApprovalRequest a response names. */
export interface ApprovalRef {
  name: string;
  namespace: string;
}

/** True when a response may be an approval denial worth reading (403 JSON). */
export function mayBeApprovalDenial(status: number, headers: IncomingMessage['headers']): boolean {
  return status === 403 && (headers['content-type'] ?? '').startsWith('application/json');
}

/** The ApprovalRequest named in a webhook's denial Status, or undefined when it is another 403. */
export function approvalOfDenial(body: Buffer, defaultNamespace: string | undefined): ApprovalRef | undefined {
  let st: { kind?: unknown; details?: { name?: unknown; group?: unknown; kind?: unknown; causes?: { reason?: unknown; field?: unknown }[] } };
  try {
    st = JSON.parse(body.toString('utf8')) as typeof st;
  } catch {
    return undefined;
  }
  const d = st.details;
  if (st.kind !== 'Status' || d?.group !== APPROVAL_GROUP || d.kind !== APPROVAL_PLURAL || typeof d.name !== 'string' || !/^ar-[0-9a-f]{10}-[0-9a-z]+$/.test(d.name)) return undefined;
  const field = d.causes?.find((c) => c.reason === 'ApprovalRequired')?.field;
  const ns = typeof field === 'string' && field.endsWith(`/${d.name}`) ? field.slice(0, -(d.name.length + 1)) : defaultNamespace;
  if (ns === undefined || ns === '') return undefined;
  return { name: d.name, namespace: ns };
}

/** Waits (bounded) until the ApprovalRequest leaves Pending; resolves its phase then (Pending when the hold ran out). */
export async function holdForApproval(hold: ApprovalHold, ref: ApprovalRef, signal: AbortSignal): Promise<ApprovalPhase> {
  if (hold.holdMs <= 0) return 'Pending';
  const ar = await hold.store.waitFor(ref.namespace, ref.name, (a) => effectivePhase(a, Date.now()) !== 'Pending', { timeoutMs: hold.holdMs, signal });
  return effectivePhase(ar, Date.now());
}

/** What the caller is told when the hold ran out (or the ApprovalRequest was denied or expired). */
export function heldMessage(ref: ApprovalRef, phase: ApprovalPhase, heldMs: number, what = 'request'): string {
  const wait = `kubetrail approvals wait ${ref.name} -n ${ref.namespace}`;
  const approve = `kubetrail approvals approve ${ref.name} -n ${ref.namespace}`;
  return phase === 'Pending'
    ? `kubetrail: this ${what} needs approval; ApprovalRequest ${ref.namespace}/${ref.name} is still Pending after ${Math.round(heldMs / 1000)} s. Wait for it: ${wait}; an approver runs: ${approve}; then retry the same ${what}.`
    : `kubetrail: ApprovalRequest ${ref.namespace}/${ref.name} is ${phase}; the ${what} was not forwarded.`;
}

/** The Status the client gets when the hold ran out (or the ApprovalRequest was denied or expired). */
export function heldStatusBody(ref: ApprovalRef, phase: ApprovalPhase, heldMs: number): Buffer {
  const wait = `kubetrail approvals wait ${ref.name} -n ${ref.namespace}`;
  const message = heldMessage(ref, phase, heldMs);
  return Buffer.from(
    JSON.stringify({
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message,
      reason: 'Forbidden',
      details: { name: ref.name, group: APPROVAL_GROUP, kind: APPROVAL_PLURAL, causes: [{ reason: 'ApprovalRequired', message: wait, field: `${ref.namespace}/${ref.name}` }] },
      code: 403,
    }),
  );
}
