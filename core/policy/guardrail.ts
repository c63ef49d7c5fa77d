/**
 * GuardrailPolicy: CEL validations that deny, warn, audit or require approval
 * for matching requests, at admission (webhook) or at the gateway (proxy).
 * Compiled once by {@link compileGuardrail}; evaluated by the pure
 * {@link evaluateGuardrails}.
 *
 * ```yaml
 * apiVersion: kubetrail.io/v1alpha1
 * kind: GuardrailPolicy
 * metadata:
 *   name: no-privileged-pods
 * spec:
 *   description: Agents may not run privileged containers.   # optional
 *   stages: [admission]        # where it applies: admission | gateway (default [admission])
 *   action: deny               # default action of the validations: deny | warn | audit | requireApproval
 *   approval: security-team    # requireApproval only: who must approve (named in the denial)
 *   approvers: {users: [alice], groups: [sre]}   # requireApproval: who may approve (default: whoever RBAC lets `approve`)
 *   minApprovals: 2            # distinct approvers needed (default 1)
 *   approvalWindowSeconds: 1800  # an approval admits the same request again for this long (default: once)
 *   approvalExpirySeconds: 3600  # a request not decided (or an approval not used) by then expires (default 3600)
 *   failurePolicy: Fail        # a CEL runtime error: Fail (default) = counts as a violation; Ignore = reported only
 *   match: {...}               # see core/policy/match.ts: resourceRules, namespaces, subjects, excludeSubjects
 *   matchConditions:           # CEL, all must be true for the policy to apply
 *     - {name: has-spec, expression: "has(object.spec)"}
 *   variables:                 # CEL, evaluated in order after matching; later ones may use earlier ones as variables.<name>
 *     - {name: podSpec, expression: "object.kind == 'Pod' ? object.spec : object.spec.template.spec"}
 *   validations:               # each expression must be TRUE for the request to pass (as in ValidatingAdmissionPolicy)
 *     - name: no-privileged    # optional; default "validations[i]"
 *       expression: "!object.spec.containers.exists(c, c.?securityContext.?privileged.orValue(false))"
 *       message: privileged containers are not allowed
 *       messageExpression: "'container ' + ... + ' is privileged'"   # optional; wins over message when it yields a non-empty string
 *       action: warn           # optional per-rule override
 * ```
 *
 * CEL variables: `object`, `oldObject`, `request` (operation, userInfo,
 * resource, subResource, namespace, name, dryRun, kind), `namespaceObject`.
 * Precedence: any deny → denied; else any requireApproval → denied with the
 * approval named; warn → admission warnings; audit → recorded only.
 */
import { z } from 'zod';
import type { Decision, GuardrailDecisionBody } from '../events/model.ts';
import { compileCel, toCelValue, type CelActivation, type CelProgram, type CelResult } from './cel.ts';
import { parseSpec, type PolicyDocument } from './document.ts';
import { compileMatcher, matchConditionsSchema, matchSchema, requestNamespace, type Matcher, type PolicyInput } from './match.ts';
import type { ApprovalRequirement } from '../approvals/types.ts';
import { approvalSettingsFields, approvalSettingsOf, requireApprovalName, type ApprovalSettings } from './approval-settings.ts';

/** Where a guardrail applies. */
export type GuardrailStage = 'admission' | 'gateway';

/** What a violated rule does. */
export type GuardrailAction = 'deny' | 'warn' | 'audit' | 'requireApproval';

const actionSchema = z.enum(['deny', 'warn', 'audit', 'requireApproval']);

