/**
 * Builds the kafkajs client from `config.kafka` (brokers, TLS, SASL
 * PLAIN/SCRAM) and classifies connection failures into SinkErrors that name
 * the setting at fault. kafkajs logs go to pino at warn and above.
 */
import { readFileSync } from 'node:fs';
import { Kafka, logLevel, type KafkaConfig, type SASLOptions, type logCreator } from 'kafkajs';
import type { Config } from '../config.ts';
import type { Logger } from '../logger.ts';
import { SinkError } from './errors.ts';

/** `config.kafka` when set. */
export type KafkaSettings = NonNullable<Config['kafka']>;

function readSetting(file: string, setting: string, code: 'SINK_ERR_KAFKA_TLS' | 'SINK_ERR_KAFKA_AUTH'): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new SinkError(code, `${setting}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { setting, cause: err });
  }
}

function pinoLogCreator(log: Logger): logCreator {
  return () => ({ level, log: entry }) => {
    const { message, ...rest } = entry;
    // kafkajs puts broker addresses and error text in fields; never credentials.
    const fields = { kafkajs: entry.namespace, broker: (rest as { broker?: unknown }).broker, error: (rest as { error?: unknown }).error };
    if (level === logLevel.ERROR) log.error(fields, `kafkajs: ${message}`);
    else if (level === logLevel.WARN) log.warn(fields, `kafkajs: ${message}`);
    else log.debug(fields, `kafkajs: ${message}`);
  };
}

/** Creates the kafkajs client; throws SinkError when TLS/SASL files cannot be read. */
export function createKafka(k: KafkaSettings, log: Logger, opts: { clientIdSuffix?: string; retries?: number; quiet?: boolean } = {}): Kafka {
  const cfg: KafkaConfig = {
    clientId: k.clientId + (opts.clientIdSuffix ?? ''),
    brokers: [...k.brokers],
    connectionTimeout: k.connectTimeoutMs,
    requestTimeout: k.requestTimeoutMs,
    logLevel: opts.quiet ? logLevel.NOTHING : logLevel.WARN,
    logCreator: pinoLogCreator(log),
    retry: { initialRetryTime: 100, maxRetryTime: 2000, retries: opts.retries ?? 5 },
  };
  if (k.ssl !== undefined) {
    cfg.ssl = {
      rejectUnauthorized: k.ssl.rejectUnauthorized,
      ...(k.ssl.caFile !== undefined ? { ca: [readSetting(k.ssl.caFile, 'kafka.ssl.caFile', 'SINK_ERR_KAFKA_TLS')] } : {}),
      ...(k.ssl.certFile !== undefined ? { cert: readSetting(k.ssl.certFile, 'kafka.ssl.certFile', 'SINK_ERR_KAFKA_TLS') } : {}),
      ...(k.ssl.keyFile !== undefined ? { key: readSetting(k.ssl.keyFile, 'kafka.ssl.keyFile', 'SINK_ERR_KAFKA_TLS') } : {}),
    };
  }
  if (k.sasl !== undefined) {
    const password = k.sasl.password ?? readSetting(k.sasl.passwordFile as string, 'kafka.sasl.passwordFile', 'SINK_ERR_KAFKA_AUTH').trim();
    cfg.sasl = { mechanism: k.sasl.mechanism, username: k.sasl.username, password } as SASLOptions;
  }
  return new Kafka(cfg);
}

/**
 * Connects a short-lived admin client to check reachability and
 * credentials. Resolves when the cluster answered; throws a SinkError naming
 * `kafka.sasl`, `kafka.ssl` or `kafka.brokers` otherwise.
 */
export async function probeKafka(k: KafkaSettings, log: Logger): Promise<void> {
  const kafka = createKafka(k, log, { clientIdSuffix: '-probe', retries: 1, quiet: true });
  const admin = kafka.admin();
  try {
    await admin.connect();
    await admin.describeCluster();
  } catch (err) {
    throw classifyKafkaError(err, k);
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

function chain(err: unknown): unknown[] {
  const out: unknown[] = [];
  let e: unknown = err;
  for (let i = 0; i < 6 && e !== undefined && e !== null; i++) {
    out.push(e);
    e = (e as { cause?: unknown; originalError?: unknown }).originalError ?? (e as { cause?: unknown }).cause;
  }
  return out;
}

/** Maps a kafkajs error to a SinkError naming the setting at fault (matching on error names/codes, never on text). */
function classifyKafkaError(err: unknown, k: KafkaSettings): SinkError {
  for (const e of chain(err)) {
    const name = (e as { name?: string }).name ?? '';
    const code = (e as { code?: string }).code ?? '';
    const type = (e as { type?: string }).type ?? '';
    if (name === 'KafkaJSSASLAuthenticationError' || type === 'SASL_AUTHENTICATION_FAILED' || type === 'ILLEGAL_SASL_STATE' || type === 'UNSUPPORTED_SASL_MECHANISM') {
      return new SinkError('SINK_ERR_KAFKA_AUTH', `kafka.sasl: the broker rejected the ${k.sasl?.mechanism ?? 'SASL'} credentials of user ${k.sasl?.username ?? '(none)'}`, { setting: 'kafka.sasl', cause: err });
    }
    if (/^(ERR_SSL_|ERR_TLS_|CERT_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_)/.test(code)) {
      return new SinkError('SINK_ERR_KAFKA_TLS', `kafka.ssl: TLS handshake with kafka.brokers failed (${code})`, { setting: 'kafka.ssl', cause: err });
    }
  }
  return new SinkError('SINK_ERR_KAFKA_UNREACHABLE', `kafka.brokers: cannot reach ${k.brokers.join(',')} within kafka.connectTimeoutMs=${k.connectTimeoutMs}`, { setting: 'kafka.brokers', cause: err });
}

/** Broker error types that condemn the records of a request, not the connection. */
const RECORD_ERROR_TYPES = new Set(['MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE', 'INVALID_RECORD', 'CORRUPT_MESSAGE', 'INVALID_TIMESTAMP']);

/**
 * The broker's record-level error type (e.g. MESSAGE_TOO_LARGE) when a
 * produce failed because of what was sent, or undefined for anything else
 * (connection, auth, leadership: retrying later can succeed).
 */
export function recordErrorType(err: unknown): string | undefined {
  for (const e of chain(err)) {
    const type = (e as { type?: unknown }).type;
    if (typeof type === 'string' && RECORD_ERROR_TYPES.has(type)) return type;
  }
  return undefined;
}
