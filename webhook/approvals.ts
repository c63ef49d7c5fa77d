import { ApprovalError } from '../core/approvals/errors.ts';
import { ApprovalGate } from '../core/approvals/gate.ts';
import { APPROVAL_GROUP, APPROVAL_PLURAL, type ApprovalRequirement } from '../core/approvals/types.ts';
import type { Correlation } from '../core/events/model.ts';
import type { Logger } from '../core/logger.ts';
import type { AdmissionRequest } from './review.ts';

export { ApprovalGate } from '../core/approvals/gate.ts';

/**
 * The hook of the validating webhook (handler.ts): reviews writes to
 * ApprovalRequests, and turns a `requireApproval` outcome into admit (an
 * approval matched and is now used) or deny with the ApprovalRequest named in
 * the Status `details` (the gateway reads them to hold the request). Changes
 * `outcome` and `res` in place, so the admission.review records what was
 * answered. Fails closed: when the API server cannot be asked, the request is
 * denied (503).
 */
export async function applyApprovals(
  gate: ApprovalGate,
  req: AdmissionRequest,
  outcome: { allowed: boolean; action: string; message?: string; approval?: ApprovalRequirement },
  res: { allowed: boolean; status?: AdmissionResponseStatus },
  masked: () => unknown,
  correlation: Correlation,
  log: Logger,
): Promise<void> {
  try {
    if (ApprovalGate.isApprovalWrite(req) && res.allowed) {
      const refusal = await gate.review(req, correlation);
      if (refusal !== undefined) {
        res.allowed = false;
        outcome.allowed = false;
        outcome.action = 'deny';
        outcome.message = refusal;
        res.status = { code: 403, reason: 'Forbidden', message: refusal };
      }
      return;
    }
    if (outcome.action !== 'requireApproval' || outcome.approval === undefined) return;
    const a = await gate.check(req, outcome.approval, masked(), correlation);
    if (a.allowed) {
      res.allowed = true;
      delete res.status;
      outcome.allowed = true;
      outcome.message = `approved: kubetrail ApprovalRequest ${a.namespace}/${a.name}`;
      return;
    }
    res.allowed = false;
    outcome.message = a.message;
    res.status = {
      code: a.code,
      reason: 'Forbidden',
      message: a.message,
      ...(a.name === undefined ? {} : { details: { name: a.name, group: APPROVAL_GROUP, kind: APPROVAL_PLURAL, causes: [{ reason: 'ApprovalRequired', message: `kubetrail approvals wait ${a.name} -n ${a.namespace ?? ''}`, field: `${a.namespace ?? ''}/${a.name}` }] } }),
    };
  } catch (err) {
    log.error({ err, uid: req.uid, code: err instanceof ApprovalError ? err.code : undefined }, 'approvals could not be checked; denied');
    res.allowed = false;
    outcome.allowed = false;
    outcome.message = 'kubetrail could not check approvals (the API server could not be asked); the request is denied';
    res.status = { code: 503, reason: 'ServiceUnavailable', message: outcome.message };
  }
}

type AdmissionResponseStatus = NonNullable<import('./review.ts').AdmissionResponse['status']>;
