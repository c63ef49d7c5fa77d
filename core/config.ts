/**
 * kubetrail configuration: one YAML file, every field also settable through a
 * `KUBETRAIL_*` environment variable, validated in full before anything listens.
 *
 * This is the only module that reads `process.env` (callers pass it in).
 * Every limit has its default here, in one literal.
 *
 * Over 400 lines because the schema is the one place every setting and its
 * default is written down (CONVENTIONS: every limit explicit, its default in
 * one place); the loader below it is about 150 lines. Sections owned by one
 * feature live beside it (config-console.ts: index and console;
 * config-cluster.ts: approvals and selfManaged), each with its defaults in one
 * literal.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ConfigError, type ConfigIssue } from './errors.ts';
import { consoleSection, indexSection } from './config-console.ts';
import { approvals, selfManaged } from './config-cluster.ts';

const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.\-]*):\d{1,5}$/, 'expected host:port, e.g. 0.0.0.0:8443');

const tls = z.strictObject({
  certFile: z.string().min(1),
  keyFile: z.string().min(1),
});

const duration = z.number().int().nonnegative();

const kafka = z.strictObject({
  brokers: z.array(z.string().min(1)).min(1, 'at least one broker'),
  clientId: z.string().default('kubetrail'),
  topics: z
    .strictObject({
      events: z.string().min(1).default('kubetrail.events'),
      sessions: z.string().min(1).default('kubetrail.sessions'),
    })
    .default({ events: 'kubetrail.events', sessions: 'kubetrail.sessions' }),
  format: z.enum(['native', 'k8s-audit', 'ocsf']).default('native'),
  compression: z.enum(['none', 'gzip']).default('none'),
  /** Producer batching: at most this many events in one produce call. */
  batchMaxEvents: z.number().int().positive().default(2000),
  /** Producer batching: at most about this many bytes in one produce call (the broker's message.max.bytes, 1 MiB by default, bounds one partition's batch). */
  batchMaxBytes: z.number().int().positive().default(900 * 1024),
  /** Producer batching: wait at most this long (ms) to fill a batch. */
  lingerMs: duration.default(2),
  /**
   * When an emit (and so an admission answer) completes: `kafka`, once the
   * broker acknowledged the event (acks=all); `local`, once it is group-
   * committed to the spool on the pod's volume (O_DSYNC), then shipped to
   * Kafka in order in the background, one chain across both. What each
   * survives: docs/webhook.md, "Durability".
   */
  durability: z.enum(['kafka', 'local']).default('kafka'),
  /** Past this deadline (ms) without an ack, an event is made durable in the spool instead. */
  ackDeadlineMs: duration.default(3000),
  /**
   * fdatasync the in-flight journal before each produce request, so a power
   * cut (not only a killed process) can never fork the chain. Off by
   * default: on a disk shared with busy writers one fdatasync can take tens
   * of milliseconds, and every produce request waits for it (docs/benchmarks.md).
   */
  journalSync: z.boolean().default(false),
  connectTimeoutMs: duration.default(3000),
  requestTimeoutMs: duration.default(10000),
  /** Memory bound: past this many bytes of events waiting for Kafka, emit() waits (backpressure). */
  maxBufferedBytes: z.number().int().positive().default(64 * 1024 * 1024),
  /** Brokers unreachable when the pipeline starts: `spool` (start, spool, drain later) or `fail` (refuse to start). */
  onUnreachableAtStart: z.enum(['spool', 'fail']).default('spool'),
  ssl: z
    .strictObject({
      caFile: z.string().optional(),
      certFile: z.string().optional(),
      keyFile: z.string().optional(),
      rejectUnauthorized: z.boolean().default(true),
    })
    .optional(),
  sasl: z
    .strictObject({
      mechanism: z.enum(['plain', 'scram-sha-256', 'scram-sha-512']),
      username: z.string().min(1),
      password: z.string().optional(),
      passwordFile: z.string().optional(),
    })
    .refine((s) => (s.password === undefined) !== (s.passwordFile === undefined), {
      message: 'set exactly one of password or passwordFile',
    })
    .optional(),
});

