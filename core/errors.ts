/**
 * Error bases shared by every area of kubetrail. Each area has one class with a
 * literal-union `code`; the HTTP status (or WebSocket close code) travels on the
 * error so that one place can map errors to responses. Messages never carry a
 * token or a secret, and are never matched on.
 */

/** Base for every kubetrail error: a stable `code`, an HTTP status, the cause. */
export class KubetrailError<C extends string = string> extends Error {
  readonly code: C;
  readonly status: number;
  constructor(code: C, message: string, options: { status?: number; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.status = options.status ?? 500;
  }
}

/** Codes of configuration errors. */
export type ConfigErrorCode = 'CFG_ERR_INVALID' | 'CFG_ERR_FILE' | 'CFG_ERR_ENV' | 'CFG_ERR_ARGV';

/** One problem in the configuration, with the dotted path of the field. */
export interface ConfigIssue {
  readonly path: string;
  readonly message: string;
}

/** Configuration could not be loaded; `issues` lists every problem found. */
export class ConfigError extends KubetrailError<ConfigErrorCode> {
  readonly issues: readonly ConfigIssue[];
  constructor(code: ConfigErrorCode, issues: readonly ConfigIssue[], options: { cause?: unknown } = {}) {
    super(code, `invalid configuration:\n${issues.map((i) => `  - ${i.path || '(root)'}: ${i.message}`).join('\n')}`, options);
    this.issues = issues;
  }
}
