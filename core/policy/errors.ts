/**
 * Errors of the policy area: loading policy documents from disk, compiling
 * their CEL expressions, and evaluating them. Every error names where it comes
 * from (file, document index, field path) so an operator can fix the document
 * without reading code.
 */
import { KubetrailError } from '../errors.ts';

/** Codes of policy errors. */
export type PolicyErrorCode =
  /** A document failed schema validation (wrong field, wrong type, unknown kind...). */
  | 'POLICY_ERR_INVALID'
  /** A CEL expression does not parse or does not type-check. */
  | 'POLICY_ERR_CEL_COMPILE'
  /** The policy directory or a file in it could not be read or parsed as YAML. */
  | 'POLICY_ERR_IO';

/** One problem found in a policy document. */
export interface PolicyIssue {
  /** File the document came from (absent for in-memory documents). */
  readonly file?: string;
  /** 0-based index of the document within a multi-document file. */
  readonly index?: number;
  /** Dotted field path inside the document, e.g. `spec.validations.0.expression`. */
  readonly path: string;
  readonly message: string;
}

/** Formats an issue as `file#index: path: message`. */
function formatPolicyIssue(i: PolicyIssue): string {
  const where = i.file === undefined ? '' : `${i.file}${i.index === undefined ? '' : `#${i.index}`}: `;
  return `${where}${i.path || '(document)'}: ${i.message}`;
}

/** A policy document or policy set could not be loaded; `issues` lists every problem. */
export class PolicyError extends KubetrailError<PolicyErrorCode> {
  readonly issues: readonly PolicyIssue[];
  constructor(code: PolicyErrorCode, issues: readonly PolicyIssue[], options: { cause?: unknown } = {}) {
    super(code, issues.map(formatPolicyIssue).join('\n'), { status: 500, ...options });
    this.issues = issues;
  }

  /** The same issues, located in `file` document `index` (paths kept). */
  locate(file: string, index: number): PolicyError {
    return new PolicyError(
      this.code,
      this.issues.map((i) => ({ ...i, file, index })),
      { cause: this.cause },
    );
  }
}