const spool = z
  .strictObject({
    /** Disk bound of the spool (bytes). */
    maxBytes: z.number().int().positive().default(1024 * 1024 * 1024),
    /** What happens when the spool is full: refuse new work, or drop with a metric and a log line. */
    overflow: z.enum(['fail-closed', 'drop']).default('fail-closed'),
    segmentBytes: z.number().int().positive().default(64 * 1024 * 1024),
    /** Group commit window (ms): events arriving within it share one fsync. */
    groupCommitMs: duration.default(2),
  })
  .default({ maxBytes: 1024 * 1024 * 1024, overflow: 'fail-closed', segmentBytes: 64 * 1024 * 1024, groupCommitMs: 2 });

const localLog = z
  .strictObject({
    segmentBytes: z.number().int().positive().default(64 * 1024 * 1024),
    retentionBytes: z.number().int().positive().default(10 * 1024 * 1024 * 1024),
    retentionHours: z.number().positive().default(24 * 30),
  })
  .default({ segmentBytes: 64 * 1024 * 1024, retentionBytes: 10 * 1024 * 1024 * 1024, retentionHours: 24 * 30 });

const signing = z
  .strictObject({
    /** Ed25519 private key (PKCS#8 PEM). Absent: a dev key is generated under dataDir, with a warning. */
    keyFile: z.string().optional(),
    /** A signed chain.checkpoint every this many events ... */
    checkpointEvery: z.number().int().positive().default(1000),
    /** ... or every this many ms, whichever comes first. */
    checkpointIntervalMs: z.number().int().positive().default(10000),
    /**
     * Directory where the latest signed head of each chain is kept (replaced
     * after every checkpoint and at shutdown), for `kubetrail verify
     * --signed-heads`. Put it where the recorded agent cannot write (another
     * volume, a write-only mount); absent: no signed head is kept.
     */
    headDir: z.string().optional(),
  })
  .default({ checkpointEvery: 1000, checkpointIntervalMs: 10000 });

const policies = z
  .strictObject({
    dir: z.string().default('policies'),
    /** Debounce (ms) between a change on disk and the reload. */
    reloadDebounceMs: duration.default(200),
  })
  .default({ dir: 'policies', reloadDebounceMs: 200 });

const masking = z
  .strictObject({
    /** Env var names whose values are masked in events (case-insensitive regexes). */
    envNamePatterns: z.array(z.string()).default(['PASSWORD', 'SECRET', 'TOKEN', 'KEY', 'CREDENTIAL']),
    /** Extra JSON paths (dotted, `*` for any key or index) masked in captured objects. */
    paths: z.array(z.string()).default([]),
  })
  .default({ envNamePatterns: ['PASSWORD', 'SECRET', 'TOKEN', 'KEY', 'CREDENTIAL'], paths: [] });

const webhook = z
  .strictObject({
    listen: hostPort.default('0.0.0.0:8443'),
    health: hostPort.default('0.0.0.0:8080'),
    tls: tls.optional(),
    /** Largest AdmissionReview accepted: object and oldObject can each be 3 MiB, JSON-escaped. */
    maxBodyBytes: z.number().int().positive().default(8 * 1024 * 1024),
    /** Used when the API server sends no ?timeout= (ms). */
    defaultTimeoutMs: z.number().int().positive().default(10000),
    /** When an event cannot be made durable: deny reviews of guardrailed resources (true) or admit them. */
    failClosed: z.boolean().default(true),
    /** Name of the webhook as registered; prefixes annotations. */
    name: z.string().default('kubetrail.io'),
    /**
     * Where the webhook reads Namespace objects for `namespaceObject` and namespace label selectors
     * (needs `get namespaces`). Absent: not looked up; label selectors then match (fail closed).
     */
    namespaceLookup: z
      .strictObject({
        kubeconfig: z.string().optional(),
        context: z.string().optional(),
        inCluster: z.boolean().default(false),
        cacheTtlMs: duration.default(30000),
      })
      .optional(),
  })
  .default({
    listen: '0.0.0.0:8443',
    health: '0.0.0.0:8080',
    maxBodyBytes: 8 * 1024 * 1024,
    defaultTimeoutMs: 10000,
    failClosed: true,
    name: 'kubetrail.io',
  });

const claimMapping = z.strictObject({
  claim: z.string().optional(),
  expression: z.string().optional(),
  prefix: z.string().optional(),
});

