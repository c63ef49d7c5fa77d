/**
 * The approval settings a policy carries for its `requireApproval` rules, in
 * one place for GuardrailPolicy (admission and gateway requests) and
 * ExecPolicy (exec sessions and typed lines): who must approve, who may, how
 * many, for how long an approval is reusable and when a request expires.
 */
import { z } from 'zod';
import type { ApprovalRequirement } from '../approvals/types.ts';

/** The spec fields (spread into a policy's strictObject). */
export const approvalSettingsFields = {
  approval: z.string().min(1).optional(),
  approvers: z.strictObject({ users: z.array(z.string().min(1)).default([]), groups: z.array(z.string().min(1)).default([]) }).optional(),
  minApprovals: z.number().int().min(1).max(10).default(1),
  approvalWindowSeconds: z.number().int().min(1).max(30 * 86400).optional(),
  approvalExpirySeconds: z.number().int().min(60).max(30 * 86400).default(3600),
};

/** The parsed fields. */
export interface ApprovalSettingsSpec {
  approval?: string | undefined;
  approvers?: { users: string[]; groups: string[] } | undefined;
  minApprovals: number;
  approvalWindowSeconds?: number | undefined;
  approvalExpirySeconds: number;
}

/** What a requireApproval rule of the policy adds to its policy, rule and reason. */
export type ApprovalSettings = Omit<ApprovalRequirement, 'policy' | 'rule' | 'reason' | 'approval'>;

/** The compiled settings. */
export function approvalSettingsOf(spec: ApprovalSettingsSpec): ApprovalSettings {
  return {
    approvers: { users: spec.approvers?.users ?? [], groups: spec.approvers?.groups ?? [] },
    minApprovals: spec.minApprovals,
    expirySeconds: spec.approvalExpirySeconds,
    ...(spec.approvalWindowSeconds === undefined ? {} : { windowSeconds: spec.approvalWindowSeconds }),
  };
}

/** The refinement both policies apply: a requireApproval rule needs `approval` (named in the denial). */
export function requireApprovalName(usesApproval: boolean, approval: string | undefined, ctx: z.RefinementCtx): void {
  if (usesApproval && approval === undefined) {
    ctx.addIssue({ code: 'custom', path: ['approval'], message: 'required when an action is requireApproval (names who must approve)' });
  }
}
