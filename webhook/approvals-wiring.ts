/** Builds the webhook's ApprovalGate from config `approvals` (absent: none, and requireApproval only denies). */
import type { Config } from '../core/config.ts';
import type { Logger } from '../core/logger.ts';
import type { EventSink } from '../core/sinks/sink.ts';
import { approvalsFromConfig } from '../core/approvals/from-config.ts';
import type { ApprovalGate } from './approvals.ts';

/** `{ approvals }` for the handler's options, or `{}` when approvals are not configured. */
export function approvalGateFromConfig(cfg: Config, sink: EventSink, log: Logger): { approvals?: ApprovalGate } {
  const prefix = cfg.webhook.name;
  const built = approvalsFromConfig(cfg, sink, log, [`${prefix}/last-modified-by`, `${prefix}/session`, `${prefix}/event`]);
  return built === undefined ? {} : { approvals: built.gate };
}
