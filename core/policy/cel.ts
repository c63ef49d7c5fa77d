/**
 * CEL for kubetrail policies, on @marcbachmann/cel-js (chosen over
 * @bufbuild/cel: 3-7x faster on our expressions).
 *
 * - An expression is compiled once ({@link compileCel}, which throws a
 *   {@link PolicyError} `POLICY_ERR_CEL_COMPILE` at load time) and then
 *   evaluated many times by {@link CelProgram.evaluate}, which never throws: it
 *   returns a value or a typed error.
 * - The variables are those of Kubernetes ValidatingAdmissionPolicy
 *   (`object`, `oldObject`, `request`, `namespaceObject`, `params`) plus
 *   `variables`, all dynamically typed; an expression using any other name is
 *   rejected at compile time.
 * - Numbers: cel-js models CEL `int` as bigint and CEL `double` as number.
 *   JSON from the API server has only numbers, so `object.spec.replicas + 1`
 *   would be `double + int` (no such overload). {@link toCelValue} turns every
 *   integral JSON number into a bigint once per review, so policies can write
 *   integer arithmetic as they would for the API server; {@link fromCelValue}
 *   turns results back into JSON (bigints as numbers when safe).
 *
 * Pure: no I/O, no logging.
 */
import { Environment, Optional } from '@marcbachmann/cel-js';
import { PolicyError } from './errors.ts';
import { registerKubernetesLibraries } from './cel-k8s.ts';

/** The variable names an expression may use. */
const CEL_VARIABLES = ['object', 'oldObject', 'request', 'namespaceObject', 'params', 'variables'] as const;

/** Values bound to the variables for one evaluation (already converted by {@link toCelValue}). */
export type CelActivation = Partial<Record<(typeof CEL_VARIABLES)[number], unknown>>;

/** What an expression must produce. */
export type CelResultType = 'bool' | 'string' | 'any';

/** Why an evaluation failed. */
export interface CelEvalError {
  /** `CEL_ERR_RUNTIME`: the engine failed (no such key, no overload, division by zero...); `CEL_ERR_RESULT_TYPE`: the value is not the declared type. */
  readonly code: 'CEL_ERR_RUNTIME' | 'CEL_ERR_RESULT_TYPE';
  /** One line, safe to show to the requester (it names the expression's problem, never input values). */
  readonly message: string;
}

/** The outcome of one evaluation. */
export type CelResult<T = unknown> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: CelEvalError };

/** A compiled expression. */
export interface CelProgram<T = unknown> {
  /** The source text. */
  readonly source: string;
  /** Evaluates against an activation; never throws. */
  evaluate(activation: CelActivation): CelResult<T>;
}

let sharedEnv: Environment | undefined;

/** One environment for every policy: declares the variables as `dyn`, enables `.?` optional chaining. */
function env(): Environment {
  if (sharedEnv === undefined) {
    const e = new Environment({ enableOptionalTypes: true, homogeneousAggregateLiterals: false, unlistedVariablesAreDyn: false });
    for (const v of CEL_VARIABLES) e.registerVariable(v, 'dyn');
    registerKubernetesLibraries(e);
    sharedEnv = e;
  }
  return sharedEnv;
}

function firstLine(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return (msg.split('\n')[0] ?? '').slice(0, 300);
}

/** The full (multi-line, with a caret under the position) message of a compile error. */
function compileMessage(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.slice(0, 2000);
}

/**
 * Compiles `source`. Throws {@link PolicyError} `POLICY_ERR_CEL_COMPILE` (field
 * path `path`) when it does not parse, uses an unknown variable or function,
 * or type-checks to something other than `expect`.
 */