const jwtIssuer = z.strictObject({
  issuer: z.strictObject({
    url: z.url({ protocol: /^https$/ }),
    discoveryURL: z.url().optional(),
    certificateAuthority: z.string().optional(),
    audiences: z.array(z.string().min(1)).min(1),
    audienceMatchPolicy: z.enum(['MatchAny']).optional(),
  }),
  claimValidationRules: z
    .array(
      z.strictObject({
        claim: z.string().optional(),
        requiredValue: z.string().optional(),
        expression: z.string().optional(),
        message: z.string().optional(),
      }),
    )
    .default([]),
  claimMappings: z.strictObject({
    username: claimMapping,
    groups: claimMapping.optional(),
    uid: claimMapping.optional(),
    extra: z.array(z.strictObject({ key: z.string(), valueExpression: z.string() })).default([]),
  }),
  userValidationRules: z.array(z.strictObject({ expression: z.string(), message: z.string().optional() })).default([]),
});

/** Defaults of proxy.exec (the stream relay), in one literal. */
const EXEC_DEFAULTS = {
  maxFrameBytes: 16 * 1024 * 1024,
  chunkBytes: 32 * 1024,
  maskHoldMs: 20,
  recordFlushMs: 50,
  maxRecordedBytes: 1024 * 1024 * 1024,
  maxInflightRecordBytes: 8 * 1024 * 1024,
  maxLineBytes: 8192,
  upstreamTimeoutMs: 15000,
  recordCompression: 'deflate-raw' as 'deflate-raw' | 'none',
};

/** Defaults of `proxy.connections`: slow and greedy clients (each open TLS connection costs the gateway about 120 KiB). */
const PROXY_CONNECTION_DEFAULTS = { headersTimeoutMs: 15000, maxConnections: 2048, maxConnectionsPerSource: 256 };

const proxy = z
  .strictObject({
    listen: hostPort.default('0.0.0.0:9443'),
    health: hostPort.default('0.0.0.0:8081'),
    tls: tls.optional(),
    upstream: z
      .strictObject({
        kubeconfig: z.string().optional(),
        context: z.string().optional(),
        inCluster: z.boolean().default(false),
      })
      .default({ inCluster: false }),
    authn: z
      .strictObject({
        jwt: z.array(jwtIssuer).default([]),
        tokenReview: z.boolean().default(true),
        tokenReviewCacheTtlMs: duration.default(10000),
        /** Allowed clock skew for exp/nbf (s); bounded. */
        leewaySeconds: z.number().int().min(0).max(300).default(60),
      })
      .default({ jwt: [], tokenReview: true, tokenReviewCacheTtlMs: 10000, leewaySeconds: 60 }),
    /** Write bodies up to this size are recorded (masked) in api.request events. */
    maxRecordedBodyBytes: z.number().int().nonnegative().default(1024 * 1024),
    /** Discovery calls (/api, /apis, /openapi, /version): record each, or one in N. */
    discoverySampleRate: z.number().int().positive().default(1),
    requestTimeoutMs: z.number().int().positive().default(60000),
    connections: z
      .strictObject({
        /** The TLS handshake, and then each request's headers, must arrive within this (ms); long-running requests are not cut once their headers are in. */
        headersTimeoutMs: z.number().int().positive().default(PROXY_CONNECTION_DEFAULTS.headersTimeoutMs),
        /** Open client connections on the listener; more are dropped at accept. */
        maxConnections: z.number().int().positive().default(PROXY_CONNECTION_DEFAULTS.maxConnections),
        /** Open client connections from one source address; more are closed at accept. */
        maxConnectionsPerSource: z.number().int().positive().default(PROXY_CONNECTION_DEFAULTS.maxConnectionsPerSource),
      })
      .default(PROXY_CONNECTION_DEFAULTS),
    exec: z
      .strictObject({
        maxFrameBytes: z.number().int().positive().default(16 * 1024 * 1024),
        /** Largest session.data chunk recorded (bytes); larger frames are split. */
        chunkBytes: z.number().int().positive().default(32 * 1024),
        /** How long masking may hold back output to catch a secret split across frames (ms). */
        maskHoldMs: duration.default(20),
        /** Group commit window of session recording (ms): stream bytes wait at most this long before they are emitted. */
        recordFlushMs: duration.default(50),
        /** Recorded bytes per session (all streams); past it the stream still flows but session.end says recordTruncated. */
        maxRecordedBytes: z.number().int().positive().default(1024 * 1024 * 1024),
        /** Recording bytes emitted but not yet durable before the relay pauses the stream (backpressure). */
        maxInflightRecordBytes: z.number().int().positive().default(8 * 1024 * 1024),
        /** Longest typed line the tty line editor rebuilds; longer lines are treated as opaque. */
        maxLineBytes: z.number().int().positive().default(8192),
        /** How long to wait for the upstream WebSocket to open (ms). */
        upstreamTimeoutMs: z.number().int().positive().default(15000),
        /**
         * session.data chunks are raw-deflated (level 1, off the event loop) when that makes
         * them at least 10% smaller: recording cost is per stored byte (canonical JSON, hash, write).
         */
        recordCompression: z.enum(['deflate-raw', 'none']).default('deflate-raw'),
      })
      .default(EXEC_DEFAULTS),
  })
  .default({
    listen: '0.0.0.0:9443',
    health: '0.0.0.0:8081',
    upstream: { inCluster: false },
    authn: { jwt: [], tokenReview: true, tokenReviewCacheTtlMs: 10000, leewaySeconds: 60 },
    maxRecordedBodyBytes: 1024 * 1024,
    discoverySampleRate: 1,
    requestTimeoutMs: 60000,
    connections: PROXY_CONNECTION_DEFAULTS,
    exec: EXEC_DEFAULTS,
  });

