/**
 * MutationPolicy: labels, annotations and defaults added to matching objects
 * at admission. Pure: {@link applyMutations} returns a mutated deep copy; the
 * webhook diffs it against the original into a minimal RFC 6902 patch.
 *
 * ```yaml
 * apiVersion: kubetrail.io/v1alpha1
 * kind: MutationPolicy
 * metadata:
 *   name: agent-labels
 * spec:
 *   match: {...}                 # as GuardrailPolicy (core/policy/match.ts); operations default to CREATE, UPDATE
 *   matchConditions: [...]       # CEL, all must be true
 *   labels: {kubetrail.io/managed-by-agent: "true"}      # set (overwriting) on metadata.labels
 *   annotations: {team: platform}                        # set (overwriting) on metadata.annotations
 *   defaults:                    # deep-merged where ABSENT only: never overwrites what the caller set
 *     spec:
 *       revisionHistoryLimit: 3
 * ```
 *
 * Only CREATE and UPDATE of objects with `metadata` are mutated; CONNECT
 * options and DELETE are never touched.
 */
import { z } from 'zod';
import { parseSpec, type PolicyDocument } from './document.ts';
import { compileMatcher, matchConditionsSchema, matchSchema, type Matcher, type PolicyInput } from './match.ts';
import type { CelActivation } from './cel.ts';
import { guardrailActivation } from './guardrail.ts';

/** Zod schema of a MutationPolicy's `spec`. */
const mutationSpecSchema = z
  .strictObject({
    description: z.string().optional(),
    match: matchSchema.optional(),
    matchConditions: matchConditionsSchema,
    labels: z.record(z.string().min(1), z.string()).default({}),
    annotations: z.record(z.string().min(1), z.string()).default({}),
    defaults: z.record(z.string(), z.unknown()).optional(),
  })
  .superRefine((s, ctx) => {
    if (Object.keys(s.labels).length === 0 && Object.keys(s.annotations).length === 0 && s.defaults === undefined) {
      ctx.addIssue({ code: 'custom', path: [], message: 'set at least one of labels, annotations, defaults' });
    }
    if (s.defaults && ('apiVersion' in s.defaults || 'kind' in s.defaults)) {
      ctx.addIssue({ code: 'custom', path: ['defaults'], message: 'defaults cannot set apiVersion or kind' });
    }
  });

/** A compiled MutationPolicy. */
export interface MutationPolicy {
  readonly kind: 'MutationPolicy';
  readonly name: string;
  readonly matcher: Matcher;
  readonly labels: Readonly<Record<string, string>>;
  readonly annotations: Readonly<Record<string, string>>;
  readonly defaults?: Readonly<Record<string, unknown>>;
}

/** Compiles a MutationPolicy document; throws PolicyError when invalid. */
export function compileMutation(doc: PolicyDocument): MutationPolicy {
  const spec = parseSpec(mutationSpecSchema, doc);
  return {
    kind: 'MutationPolicy',
    name: doc.metadata.name,
    matcher: compileMatcher(spec.match, spec.matchConditions),
    labels: spec.labels,
    annotations: spec.annotations,
    ...(spec.defaults === undefined ? {} : { defaults: structuredClone(spec.defaults) }),
  };
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function mergeDefaults(target: Json, defaults: Readonly<Json>): void {
  for (const [k, v] of Object.entries(defaults)) {
    const cur = target[k];
    if (cur === undefined) target[k] = structuredClone(v);
    else if (isObject(cur) && isObject(v)) mergeDefaults(cur, v);
  }
}

/** Result of {@link applyMutations}. */
export interface MutationResult {
  /** The mutated deep copy (equal to the input when nothing applied). */
  object: unknown;
  /** Policies that matched and were applied. */
  applied: string[];
  /** matchConditions that failed to evaluate (the policy is then not applied: mutations fail open, guardrails fail closed). */
  errors: { policy: string; message: string }[];
}

/** Sets `metadata[field][key] = value` on a copy-owned object, creating the maps as needed. */
function setMetadataEntry(obj: Json, field: 'labels' | 'annotations', key: string, value: string): void {
  if (!isObject(obj['metadata'])) obj['metadata'] = {};
  const md = obj['metadata'] as Json;
  if (!isObject(md[field])) md[field] = {};
  (md[field] as Json)[key] = value;
}

/**
 * Applies every matching MutationPolicy to a deep copy of `input.object`.
 * Never mutates the input. Only CREATE/UPDATE of an object with metadata.
 */
export function applyMutations(policies: readonly MutationPolicy[], input: PolicyInput, opts: { activation?: CelActivation } = {}): MutationResult {
  const res: MutationResult = { object: input.object, applied: [], errors: [] };
  const op = input.request.operation.toUpperCase();
  if ((op !== 'CREATE' && op !== 'UPDATE') || !isObject(input.object) || !isObject(input.object['metadata'])) return res;
  let activation = opts.activation;
  let copy: Json | undefined;
  for (const p of policies) {
    if (!p.matcher.matchesStatic(input)) continue;
    activation ??= guardrailActivation(input);
    const m = p.matcher.matchesConditions(activation);
    if (m.matched === 'error') {
      res.errors.push({ policy: p.name, message: m.message });
      continue;
    }
    if (!m.matched) continue;
    copy ??= structuredClone(input.object);
    for (const [k, v] of Object.entries(p.labels)) setMetadataEntry(copy, 'labels', k, v);
    for (const [k, v] of Object.entries(p.annotations)) setMetadataEntry(copy, 'annotations', k, v);
    if (p.defaults) mergeDefaults(copy, p.defaults);
    res.applied.push(p.name);
  }
  if (copy) res.object = copy;
  return res;
}
