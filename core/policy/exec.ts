/**
 * ExecPolicy: command guardrails for exec, attach and port-forward sessions.
 *
 * A document selects sessions (`spec.match`) and carries rules, each a CEL
 * expression that is true when the rule fires. Rules with `on: session` run
 * once, before the upstream connection opens; rules with `on: line` run on each
 * command line the tty line editor rebuilds from stdin, before its Enter is
 * forwarded. Compilation validates everything and reports field paths;
 * evaluation is pure (no I/O, no clock) and fails closed: a rule whose
 * expression errors or does not yield a bool counts as firing.
 *
 * CEL variables: `command` (list<string>), `line` (string, "" for session
 * rules), `container`, `pod`, `kind` (exec|attach|portforward), `tty` (bool),
 * `user` (map: username, uid, groups, extra), and `session` (map with all of
 * them plus `namespace`). `namespace` is a reserved word in CEL, so the pod's
 * namespace is `session.namespace`.
 */
import { Environment } from '@marcbachmann/cel-js';
import { z } from 'zod';
import { PolicyError, type PolicyIssue } from './errors.ts';
import { parseEnvelope, parseSpec, type PolicyDocument } from './document.ts';
import type { PolicyCompiler } from './store.ts';
import type { Actor, Decision } from '../events/model.ts';
import type { ApprovalRequirement } from '../approvals/types.ts';
import { approvalSettingsFields, approvalSettingsOf, requireApprovalName, type ApprovalSettings } from './approval-settings.ts';

/** What an ExecPolicy rule does when it fires. */
export type ExecAction = 'deny' | 'audit' | 'requireApproval';

/** The session kinds a policy can match. */
export type SessionKind = 'exec' | 'attach' | 'portforward';

const ruleSchema = z.strictObject({
  name: z.string().min(1),
  /**
   * deny stops the session (or the line); audit only records the decision;
   * requireApproval holds the session before its upstream opens (or the line
   * before its Enter) until an ApprovalRequest is approved (docs/approvals.md).
   */
  action: z.enum(['deny', 'audit', 'requireApproval']).default('deny'),
  /** When the rule is evaluated. */
  on: z.enum(['session', 'line']).default('session'),
  expression: z.string().min(1),
  message: z.string().optional(),
});

const specSchema = z
  .strictObject({
    match: z
      .strictObject({
        kinds: z.array(z.enum(['exec', 'attach', 'portforward'])).optional(),
        namespaces: z.array(z.string().min(1)).optional(),
        pods: z.array(z.string().min(1)).optional(),
        containers: z.array(z.string().min(1)).optional(),
        users: z.array(z.string().min(1)).optional(),
        groups: z.array(z.string().min(1)).optional(),
      })
      .default({}),
    /**
     * For `on: line` rules: what to do with a line kubetrail could not follow
     * (history recall, tab completion, reverse search): deny (default, fail
     * closed) or allow.
     */
    opaqueLines: z.enum(['deny', 'allow']).default('deny'),
    rules: z.array(ruleSchema).min(1),
    ...approvalSettingsFields,
  })
  .superRefine((spec, ctx) => requireApprovalName(spec.rules.some((r) => r.action === 'requireApproval'), spec.approval, ctx));

/** What an ExecPolicy evaluates: one session, and for line rules the typed line. */
export interface ExecInput {
  kind: SessionKind;
  namespace: string;
  pod: string;
  container: string;
  command: readonly string[];
  tty: boolean;
  user: Actor;
  /** The rebuilt command line (line rules only). */
  line?: string;
}

type CompiledExpr = (ctx: Record<string, unknown>) => unknown;

/** A rule ready to run. */
export interface CompiledExecRule {
  readonly name: string;
  readonly action: ExecAction;
  readonly on: 'session' | 'line';
  readonly message: string;
  readonly expression: string;
  readonly program: CompiledExpr;
}

/** A validated ExecPolicy with its rules compiled. */
export interface CompiledExecPolicy {
  readonly kind: 'ExecPolicy';
  readonly name: string;
  readonly source: string;
  readonly match: {
    readonly kinds?: readonly SessionKind[];
    readonly namespaces?: readonly string[];
    readonly pods?: readonly string[];
    readonly containers?: readonly string[];
    readonly users?: readonly string[];
    readonly groups?: readonly string[];
  };
  readonly opaqueLines: 'deny' | 'allow';
  readonly rules: readonly CompiledExecRule[];
  /** Who must approve (requireApproval rules; named in the ApprovalRequest and the waiting message). */
  readonly approval?: string;
  readonly approvalSettings: ApprovalSettings;
}

let sharedEnv: Environment | undefined;
/**
 * ExecPolicy has its own CEL environment: its variables are not the
 * admission ones core/policy/cel.ts declares, and typing them lets a wrong
 * expression fail at load time.
 */
