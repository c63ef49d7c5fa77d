/**
 * The sections of the configuration that reach kubetrail's own objects in the
 * API server: `approvals` (ApprovalRequests, docs/approvals.md) and
 * `selfManaged` (certificates, signing key and their Lease). Kept apart from
 * config.ts, which composes them; each default is in one literal here.
 */
import { z } from 'zod';

/** Defaults of `approvals` (issue 17), in one literal. */
const APPROVAL_DEFAULTS = { inCluster: false, namespace: 'kubetrail', holdSeconds: 20, serviceUsers: [] as string[], expirySweepSeconds: 15 };

/**
 * Human approval (docs/approvals.md). Absent: `requireApproval` denies with the
 * approver named and creates nothing. Present: ApprovalRequests are created in
 * the API server reached with these credentials.
 */
export const approvals = z.strictObject({
  kubeconfig: z.string().optional(),
  context: z.string().optional(),
  inCluster: z.boolean().default(APPROVAL_DEFAULTS.inCluster),
  /** Where ApprovalRequests of cluster-scoped targets go (kubetrail's namespace). */
  namespace: z.string().min(1).default(APPROVAL_DEFAULTS.namespace),
  /**
   * How long the gateway holds a request waiting for approval (s). Below client-go's and
   * kubectl's limits: both send no timeout by default, but the API server cuts a request
   * at 60 s (--request-timeout) and kubectl users expect an answer well before.
   */
  holdSeconds: z.number().int().min(0).max(55).default(APPROVAL_DEFAULTS.holdSeconds),
  /** Usernames kubetrail itself writes ApprovalRequests as (its ServiceAccounts): the only ones that may create them and mark them used or expired. */
  serviceUsers: z.array(z.string().min(1)).default(APPROVAL_DEFAULTS.serviceUsers),
  /**
   * How often the webhook marks ApprovalRequests past their expiry Expired (and emits
   * approval.expired) without waiting for a reader; 0 turns the sweep off.
   */
  expirySweepSeconds: z.number().int().min(0).max(3600).default(APPROVAL_DEFAULTS.expirySweepSeconds),
  /** Where to POST a notification when an approval is requested. */
  notify: z
    .strictObject({
      url: z.url({ protocol: /^https?$/ }),
      format: z.enum(['generic', 'slack']).default('generic'),
      timeoutMs: z.number().int().positive().default(5000),
    })
    .optional(),
});

/**
 * Objects kubetrail manages in its own namespace when no certificate or key
 * file is configured (certs/self-managed.ts, core/signing-key-secret.ts).
 * Absent: nothing is managed and webhook.tls / proxy.tls are required.
 */
const SELF_MANAGED_TLS_DEFAULTS = {
  secret: 'kubetrail-tls',
  dnsNames: ['kubetrail-webhook.kubetrail.svc', 'kubetrail-proxy.kubetrail.svc'],
  ipAddresses: [] as string[],
  validatingWebhookConfigurations: ['kubetrail'],
  mutatingWebhookConfigurations: ['kubetrail'],
  lease: 'kubetrail-webhook-certificates',
  leaseDurationSeconds: 15,
  renewDeadlineSeconds: 10,
  retryPeriodSeconds: 2,
  caValidityDays: 365,
  certValidityDays: 90,
  caRenewBeforeDays: 30,
  certRenewBeforeDays: 30,
  rolloverGraceSeconds: 120,
  pollIntervalSeconds: 10,
};

export const selfManaged = z.strictObject({
  /** kubetrail's own namespace: where the Secrets, the ConfigMap and the Lease live. */
  namespace: z.string().min(1).default('kubetrail'),
  inCluster: z.boolean().default(false),
  kubeconfig: z.string().optional(),
  context: z.string().optional(),
  /** This replica's name in the leader election; default: the host name (the pod's name). */
  identity: z.string().min(1).optional(),
  /** Self-managed serving certificate (used by the webhook and the gateway when their tls is unset). */
  tls: z
    .strictObject({
      secret: z.string().min(1).default(SELF_MANAGED_TLS_DEFAULTS.secret),
      dnsNames: z.array(z.string().min(1)).default(SELF_MANAGED_TLS_DEFAULTS.dnsNames),
      ipAddresses: z.array(z.string().min(1)).default(SELF_MANAGED_TLS_DEFAULTS.ipAddresses),
      /** kubetrail's own webhook configurations, by name: the leader writes their caBundle. */
      validatingWebhookConfigurations: z.array(z.string().min(1)).default(SELF_MANAGED_TLS_DEFAULTS.validatingWebhookConfigurations),
      mutatingWebhookConfigurations: z.array(z.string().min(1)).default(SELF_MANAGED_TLS_DEFAULTS.mutatingWebhookConfigurations),
      lease: z.string().min(1).default(SELF_MANAGED_TLS_DEFAULTS.lease),
      leaseDurationSeconds: z.number().int().positive().default(SELF_MANAGED_TLS_DEFAULTS.leaseDurationSeconds),
      renewDeadlineSeconds: z.number().int().positive().default(SELF_MANAGED_TLS_DEFAULTS.renewDeadlineSeconds),
      retryPeriodSeconds: z.number().int().positive().default(SELF_MANAGED_TLS_DEFAULTS.retryPeriodSeconds),
      caValidityDays: z.number().positive().default(SELF_MANAGED_TLS_DEFAULTS.caValidityDays),
      certValidityDays: z.number().positive().default(SELF_MANAGED_TLS_DEFAULTS.certValidityDays),
      caRenewBeforeDays: z.number().positive().default(SELF_MANAGED_TLS_DEFAULTS.caRenewBeforeDays),
      certRenewBeforeDays: z.number().positive().default(SELF_MANAGED_TLS_DEFAULTS.certRenewBeforeDays),
      /** Between publishing a next CA and serving from it: longer than pollIntervalSeconds and the API server's informer lag. */
      rolloverGraceSeconds: z.number().int().positive().default(SELF_MANAGED_TLS_DEFAULTS.rolloverGraceSeconds),
      /** How often every replica reads the Secret. */
      pollIntervalSeconds: z.number().int().positive().default(SELF_MANAGED_TLS_DEFAULTS.pollIntervalSeconds),
    })
    .optional(),
  /** Self-managed checkpoint signing key (used when signing.keyFile is unset). */
  signingKey: z
    .strictObject({
      secret: z.string().min(1).default('kubetrail-signing-key'),
      configMap: z.string().min(1).default('kubetrail-signing-public-key'),
    })
    .optional(),
});