export function compileCel<T extends CelResultType = 'any'>(
  source: string,
  opts: { expect?: T; path?: string } = {},
): CelProgram<T extends 'bool' ? boolean : T extends 'string' ? string : unknown> {
  const expect: CelResultType = opts.expect ?? 'any';
  const path = opts.path ?? '';
  const fail = (message: string, cause?: unknown): never => {
    throw new PolicyError('POLICY_ERR_CEL_COMPILE', [{ path, message }], cause === undefined ? {} : { cause });
  };
  if (typeof source !== 'string' || source.trim() === '') fail('expression is empty');
  let parsed: ReturnType<Environment['parse']>;
  try {
    parsed = env().parse(source);
  } catch (err) {
    return fail(`does not parse: ${compileMessage(err)}`, err);
  }
  const checked = parsed.check();
  if (!checked.valid) fail(`does not type-check: ${compileMessage(checked.error)}`, checked.error);
  if (expect !== 'any' && checked.type !== undefined && checked.type !== 'dyn' && checked.type !== expect) {
    fail(`must produce ${expect}, produces ${checked.type}`);
  }
  const program = parsed;
  return {
    source,
    evaluate(activation: CelActivation) {
      let value: unknown;
      try {
        value = program(activation);
      } catch (err) {
        return { ok: false, error: { code: 'CEL_ERR_RUNTIME', message: firstLine(err) } };
      }
      if (expect === 'bool' && typeof value !== 'boolean') {
        return { ok: false, error: { code: 'CEL_ERR_RESULT_TYPE', message: `expected bool, got ${celTypeName(value)}` } };
      }
      if (expect === 'string' && typeof value !== 'string') {
        return { ok: false, error: { code: 'CEL_ERR_RESULT_TYPE', message: `expected string, got ${celTypeName(value)}` } };
      }
      return { ok: true, value: value as never };
    },
  };
}

function celTypeName(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'bigint') return 'int';
  if (typeof v === 'number') return 'double';
  if (Array.isArray(v)) return 'list';
  if (v instanceof Uint8Array) return 'bytes';
  if (typeof v === 'object') return 'map';
  return typeof v;
}

/**
 * Converts parsed JSON into CEL input: integral numbers become bigint (CEL
 * `int`); other numbers, strings, booleans and null stay as they are. Only the
 * objects and arrays on the way to an integral number are copied; every other
 * subtree is shared with `v` (most of a Pod — env lists, names, images,
 * labels — holds no number, and a full copy was about 6 % of the webhook's
 * CPU per review). The result is plain objects and arrays, which cel-js walks
 * at full speed (a lazily converting Proxy was tried: cel-js's `for…in` and
 * `hasOwn` on Proxies made it no faster). Never mutates `v`; treat the result
 * as read-only (it may be `v`).
 */
export function toCelValue(v: unknown): unknown {
  if (typeof v === 'number') return Number.isInteger(v) ? BigInt(v) : v;
  if (v === null || typeof v !== 'object') return v;
  return celContainer(v);
}

/** `v` itself when nothing below it changes, else a shallow copy with the changed members replaced. */
function celContainer(v: object): object {
  if (Array.isArray(v)) {
    let out: unknown[] | undefined;
    for (let i = 0; i < v.length; i++) {
      const e: unknown = v[i];
      let c: unknown = e;
      if (typeof e === 'number') c = Number.isInteger(e) ? BigInt(e) : e;
      else if (e !== null && typeof e === 'object') c = celContainer(e);
      if (c !== e) (out ??= v.slice())[i] = c;
    }
    return out ?? v;
  }
  const o = v as Record<string, unknown>;
  let out: Record<string, unknown> | undefined;
  for (const k in o) {
    if (!Object.hasOwn(o, k)) continue;
    const e = o[k];
    let c: unknown = e;
    if (typeof e === 'number') c = Number.isInteger(e) ? BigInt(e) : e;
    else if (e !== null && typeof e === 'object') c = celContainer(e);
    if (c === e) continue;
    // The spread copies an own "__proto__" member (JSON.parse makes one) as an own member, so this assigns to it, not to the prototype.
    out ??= { ...o };
    out[k] = c;
  }
  return out ?? v;
}

/**
 * Converts a CEL result back to JSON: bigint to number when it is a safe
 * integer (else its decimal string), Map to object, an Optional to its value
 * or null, bytes to base64.
 */
export function fromCelValue(v: unknown): unknown {
  if (typeof v === 'bigint') return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v.toString();
  if (v === null || typeof v !== 'object') return v;
  if (v instanceof Optional) return v.hasValue() ? fromCelValue(v.value()) : null;
  if (v instanceof Uint8Array) return Buffer.from(v).toString('base64');
  if (Array.isArray(v)) return v.map(fromCelValue);
  if (v instanceof Map) {
    const out: Record<string, unknown> = {};
    for (const [k, val] of v) out[String(k)] = fromCelValue(val);
    return out;
  }
  const out: Record<string, unknown> = {};
  for (const [k, val] of Object.entries(v)) out[k] = fromCelValue(val);
  return out;
}