/** The schema of the whole configuration file. */
const configSchema = z
  .strictObject({
    cluster: z.string().min(1).default('dev'),
    instance: z.string().min(1).optional(),
    dataDir: z.string().min(1).default('.kubetrail'),
    /**
     * After SIGTERM, the webhook and the gateway stay up this long (s), not
     * ready and answering with `Connection: close`, before they stop
     * listening (core/drain.ts); 0 stops at once. Pods' terminationGracePeriodSeconds
     * covers this plus the 25 s shutdown deadline.
     */
    shutdownDrainSeconds: z.number().int().nonnegative().max(300).default(10),
    log: z
      .strictObject({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info') })
      .default({ level: 'info' }),
    kafka: kafka.optional(),
    spool,
    localLog,
    signing,
    policies,
    masking,
    webhook,
    proxy,
    approvals: approvals.optional(),
    selfManaged: selfManaged.optional(),
    index: indexSection,
    console: consoleSection,
  })
  .superRefine((cfg, ctx) => {
    // Rules spanning fields.
    const sm = cfg.selfManaged;
    if (sm?.inCluster && sm.kubeconfig !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['selfManaged'], message: 'set either inCluster or kubeconfig, not both' });
    }
    if (sm?.tls) {
      if (sm.tls.renewDeadlineSeconds >= sm.tls.leaseDurationSeconds) ctx.addIssue({ code: 'custom', path: ['selfManaged', 'tls', 'renewDeadlineSeconds'], message: 'must be below leaseDurationSeconds' });
      if (sm.tls.rolloverGraceSeconds <= sm.tls.pollIntervalSeconds) ctx.addIssue({ code: 'custom', path: ['selfManaged', 'tls', 'rolloverGraceSeconds'], message: 'must exceed pollIntervalSeconds, or a replica could serve a certificate from a CA the API server does not trust yet' });
      if (sm.tls.caRenewBeforeDays >= sm.tls.caValidityDays) ctx.addIssue({ code: 'custom', path: ['selfManaged', 'tls', 'caRenewBeforeDays'], message: 'must be below caValidityDays' });
      if (sm.tls.certRenewBeforeDays >= sm.tls.certValidityDays) ctx.addIssue({ code: 'custom', path: ['selfManaged', 'tls', 'certRenewBeforeDays'], message: 'must be below certValidityDays' });
      if (sm.tls.dnsNames.length + sm.tls.ipAddresses.length === 0) ctx.addIssue({ code: 'custom', path: ['selfManaged', 'tls', 'dnsNames'], message: 'at least one DNS name or IP address' });
    }
    if (cfg.webhook.namespaceLookup?.inCluster && cfg.webhook.namespaceLookup.kubeconfig !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['webhook', 'namespaceLookup'], message: 'set either inCluster or kubeconfig, not both' });
    }
    if (cfg.proxy.upstream.inCluster && cfg.proxy.upstream.kubeconfig !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['proxy', 'upstream'], message: 'set either inCluster or kubeconfig, not both' });
    }
    if (cfg.kafka?.ssl && (cfg.kafka.ssl.certFile === undefined) !== (cfg.kafka.ssl.keyFile === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['kafka', 'ssl'], message: 'certFile and keyFile go together' });
    }
    for (const [i, j] of cfg.proxy.authn.jwt.entries()) {
      if ((j.claimMappings.username.claim === undefined) === (j.claimMappings.username.expression === undefined)) {
        ctx.addIssue({
          code: 'custom',
          path: ['proxy', 'authn', 'jwt', i, 'claimMappings', 'username'],
          message: 'set exactly one of claim or expression',
        });
      }
      if (j.claimMappings.username.claim !== undefined && j.claimMappings.username.prefix === undefined) {
        // The API server's structured config defaults nothing: the prefix must be explicit.
        ctx.addIssue({
          code: 'custom',
          path: ['proxy', 'authn', 'jwt', i, 'claimMappings', 'username', 'prefix'],
          message: 'required when claim is set (use "" for none)',
        });
      }
    }
  });