function celEnv(): Environment {
  // One environment, variables typed so that a type error is caught at compile time.
  sharedEnv ??= new Environment()
    .registerVariable('command', 'list<string>')
    .registerVariable('line', 'string')
    .registerVariable('container', 'string')
    .registerVariable('pod', 'string')
    .registerVariable('session', 'map<string, dyn>')
    .registerVariable('kind', 'string')
    .registerVariable('tty', 'bool')
    .registerVariable('user', 'map<string, dyn>');
  return sharedEnv;
}

/**
 * Validates and compiles an ExecPolicy document (envelope `kubetrail.io/v1alpha1`,
 * see core/policy/document.ts). Throws {@link PolicyError} listing every
 * problem with its field path (schema, CEL syntax, CEL types); `source` (a
 * file name) is stamped on the issues.
 */
export function compileExecPolicy(doc: unknown, source: string): CompiledExecPolicy {
  try {
    return compile(parseEnvelope(doc), source);
  } catch (err) {
    if (err instanceof PolicyError && source) throw new PolicyError(err.code, err.issues.map((i) => ({ ...i, file: i.file ?? source })), { cause: err.cause });
    throw err;
  }
}

/** The compiler to register with PolicyStore for kind ExecPolicy. */
export const execPolicyCompiler: PolicyCompiler<CompiledExecPolicy> = (doc) => compile(doc, '');

function compile(doc: PolicyDocument, source: string): CompiledExecPolicy {
  if (doc.kind !== 'ExecPolicy') throw new PolicyError('POLICY_ERR_INVALID', [{ path: 'kind', message: 'must be ExecPolicy' }]);
  const spec = parseSpec(specSchema, doc);
  const issues: PolicyIssue[] = [];
  const rules: CompiledExecRule[] = [];
  const names = new Set<string>();
  for (const [i, r] of spec.rules.entries()) {
    const path = `spec.rules.${i}.expression`;
    if (names.has(r.name)) issues.push({ path: `spec.rules.${i}.name`, message: `duplicate rule name "${r.name}"` });
    names.add(r.name);
    try {
      const program = celEnv().parse(r.expression);
      const checked = program.check();
      if (!checked.valid) {
        issues.push({ path, message: `CEL type error: ${firstLine(checked.error?.message)}` });
        continue;
      }
      if (checked.type !== 'bool' && checked.type !== 'dyn') {
        issues.push({ path, message: `must evaluate to bool, not ${checked.type ?? 'unknown'}` });
        continue;
      }
      rules.push({
        name: r.name,
        action: r.action,
        on: r.on,
        expression: r.expression,
        message: r.message ?? `blocked by ExecPolicy ${doc.metadata.name}/${r.name}`,
        program: program as CompiledExpr,
      });
    } catch (err) {
      issues.push({ path, message: `CEL syntax error: ${firstLine((err as Error).message)}` });
    }
  }
  if (issues.length > 0) throw new PolicyError('POLICY_ERR_CEL_COMPILE', issues);
  const m = spec.match;
  const match: CompiledExecPolicy['match'] = {
    ...(m.kinds ? { kinds: m.kinds } : {}),
    ...(m.namespaces ? { namespaces: m.namespaces } : {}),
    ...(m.pods ? { pods: m.pods } : {}),
    ...(m.containers ? { containers: m.containers } : {}),
    ...(m.users ? { users: m.users } : {}),
    ...(m.groups ? { groups: m.groups } : {}),
  };
  return Object.freeze({
    kind: 'ExecPolicy',
    name: doc.metadata.name,
    source,
    match,
    opaqueLines: spec.opaqueLines,
    rules: Object.freeze(rules),
    ...(spec.approval === undefined ? {} : { approval: spec.approval }),
    approvalSettings: approvalSettingsOf(spec),
  });
}

function firstLine(s: string | undefined): string {
  return (s ?? 'unknown error').split('\n')[0] ?? '';
}

/** True when the policy's `match` selects this session. */
function execPolicyMatches(p: CompiledExecPolicy, input: ExecInput): boolean {
  const m = p.match;
  if (m.kinds && !m.kinds.includes(input.kind)) return false;
  if (m.namespaces && !m.namespaces.includes(input.namespace)) return false;
  if (m.pods && !m.pods.includes(input.pod)) return false;
  if (m.containers && !m.containers.includes(input.container)) return false;
  if (m.users && !m.users.includes(input.user.username)) return false;
  if (m.groups && !m.groups.some((g) => input.user.groups.includes(g))) return false;
  return true;
}