/** Zod schema of a GuardrailPolicy's `spec`. */
const guardrailSpecSchema = z
  .strictObject({
    description: z.string().optional(),
    stages: z.array(z.enum(['admission', 'gateway'])).min(1).default(['admission']),
    action: actionSchema.default('deny'),
    ...approvalSettingsFields,
    failurePolicy: z.enum(['Fail', 'Ignore']).default('Fail'),
    match: matchSchema.optional(),
    matchConditions: matchConditionsSchema,
    variables: z
      .array(z.strictObject({ name: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be a CEL identifier'), expression: z.string().min(1) }))
      .default([]),
    validations: z
      .array(
        z.strictObject({
          name: z.string().min(1).optional(),
          expression: z.string().min(1),
          message: z.string().min(1).optional(),
          messageExpression: z.string().min(1).optional(),
          action: actionSchema.optional(),
        }),
      )
      .min(1),
  })
  .superRefine((spec, ctx) => {
    requireApprovalName(spec.action === 'requireApproval' || spec.validations.some((v) => v.action === 'requireApproval'), spec.approval, ctx);
  });

/** A compiled validation rule. */
export interface GuardrailRule {
  readonly name: string;
  readonly action: GuardrailAction;
  readonly expression: CelProgram<boolean>;
  readonly message: string;
  readonly messageExpression?: CelProgram<string>;
}

/** A compiled GuardrailPolicy. */
export interface GuardrailPolicy {
  readonly kind: 'GuardrailPolicy';
  readonly name: string;
  readonly stages: ReadonlySet<GuardrailStage>;
  readonly approval?: string;
  /** Who may approve and how (requireApproval rules). */
  readonly approvalSettings: ApprovalSettings;
  readonly failurePolicy: 'Fail' | 'Ignore';
  readonly matcher: Matcher;
  readonly variables: readonly { readonly name: string; readonly expression: CelProgram }[];
  readonly rules: readonly GuardrailRule[];
  /** True when some rule can refuse a request (deny or requireApproval). */
  readonly enforcing: boolean;
}

/** Compiles a GuardrailPolicy document; throws PolicyError (field paths under `spec`) when invalid. */
export function compileGuardrail(doc: PolicyDocument): GuardrailPolicy {
  const spec = parseSpec(guardrailSpecSchema, doc);
  const matcher = compileMatcher(spec.match, spec.matchConditions);
  const variables = spec.variables.map((v, i) => ({ name: v.name, expression: compileCel(v.expression, { path: `spec.variables.${i}.expression` }) }));
  const rules = spec.validations.map((v, i): GuardrailRule => {
    const expression = compileCel(v.expression, { expect: 'bool', path: `spec.validations.${i}.expression` });
    const rule: GuardrailRule = {
      name: v.name ?? `validations[${i}]`,
      action: v.action ?? spec.action,
      expression,
      message: v.message ?? `failed expression: ${v.expression.trim()}`,
      ...(v.messageExpression === undefined
        ? {}
        : { messageExpression: compileCel(v.messageExpression, { expect: 'string', path: `spec.validations.${i}.messageExpression` }) }),
    };
    return rule;
  });
  return {
    kind: 'GuardrailPolicy',
    name: doc.metadata.name,
    stages: new Set(spec.stages),
    ...(spec.approval === undefined ? {} : { approval: spec.approval }),
    approvalSettings: approvalSettingsOf(spec),
    failurePolicy: spec.failurePolicy,
    matcher,
    variables,
    rules,
    enforcing: rules.some((r) => r.action === 'deny' || r.action === 'requireApproval'),
  };
}

/** A CEL evaluation that failed during a guardrail evaluation. */
export interface GuardrailEvalError {
  policy: string;
  rule: string;
  message: string;
}

/** The outcome of evaluating every guardrail against one request. */
export interface GuardrailOutcome {
  /** False when a deny or requireApproval rule was violated. */
  allowed: boolean;
  /** The deciding action: deny, requireApproval, or allow. */
  action: 'allow' | 'deny' | 'requireApproval';
  /** When refused: the message for the requester (every refusing rule's message, `; `-joined). */
  message?: string;
  /** The first refusing policy and rule. */
  policy?: string;
  rule?: string;
  /** Admission warnings (warn rules). */
  warnings: string[];
  /** Every violated rule, in policy order, as guardrail.decision bodies (deny, requireApproval, warn and audit). */
  decisions: GuardrailDecisionBody[];
  /** Names of the policies that matched the request (whether violated or not). */
  matchedPolicies: string[];
  /** CEL runtime errors (never thrown). */
  errors: GuardrailEvalError[];
  /** True when some enforcing policy (deny/requireApproval) matched: the resource is guardrailed. */
  guardrailed: boolean;
  /** With action requireApproval: the first rule that asked for it, with its policy's approval settings. */
  approval?: ApprovalRequirement;
}

/** Summary of the input recorded in decisions: enough to find the request, never the object (it may hold secrets). */
function inputSummary(input: PolicyInput): Record<string, unknown> {
  const r = input.request;
  const out: Record<string, unknown> = {
    operation: r.operation,
    resource: [r.resource.group, r.resource.version, r.resource.resource].join('/') + (r.subResource ? `/${r.subResource}` : ''),
    username: r.userInfo.username,
  };
  const ns = requestNamespace(r);
  if (ns !== undefined) out['namespace'] = ns;
  if (r.name) out['name'] = r.name;
  return out;
}

/**
 * Builds the CEL activation for an input once (integral numbers become CEL
 * ints; number-free subtrees are shared with the input, not copied); pass it
 * to several evaluations of the same request to convert once.
 */
export function guardrailActivation(input: PolicyInput): CelActivation {
  return {
    object: toCelValue(input.object ?? null),
    oldObject: toCelValue(input.oldObject ?? null),
    request: toCelValue({ dryRun: false, subResource: '', namespace: '', name: '', ...input.request }),
    namespaceObject: toCelValue(input.namespaceObject ?? null),
  };
}

/**
 * Evaluates `policies` (those applying to `stage`) against `input`. Pure and
 * total: a CEL runtime error is reported in `errors` (and, under
 * failurePolicy Fail, counts as a violation of its rule), never thrown.
 */
export function evaluateGuardrails(
  policies: readonly GuardrailPolicy[],
  input: PolicyInput,
  stage: GuardrailStage,
  opts: { activation?: CelActivation } = {},
): GuardrailOutcome {
  const out: GuardrailOutcome = { allowed: true, action: 'allow', warnings: [], decisions: [], matchedPolicies: [], errors: [], guardrailed: false };
  let activation = opts.activation;
  const refusals: string[] = [];
  let approvalNeeded = false;
  let denied = false;
  for (const p of policies) {
    if (!p.stages.has(stage) || !p.matcher.matchesStatic(input)) continue;
    activation ??= guardrailActivation(input);
    const m = p.matcher.matchesConditions(activation);
    if (m.matched === false) continue;
    if (m.matched === 'error') {
      out.errors.push({ policy: p.name, rule: `matchConditions[${m.condition}]`, message: m.message });
      // A condition that cannot be evaluated: Fail treats the policy as matching (fail closed), Ignore skips it.
      if (p.failurePolicy === 'Ignore') continue;
    }
    out.matchedPolicies.push(p.name);
    if (p.enforcing) out.guardrailed = true;
    let act: CelActivation = activation;
    let varError: string | undefined;
    if (p.variables.length > 0) {
      const vars: Record<string, unknown> = {};
      act = { ...activation, variables: vars };
      for (const v of p.variables) {
        const r = v.expression.evaluate(act);
        if (!r.ok) {
          varError = `variables.${v.name}: ${r.error.message}`;
          break;
        }
        vars[v.name] = r.value;
      }
    }
    for (const rule of p.rules) {
      const r: CelResult<boolean> = varError === undefined ? rule.expression.evaluate(act) : { ok: false, error: { code: 'CEL_ERR_RUNTIME', message: varError } };
      let message: string;
      if (r.ok) {
        if (r.value) continue;
        message = rule.message;
        if (rule.messageExpression) {
          const mr = rule.messageExpression.evaluate(act);
          if (mr.ok && mr.value.trim() !== '') message = mr.value;
          else if (!mr.ok) out.errors.push({ policy: p.name, rule: `${rule.name}.messageExpression`, message: mr.error.message });
        }
      } else {
        out.errors.push({ policy: p.name, rule: rule.name, message: r.error.message });
        if (p.failurePolicy === 'Ignore') {
          out.warnings.push(`kubetrail policy ${p.name} rule ${rule.name} could not be evaluated (ignored): ${r.error.message}`);
          continue;
        }
        message = `policy ${p.name} rule ${rule.name} could not be evaluated: ${r.error.message}`;
      }
      out.decisions.push({ policy: p.name, rule: rule.name, action: rule.action, message, input: inputSummary(input) });
      switch (rule.action) {
        case 'deny':
          denied = true;
          refusals.push(message);
          out.policy ??= p.name;
          out.rule ??= rule.name;
          break;
        case 'requireApproval':
          approvalNeeded = true;
          refusals.push(`${message} (requires approval by ${p.approval ?? 'an approver'})`);
          out.approval ??= { policy: p.name, rule: rule.name, approval: p.approval ?? 'an approver', reason: message, ...p.approvalSettings };
          out.policy ??= p.name;
          out.rule ??= rule.name;
          break;
        case 'warn':
          out.warnings.push(`${p.name}: ${message}`);
          break;
        case 'audit':
          break;
      }
    }
  }
  if (denied || approvalNeeded) {
    out.allowed = false;
    out.action = denied ? 'deny' : 'requireApproval';
    out.message = refusals.join('; ');
  }
  return out;
}

/** The event model's Decision for an outcome. */
export function toDecision(o: GuardrailOutcome): Decision {
  const d: Decision = { allowed: o.allowed, action: o.action };
  if (o.policy !== undefined) d.policy = o.policy;
  if (o.rule !== undefined) d.rule = o.rule;
  if (o.message !== undefined) d.message = o.message;
  if (o.warnings.length > 0) d.warnings = [...o.warnings];
  return d;
}

/** True when some enforcing guardrail of `stage` matches the request (used to fail closed when an event cannot be recorded). */
export function isGuardrailed(policies: readonly GuardrailPolicy[], input: PolicyInput, stage: GuardrailStage): boolean {
  return policies.some((p) => p.enforcing && p.stages.has(stage) && p.matcher.matchesStatic(input));
}
