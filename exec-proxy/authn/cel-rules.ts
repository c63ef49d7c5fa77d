/**
 * CEL expressions of the AuthenticationConfiguration (claim validation, claim
 * mappings, user validation), compiled once at start so a bad expression
 * fails the configuration, not a request. Pure.
 */
import { parse } from '@marcbachmann/cel-js';
import { ConfigError } from '../../core/errors.ts';

/** A compiled expression: evaluates against named variables. */
export type CompiledExpression = (vars: Record<string, unknown>) => unknown;

/** Compiles `source`; a syntax error becomes a ConfigError naming `fieldPath`. */
export function compileExpression(source: string, fieldPath: string): CompiledExpression {
  try {
    const program = parse(source);
    return (vars) => program(vars);
  } catch (err) {
    throw new ConfigError('CFG_ERR_INVALID', [{ path: fieldPath, message: `invalid CEL expression: ${(err as Error).message.split('\n')[0] ?? ''}` }], { cause: err });
  }
}

/** Converts a CEL result to JSON-like JS values (cel-js returns bigint for ints). */
export function celToJs(v: unknown): unknown {
  if (typeof v === 'bigint') return Number(v);
  if (Array.isArray(v)) return v.map(celToJs);
  if (v instanceof Map) return Object.fromEntries([...v.entries()].map(([k, x]) => [String(k), celToJs(x)]));
  return v;
}
