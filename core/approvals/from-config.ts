/** The ApprovalStore and ApprovalGate of config `approvals`, built one way for the webhook and the gateway. */
import type { Config } from '../config.ts';
import type { Logger } from '../logger.ts';
import type { EventSink } from '../sinks/sink.ts';
import { ApprovalGate } from './gate.ts';
import { Notifier } from './notify.ts';
import { ApprovalStore } from './store.ts';

/** undefined when approvals are not configured. `stampAnnotations`: the annotations a body hash leaves out (the webhook's own stamps). */
export function approvalsFromConfig(cfg: Config, sink: EventSink, log: Logger, stampAnnotations: readonly string[]): { store: ApprovalStore; gate: ApprovalGate; holdMs: number } | undefined {
  const a = cfg.approvals;
  if (a === undefined) return undefined;
  const store = new ApprovalStore({ ...(a.kubeconfig === undefined ? {} : { kubeconfig: a.kubeconfig }), ...(a.context === undefined ? {} : { context: a.context }), inCluster: a.inCluster });
  const gate = new ApprovalGate({
    store,
    sink,
    log: log.child({ component: 'approvals' }),
    namespace: a.namespace,
    serviceUsers: a.serviceUsers,
    stampAnnotations: [...stampAnnotations],
    ...(a.notify === undefined ? {} : { notifier: new Notifier({ url: a.notify.url, format: a.notify.format, timeoutMs: a.notify.timeoutMs, log }) }),
  });
  return { store, gate, holdMs: a.holdSeconds * 1000 };
}
