/**
 * The `match` block shared by GuardrailPolicy and MutationPolicy: which
 * requests a policy applies to, by resource, operation, namespace and subject,
 * plus CEL `matchConditions`. Schema (zod) and a compiled, pure matcher.
 *
 * ```yaml
 * match:
 *   resourceRules:                       # any rule may match; absent: every resource
 *     - apiGroups: [""]                  # "*" = any group; "" = core
 *       apiVersions: ["*"]               # default ["*"]
 *       resources: ["pods", "pods/exec"] # "res/sub" names a subresource, "*" any resource, "*\/scale" any scale
 *       operations: [CREATE, UPDATE]     # default ["*"]; CREATE UPDATE DELETE CONNECT (gateway: also GET LIST WATCH ...)
 *   namespaces:                          # namespaced requests only; cluster-scoped requests always pass this block
 *     include: [team-a]                  # when set, a cluster-scoped request does NOT match
 *     exclude: [kube-system]
 *     selector:                          # a label selector on the namespace's labels (namespaceObject)
 *       matchLabels: {env: prod}
 *       matchExpressions: [{key: tier, operator: In, values: [web]}]   # In NotIn Exists DoesNotExist
 *   subjects:                            # any listed subject matches; absent: everyone
 *     users: ["agent-*"]                 # "*" is a wildcard
 *     groups: [agents]
 *     serviceAccounts: [{namespace: ci, name: "*"}]
 *   excludeSubjects: {users: [...], groups: [...], serviceAccounts: [...]}
 * matchConditions:                       # all must be true (CEL, bool); an error counts per failurePolicy
 *   - name: not-a-dry-run
 *     expression: "!request.dryRun"
 * ```
 */
import { z } from 'zod';
import { compileCel, type CelActivation, type CelProgram } from './cel.ts';

/** Zod schema of one resource rule. */
const resourceRuleSchema = z.strictObject({
  apiGroups: z.array(z.string()).min(1),
  apiVersions: z.array(z.string().min(1)).default(['*']),
  resources: z.array(z.string().min(1)).min(1),
  operations: z.array(z.string().min(1)).default(['*']),
});

const labelSelectorSchema = z.strictObject({
  matchLabels: z.record(z.string(), z.string()).default({}),
  matchExpressions: z
    .array(
      z.strictObject({
        key: z.string().min(1),
        operator: z.enum(['In', 'NotIn', 'Exists', 'DoesNotExist']),
        values: z.array(z.string()).default([]),
      }),
    )
    .default([]),
});

const subjectsSchema = z.strictObject({
  users: z.array(z.string().min(1)).default([]),
  groups: z.array(z.string().min(1)).default([]),
  serviceAccounts: z.array(z.strictObject({ namespace: z.string().min(1), name: z.string().min(1).default('*') })).default([]),
});

/** Zod schema of the `match` block. */
export const matchSchema = z.strictObject({
  resourceRules: z.array(resourceRuleSchema).optional(),
  namespaces: z
    .strictObject({
      include: z.array(z.string().min(1)).optional(),
      exclude: z.array(z.string().min(1)).default([]),
      selector: labelSelectorSchema.optional(),
    })
    .optional(),
  subjects: subjectsSchema.optional(),
  excludeSubjects: subjectsSchema.optional(),
});

/** Zod schema of `matchConditions`. */
export const matchConditionsSchema = z.array(z.strictObject({ name: z.string().min(1), expression: z.string().min(1) })).default([]);

/** The `match` block as written. */
export type MatchSpec = z.output<typeof matchSchema>;

/** Who is asking: the request's userInfo. */
export interface UserInfo {
  username: string;
  uid?: string;
  groups?: string[];
  extra?: Record<string, string[]>;
}

/** The request attributes policies match on (the shape of ValidatingAdmissionPolicy's `request`). */
export interface PolicyRequest {
  /** CREATE | UPDATE | DELETE | CONNECT at admission; the gateway may pass other verbs upper-cased (GET, LIST, WATCH, PATCH...). */
  operation: string;
  userInfo: UserInfo;
  resource: { group: string; version: string; resource: string };
  subResource?: string;
  namespace?: string;
  name?: string;
  uid?: string;
  kind?: { group: string; version: string; kind: string };
  dryRun?: boolean;
  /** The HTTP verb at the gateway (get, list, create...); absent at admission. */
  verb?: string;
}

/** Everything a policy sees about one request. */
export interface PolicyInput {
  request: PolicyRequest;
  /** The new object (CREATE, UPDATE, CONNECT options) or null. */
  object: unknown;
  /** The existing object (UPDATE, DELETE) or null. */
  oldObject: unknown;
  /**
   * The Namespace object the request is in: null for cluster-scoped requests or a namespace that does not exist,
   * undefined when it could not be looked up (then label selectors match, failing closed).
   */
  namespaceObject?: unknown;
}

