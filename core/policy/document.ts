/**
 * The envelope every policy document shares, and the helper that validates a
 * document's `spec` with a zod schema into issues carrying field paths.
 *
 * ```yaml
 * apiVersion: kubetrail.io/v1alpha1
 * kind: GuardrailPolicy | MutationPolicy | ExecPolicy | MaskingPolicy
 * metadata: {name: no-privileged-pods, labels: {...}, annotations: {...}}
 * spec: {...}            # per kind
 * ```
 */
import { z } from 'zod';
import { PolicyError } from './errors.ts';

/** The apiVersion of every policy document. */
const POLICY_API_VERSION = 'kubetrail.io/v1alpha1';

/** The kinds kubetrail knows; others are an error. */
const KNOWN_POLICY_KINDS = ['GuardrailPolicy', 'MutationPolicy', 'ExecPolicy', 'MaskingPolicy'] as const;

/** One of {@link KNOWN_POLICY_KINDS}. */
export type PolicyKind = (typeof KNOWN_POLICY_KINDS)[number];

/** A policy document whose envelope is valid; `spec` is for the kind's compiler to validate. */
export interface PolicyDocument {
  apiVersion: typeof POLICY_API_VERSION;
  kind: PolicyKind;
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec: Record<string, unknown>;
}

const envelope = z.strictObject({
  apiVersion: z.literal(POLICY_API_VERSION, { error: `must be ${POLICY_API_VERSION}` }),
  kind: z.enum(KNOWN_POLICY_KINDS, { error: `must be one of ${KNOWN_POLICY_KINDS.join(', ')}` }),
  metadata: z.strictObject({
    name: z
      .string()
      .min(1)
      .max(253)
      .regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'must be a lowercase DNS name (a-z, 0-9, "-", ".")'),
    labels: z.record(z.string(), z.string()).optional(),
    annotations: z.record(z.string(), z.string()).optional(),
  }),
  spec: z.record(z.string(), z.unknown()),
});

function zodIssues(err: z.ZodError, prefix: readonly (string | number)[]): { path: string; message: string }[] {
  return err.issues.map((i) => ({ path: [...prefix, ...i.path.map((p) => (typeof p === 'symbol' ? String(p) : p))].join('.'), message: i.message }));
}

/** Validates a document's envelope; throws {@link PolicyError} `POLICY_ERR_INVALID` with every issue. */
export function parseEnvelope(doc: unknown): PolicyDocument {
  const r = envelope.safeParse(doc);
  if (!r.success) throw new PolicyError('POLICY_ERR_INVALID', zodIssues(r.error, []));
  return r.data as PolicyDocument;
}

/** Validates `doc.spec` with `schema`; throws {@link PolicyError} `POLICY_ERR_INVALID` with paths like `spec.validations.0.expression`. */
export function parseSpec<S extends z.ZodType>(schema: S, doc: PolicyDocument): z.output<S> {
  const r = schema.safeParse(doc.spec);
  if (!r.success) throw new PolicyError('POLICY_ERR_INVALID', zodIssues(r.error, ['spec']));
  return r.data;
}