/** Fully validated, defaulted and frozen configuration. */
export type Config = z.output<typeof configSchema>;
/** What a user may write in the file (defaults optional). */
export type ConfigInput = z.input<typeof configSchema>;

/** Where configuration comes from; all optional, so tests can pass only what they need. */
export interface ConfigSources {
  /** Environment (only KUBETRAIL_* keys are read). */
  env?: Readonly<Record<string, string | undefined>>;
  /** Command-line words; `--config F` names the file. */
  argv?: readonly string[];
  /** Path of the YAML file; overrides `--config` and `KUBETRAIL_CONFIG`. */
  file?: string;
  /** An already-parsed document, used instead of a file (tests, `kubetrail start`). */
  document?: unknown;
}

function deepFreeze<T>(o: T): T {
  if (o !== null && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o as Record<string, unknown>)) deepFreeze(v);
  }
  return o;
}

function upperSnake(key: string): string {
  return key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();
}

/** Unwraps optional/default/pipe wrappers (zod's public classes) to reach an object schema's shape, if any. */
function objectShape(schema: z.ZodType): Record<string, z.ZodType> | undefined {
  let s: z.ZodType = schema;
  for (let i = 0; i < 10; i++) {
    if (s instanceof z.ZodObject) return s.shape as Record<string, z.ZodType>;
    if (s instanceof z.ZodOptional || s instanceof z.ZodDefault || s instanceof z.ZodNullable) s = s.unwrap() as z.ZodType;
    else if (s instanceof z.ZodPipe) s = s.in as z.ZodType;
    else return undefined;
  }
  return undefined;
}

/** Every settable field: env-var suffix → path. Arrays and leaves are settable; objects are walked. */
function envPaths(schema: z.ZodType, prefix: string[] = [], out = new Map<string, string[]>()): Map<string, string[]> {
  const shape = objectShape(schema);
  if (shape === undefined) {
    out.set(prefix.map(upperSnake).join('_'), prefix);
    return out;
  }
  for (const [k, v] of Object.entries(shape)) envPaths(v, [...prefix, k], out);
  return out;
}

const ENV_PATHS = envPaths(configSchema);

function parseEnvValue(raw: string): unknown {
  const trimmed = raw.trim();
  if (trimmed.startsWith('[') || trimmed.startsWith('{')) return parseYaml(trimmed);
  return parseYaml(trimmed) ?? '';
}

function setPath(doc: Record<string, unknown>, p: readonly string[], value: unknown): void {
  let cur: Record<string, unknown> = doc;
  for (const k of p.slice(0, -1)) {
    const next = cur[k];
    if (next === null || typeof next !== 'object' || Array.isArray(next)) cur[k] = {};
    cur = cur[k] as Record<string, unknown>;
  }
  cur[p[p.length - 1] as string] = value;
}

function isStringArrayField(p: readonly string[]): boolean {
  const key = p.join('.');
  return key === 'kafka.brokers' || key.endsWith('Patterns') || key === 'masking.paths' || key === 'console.viewerGroups';
}

/** Reads `--config F` / `--config=F` out of argv. */
export function configFileFromArgv(argv: readonly string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--config') return argv[i + 1];
    if (a.startsWith('--config=')) return a.slice('--config='.length);
  }
  return undefined;
}

