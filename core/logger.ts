/**
 * The root pino logger. Every component takes a child of it with its own
 * identifiers (uid, session, user, namespace, name). Messages are constant;
 * data goes in fields, errors as `{ err }`. Credentials are redacted here so no
 * caller can forget: authorization headers, tokens, passwords, cookies.
 */
import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger } from 'pino';

/** Paths pino censors wherever they appear in a log record. */
const REDACT_PATHS: readonly string[] = [
  'authorization',
  'token',
  'password',
  'secret',
  '*.authorization',
  '*.Authorization',
  '*.token',
  '*.password',
  '*.secret',
  '*.cookie',
  'headers.authorization',
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["sec-websocket-protocol"]',
  'headers["sec-websocket-protocol"]',
  '*.headers.authorization',
  '*.headers["sec-websocket-protocol"]',
];

/** Creates the root logger (JSON to stdout, or to `destination` in tests). */
export function createLogger(opts: { level?: LevelWithSilent; name?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  const options = {
    level: opts.level ?? 'info',
    base: { name: opts.name ?? 'kubetrail' },
    redact: { paths: [...REDACT_PATHS], censor: '[REDACTED]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return opts.destination ? pino(options, opts.destination) : pino(options);
}
