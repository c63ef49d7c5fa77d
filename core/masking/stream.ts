/**
 * Inline masking of session streams: MaskingPolicy documents (validation and
 * selection). The masker itself is core/masking/stream-masker.ts, re-exported
 * here for the callers that take both.
 */
import { z } from 'zod';
import { PolicyError } from '../policy/errors.ts';
import { parseEnvelope, parseSpec, type PolicyDocument } from '../policy/document.ts';
import type { PolicyCompiler } from '../policy/store.ts';
import type { Actor } from '../events/model.ts';
import { BUILTIN_PATTERNS, BUILTIN_PATTERN_NAMES, type MaskPattern } from './patterns.ts';

export { StreamMasker, maskReplacement } from './stream-masker.ts';

/** The streams a MaskingPolicy can apply to. */
export type MaskedStream = 'stdout' | 'stderr' | 'stdin';

const specSchema = z.strictObject({
    match: z
      .strictObject({
        namespaces: z.array(z.string().min(1)).optional(),
        users: z.array(z.string().min(1)).optional(),
        groups: z.array(z.string().min(1)).optional(),
      })
      .default({}),
    /** Built-in patterns to enable; default: all of them. */
    builtins: z.array(z.string()).optional(),
    patterns: z
      .array(
        z.strictObject({
          name: z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'lower-case letters, digits and dashes'),
          regex: z.string().min(1),
          /** Literals every match starts with: lets a match split across frames be masked. */
          startsWith: z.array(z.string().min(1).max(32)).default([]),
          /** Longest possible match (bytes), bounding the hold-back. */
          maxLength: z.number().int().positive().max(64 * 1024).default(256),
        }),
      )
      .default([]),
    /** Which streams are masked; stdin is masked in the recording only (the container still receives it). */
    streams: z.array(z.enum(['stdout', 'stderr', 'stdin'])).default(['stdout', 'stderr', 'stdin']),
});

/** A validated MaskingPolicy. */
export interface CompiledMaskingPolicy {
  readonly kind: 'MaskingPolicy';
  readonly name: string;
  readonly source: string;
  readonly match: { readonly namespaces?: readonly string[]; readonly users?: readonly string[]; readonly groups?: readonly string[] };
  readonly patterns: readonly MaskPattern[];
  readonly streams: readonly MaskedStream[];
}

function escapeClass(s: string): string {
  return s.replace(/[\\\]^-]/g, '\\$&');
}

/**
 * Validates a MaskingPolicy document (envelope `kubetrail.io/v1alpha1`).
 * Throws {@link PolicyError} with every problem and its field path (unknown
 * built-in, bad regex, a regex that matches the empty string); `source` (a
 * file name) is stamped on the issues.
 */
export function compileMaskingPolicy(doc: unknown, source: string): CompiledMaskingPolicy {
  try {
    return compile(parseEnvelope(doc), source);
  } catch (err) {
    if (err instanceof PolicyError && source) throw new PolicyError(err.code, err.issues.map((i) => ({ ...i, file: i.file ?? source })), { cause: err.cause });
    throw err;
  }
}

/** The compiler to register with PolicyStore for kind MaskingPolicy. */
export const maskingPolicyCompiler: PolicyCompiler<CompiledMaskingPolicy> = (doc) => compile(doc, '');

function compile(doc: PolicyDocument, source: string): CompiledMaskingPolicy {
  if (doc.kind !== 'MaskingPolicy') throw new PolicyError('POLICY_ERR_INVALID', [{ path: 'kind', message: 'must be MaskingPolicy' }]);
  const d = { metadata: doc.metadata, spec: parseSpec(specSchema, doc) };
  const issues: { path: string; message: string }[] = [];
  const patterns: MaskPattern[] = [];
  for (const [i, name] of (d.spec.builtins ?? BUILTIN_PATTERN_NAMES).entries()) {
    const p = BUILTIN_PATTERNS[name];
    if (p === undefined) issues.push({ path: `spec.builtins.${i}`, message: `unknown built-in "${name}" (known: ${BUILTIN_PATTERN_NAMES.join(', ')})` });
    else patterns.push(p);
  }
  for (const [i, p] of d.spec.patterns.entries()) {
    let regex: RegExp;
    try {
      regex = new RegExp(p.regex, 'g');
    } catch (err) {
      issues.push({ path: `spec.patterns.${i}.regex`, message: `not a valid regular expression: ${(err as Error).message}` });
      continue;
    }
    if (new RegExp(`^(?:${p.regex})$`).test('')) {
      issues.push({ path: `spec.patterns.${i}.regex`, message: 'matches the empty string' });
      continue;
    }
    // Characters that may continue a match: those of the start literals plus anything the
    // regex's character classes allow would be ideal; a word-ish default is stated in the docs.
    const startChars = [...new Set(p.startsWith.join(''))].map(escapeClass).join('');
    patterns.push({ name: p.name, regex, starts: p.startsWith, chars: new RegExp(`[A-Za-z0-9_+/=.\\-${startChars}]`), maxLength: p.maxLength });
  }
  if (issues.length > 0) throw new PolicyError('POLICY_ERR_INVALID', issues);
  const m = d.spec.match;
  return Object.freeze({
    kind: 'MaskingPolicy',
    name: d.metadata.name,
    source,
    match: { ...(m.namespaces ? { namespaces: m.namespaces } : {}), ...(m.users ? { users: m.users } : {}), ...(m.groups ? { groups: m.groups } : {}) },
    patterns: Object.freeze(patterns),
    streams: d.spec.streams,
  });
}

/** The patterns of every policy that applies to this session and stream, deduplicated by name. */
export function patternsFor(policies: readonly CompiledMaskingPolicy[], who: { namespace: string; user: Actor }, stream: MaskedStream): MaskPattern[] {
  const out = new Map<string, MaskPattern>();
  for (const p of policies) {
    const m = p.match;
    if (m.namespaces && !m.namespaces.includes(who.namespace)) continue;
    if (m.users && !m.users.includes(who.user.username)) continue;
    if (m.groups && !m.groups.some((g) => who.user.groups.includes(g))) continue;
    if (!p.streams.includes(stream)) continue;
    for (const pat of p.patterns) if (!out.has(pat.name)) out.set(pat.name, pat);
  }
  return [...out.values()];
}