/**
 * Loads the configuration: the YAML file (if any), then `KUBETRAIL_*` env
 * overrides, validated as a whole. Throws a {@link ConfigError} listing every
 * problem with its field path; the result is deeply frozen.
 */
export function loadConfig(sources: ConfigSources = {}): Config {
  const env = sources.env ?? {};
  const issues: ConfigIssue[] = [];
  const file = sources.file ?? configFileFromArgv(sources.argv ?? []) ?? env['KUBETRAIL_CONFIG'];
  let doc: Record<string, unknown> = {};
  if (sources.document !== undefined) {
    doc = structuredClone(sources.document) as Record<string, unknown>;
  } else if (file !== undefined) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError('CFG_ERR_FILE', [{ path: '', message: `cannot read config file ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}` }], { cause: err });
    }
    try {
      const parsed: unknown = parseYaml(text);
      if (parsed !== null && parsed !== undefined) {
        if (typeof parsed !== 'object' || Array.isArray(parsed)) {
          throw new ConfigError('CFG_ERR_FILE', [{ path: '', message: `${file}: the document must be a mapping` }]);
        }
        doc = parsed as Record<string, unknown>;
      }
    } catch (err) {
      if (err instanceof ConfigError) throw err;
      throw new ConfigError('CFG_ERR_FILE', [{ path: '', message: `${file}: not valid YAML: ${(err as Error).message}` }], { cause: err });
    }
  }
  if (doc === null || typeof doc !== 'object') doc = {};

  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith('KUBETRAIL_') || raw === undefined || name === 'KUBETRAIL_CONFIG') continue;
    const suffix = name.slice('KUBETRAIL_'.length);
    const p = ENV_PATHS.get(suffix);
    if (p === undefined) {
      issues.push({ path: name, message: 'unknown setting (no config field has this name)' });
      continue;
    }
    let value: unknown;
    try {
      value = isStringArrayField(p) && !raw.trim().startsWith('[') ? raw.split(',').map((s) => s.trim()).filter(Boolean) : parseEnvValue(raw);
    } catch {
      issues.push({ path: name, message: 'not a valid value' });
      continue;
    }
    setPath(doc, p, value);
  }

  const result = configSchema.safeParse(doc);
  if (!result.success) {
    for (const i of result.error.issues) issues.push({ path: i.path.map(String).join('.'), message: i.message });
  }
  if (issues.length > 0 || !result.success) throw new ConfigError('CFG_ERR_INVALID', issues);

  const cfg = result.data;
  // Relative paths in a file are relative to the file, as users expect of kustomize-style configs.
  const base = file !== undefined && sources.document === undefined ? path.dirname(path.resolve(file)) : process.cwd();
  const abs = (p: string): string => (path.isAbsolute(p) || p.startsWith('~') ? p : path.resolve(base, p));
  cfg.dataDir = abs(cfg.dataDir);
  cfg.policies.dir = abs(cfg.policies.dir);
  if (cfg.signing.keyFile) cfg.signing.keyFile = abs(cfg.signing.keyFile);
  if (cfg.signing.headDir) cfg.signing.headDir = abs(cfg.signing.headDir);
  if (cfg.selfManaged?.kubeconfig) cfg.selfManaged.kubeconfig = abs(cfg.selfManaged.kubeconfig);
  if (cfg.webhook.namespaceLookup?.kubeconfig) cfg.webhook.namespaceLookup.kubeconfig = abs(cfg.webhook.namespaceLookup.kubeconfig);
  if (cfg.approvals?.kubeconfig) cfg.approvals.kubeconfig = abs(cfg.approvals.kubeconfig);
  cfg.index.file = cfg.index.file === '' ? path.join(cfg.dataDir, 'index', 'events.sqlite') : abs(cfg.index.file);
  if (cfg.console.upstream?.kubeconfig) cfg.console.upstream.kubeconfig = abs(cfg.console.upstream.kubeconfig);
  for (const t of [cfg.webhook.tls, cfg.proxy.tls, cfg.console.tls]) {
    if (t) {
      t.certFile = abs(t.certFile);
      t.keyFile = abs(t.keyFile);
    }
  }
  return deepFreeze(cfg);
}