/** Turns a glob with `*` into a matcher. */
function glob(pattern: string): (s: string) => boolean {
  if (pattern === '*') return () => true;
  if (!pattern.includes('*')) return (s) => s === pattern;
  const re = new RegExp(`^${pattern.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
  return (s) => re.test(s);
}

function anyOf(patterns: readonly string[]): (s: string) => boolean {
  const fns = patterns.map(glob);
  return (s) => fns.some((f) => f(s));
}

type SubjectMatcher = (u: UserInfo) => boolean;

function compileSubjects(s: z.output<typeof subjectsSchema>): SubjectMatcher {
  const users = anyOf([...s.users, ...s.serviceAccounts.map((sa) => `system:serviceaccount:${sa.namespace}:${sa.name}`)]);
  const groups = anyOf(s.groups);
  return (u) => users(u.username) || (u.groups ?? []).some(groups);
}

function compileResourceRule(r: z.output<typeof resourceRuleSchema>): (req: PolicyRequest) => boolean {
  const groups = anyOf(r.apiGroups);
  const versions = anyOf(r.apiVersions);
  const ops = new Set(r.operations.map((o) => o.toUpperCase()));
  const allOps = ops.has('*');
  // "pods" matches only the main resource; "pods/exec" the subresource; "*" every main resource; "*/*" everything; "pods/*" every pod subresource.
  const resources = r.resources.map((spec) => {
    const [res = '', sub] = spec.split('/', 2);
    const resOk = glob(res);
    const subOk = sub === undefined ? (s: string) => s === '' : glob(sub);
    return (req: PolicyRequest): boolean => resOk(req.resource.resource) && subOk(req.subResource ?? '');
  });
  return (req) =>
    (allOps || ops.has(req.operation.toUpperCase())) &&
    groups(req.resource.group) &&
    versions(req.resource.version) &&
    resources.some((f) => f(req));
}

function labelsOf(o: unknown): Record<string, string> {
  const labels = (o as { metadata?: { labels?: unknown } } | null | undefined)?.metadata?.labels;
  return labels !== null && typeof labels === 'object' ? (labels as Record<string, string>) : {};
}

function compileSelector(s: z.output<typeof labelSelectorSchema>): (labels: Record<string, string>) => boolean {
  const ml = Object.entries(s.matchLabels);
  const me = s.matchExpressions;
  return (labels) =>
    ml.every(([k, v]) => labels[k] === v) &&
    me.every((e) => {
      const has = Object.hasOwn(labels, e.key);
      switch (e.operator) {
        case 'In':
          return has && e.values.includes(labels[e.key] as string);
        case 'NotIn':
          return !has || !e.values.includes(labels[e.key] as string);
        case 'Exists':
          return has;
        case 'DoesNotExist':
          return !has;
      }
    });
}

/**
 * The namespace a request is in. For the `namespaces` resource itself the
 * namespace is the object's name (the API server sets `request.namespace` to
 * it for namespace writes, but not on every path, so fall back to the name).
 */
export function requestNamespace(req: PolicyRequest): string | undefined {
  if (req.resource.group === '' && req.resource.resource === 'namespaces' && (req.subResource ?? '') === '') return req.namespace || req.name || undefined;
  return req.namespace || undefined;
}

/** Outcome of matching: matched, or not, or a matchCondition failed to evaluate. */
export type MatchOutcome = { matched: true } | { matched: false } | { matched: 'error'; condition: string; message: string };

/** A compiled `match` + `matchConditions`. */
export interface Matcher {
  /** Static part only (resources, operations, namespaces, subjects): cheap, no CEL. */
  matchesStatic(input: PolicyInput): boolean;
  /** Evaluates the matchConditions (call after {@link Matcher.matchesStatic}). */
  matchesConditions(activation: CelActivation): MatchOutcome;
}

/** Compiles a `match` block and its `matchConditions` (CEL compiled here; throws PolicyError on a bad expression). */
export function compileMatcher(match: MatchSpec | undefined, conditions: z.output<typeof matchConditionsSchema>, pathPrefix = 'spec'): Matcher {
  const rules = match?.resourceRules?.map(compileResourceRule);
  const include = match?.namespaces?.include ? new Set(match.namespaces.include) : undefined;
  const exclude = new Set(match?.namespaces?.exclude ?? []);
  const selector = match?.namespaces?.selector ? compileSelector(match.namespaces.selector) : undefined;
  const subjects = match?.subjects ? compileSubjects(match.subjects) : undefined;
  const excluded = match?.excludeSubjects ? compileSubjects(match.excludeSubjects) : undefined;
  const conds: { name: string; program: CelProgram<boolean> }[] = conditions.map((c, i) => ({
    name: c.name,
    program: compileCel(c.expression, { expect: 'bool', path: `${pathPrefix}.matchConditions.${i}.expression` }),
  }));
  return {
    matchesStatic(input) {
      const req = input.request;
      if (rules && !rules.some((r) => r(req))) return false;
      const ns = requestNamespace(req);
      if (ns === undefined) {
        if (include) return false;
      } else {
        if (include && !include.has(ns)) return false;
        if (exclude.has(ns)) return false;
        // An unknown namespace (namespaceObject undefined: no lookup, or it failed) matches: a guardrail scoped by
        // labels must not be skipped just because the labels could not be read (fail closed).
        if (selector && input.namespaceObject !== undefined && !selector(labelsOf(input.namespaceObject))) return false;
      }
      if (subjects && !subjects(req.userInfo)) return false;
      if (excluded && excluded(req.userInfo)) return false;
      return true;
    },
    matchesConditions(activation) {
      for (const c of conds) {
        const r = c.program.evaluate(activation);
        if (!r.ok) return { matched: 'error', condition: c.name, message: r.error.message };
        if (!r.value) return { matched: false };
      }
      return { matched: true };
    },
  };
}