/** The outcome of evaluating ExecPolicies: the decision plus every rule that fired. */
export interface ExecEvaluation {
  decision: Decision;
  /** Every rule that fired (deny and audit), in policy order. */
  fired: { policy: string; rule: string; action: ExecAction; message: string; error?: boolean }[];
  /** With decision.action requireApproval: the first rule that asked for it, with its policy's approval settings. */
  approval?: ApprovalRequirement;
}

function context(input: ExecInput): Record<string, unknown> {
  const u = input.user;
  const vars = {
    command: [...input.command],
    line: input.line ?? '',
    container: input.container,
    pod: input.pod,
    kind: input.kind,
    tty: input.tty,
    user: { username: u.username, uid: u.uid ?? '', groups: [...u.groups], extra: u.extra ?? {} },
  };
  return { ...vars, session: { ...vars, namespace: input.namespace } };
}

/**
 * Evaluates the rules of `phase` ('session' before the upstream opens, 'line'
 * for a typed line) of every matching policy. Pure. The first deny decides;
 * a rule whose expression fails to evaluate counts as a deny (fail closed);
 * with no deny, a requireApproval rule decides (the caller holds for approval).
 */
export function evaluateExec(policies: readonly CompiledExecPolicy[], input: ExecInput, phase: 'session' | 'line'): ExecEvaluation {
  const fired: ExecEvaluation['fired'] = [];
  const ctx = context(input);
  let deny: Decision | undefined;
  let approval: ApprovalRequirement | undefined;
  for (const p of policies) {
    if (!execPolicyMatches(p, input)) continue;
    for (const r of p.rules) {
      if (r.on !== phase) continue;
      let result: unknown;
      let error = false;
      try {
        result = r.program(ctx);
      } catch {
        error = true;
      }
      const fires = error || result !== false;
      if (!fires) continue;
      const action = error ? 'deny' : r.action;
      const message = error ? `${r.message} (the rule could not be evaluated; failing closed)` : r.message;
      fired.push({ policy: p.name, rule: r.name, action, message, ...(error ? { error } : {}) });
      if (action === 'deny' && deny === undefined) deny = { allowed: false, action: 'deny', policy: p.name, rule: r.name, message };
      if (action === 'requireApproval') approval ??= { policy: p.name, rule: r.name, approval: p.approval ?? 'an approver', reason: message, ...p.approvalSettings };
    }
  }
  // Precedence as in GuardrailPolicy: any deny, then requireApproval, then audit.
  if (deny) return { decision: deny, fired };
  if (approval) return { decision: { allowed: false, action: 'requireApproval', policy: approval.policy, rule: approval.rule, message: approval.reason }, fired, approval };
  const audits = fired.filter((f) => f.action === 'audit');
  const first = audits[0];
  return {
    decision: first ? { allowed: true, action: 'audit', policy: first.policy, rule: first.rule, message: first.message } : { allowed: true, action: 'allow' },
    fired,
  };
}

/** True when some matching policy has line rules, so typed lines must be checked. */
export function hasLineRules(policies: readonly CompiledExecPolicy[], input: ExecInput): boolean {
  return policies.some((p) => execPolicyMatches(p, input) && p.rules.some((r) => r.on === 'line'));
}

/** How to treat a line kubetrail could not follow: deny when any matching line-rule policy says so. */
export function opaqueLineDecision(policies: readonly CompiledExecPolicy[], input: ExecInput): Decision {
  for (const p of policies) {
    if (execPolicyMatches(p, input) && p.opaqueLines === 'deny' && p.rules.some((r) => r.on === 'line')) {
      return {
        allowed: false,
        action: 'deny',
        policy: p.name,
        rule: 'opaqueLines',
        message: 'this line was edited with keys kubetrail cannot follow (history, completion, search, undo, yank, quoted, meta or non-ASCII keys); retype it in full',
      };
    }
  }
  return { allowed: true, action: 'allow' };
}

/**
 * Decides one typed line: what a session's line guard asks before it
 * forwards the line's Enter. An `opaque` line (edited with keys the gateway
 * cannot follow) is denied when a matching policy says `opaqueLines: deny`;
 * with `allow` it is still judged by the rules on the text the gateway could
 * rebuild, so a line that visibly matches a deny rule never runs.
 */
export function judgeTypedLine(policies: readonly CompiledExecPolicy[], input: ExecInput, opaque: boolean): ExecEvaluation {
  // An opaque line is denied even when it looks empty: history recall or yank
  // fill the remote line without a single typed character.
  if (opaque) {
    const decision = opaqueLineDecision(policies, input);
    if (!decision.allowed) return { decision, fired: [{ policy: decision.policy ?? '', rule: decision.rule ?? '', action: 'deny', message: decision.message ?? '' }] };
  }
  return evaluateExec(policies, input, 'line');
}
