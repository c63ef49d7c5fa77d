/** Errors of the approvals area: each has a stable code and the HTTP status it maps to. */
import { KubetrailError } from '../errors.ts';

/** Codes of approval errors. */
export type ApprovalErrorCode =
  /** The API server could not be reached or refused kubetrail's own call. */
  | 'APPROVAL_ERR_API'
  /** The named ApprovalRequest does not exist. */
  | 'APPROVAL_ERR_NOT_FOUND'
  /** A decision refused: self-approval, not an approver, already decided, not pending. */
  | 'APPROVAL_ERR_FORBIDDEN'
  /** A status or spec change that breaks the lifecycle rules. */
  | 'APPROVAL_ERR_INVALID'
  /** Waited for a decision that did not come in time. */
  | 'APPROVAL_ERR_TIMEOUT';

const STATUS: Record<ApprovalErrorCode, number> = {
  APPROVAL_ERR_API: 503,
  APPROVAL_ERR_NOT_FOUND: 404,
  APPROVAL_ERR_FORBIDDEN: 403,
  APPROVAL_ERR_INVALID: 422,
  APPROVAL_ERR_TIMEOUT: 504,
};

/** An approvals failure. Messages name the ApprovalRequest and the rule broken, never a token. */
export class ApprovalError extends KubetrailError<ApprovalErrorCode> {
  constructor(code: ApprovalErrorCode, message: string, options: { cause?: unknown } = {}) {
    super(code, message, { status: STATUS[code], ...options });
  }
}
