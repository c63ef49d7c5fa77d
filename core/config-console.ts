/**
 * The `index` and `console` sections of the configuration (kept apart from
 * config.ts so the console's settings merge cleanly; config.ts composes them).
 * Every default is in one literal here.
 */
import { z } from 'zod';

const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.\-]*):\d{1,5}$/, 'expected host:port, e.g. 0.0.0.0:9444');

/** Defaults of `index` and `console`, in one literal. */
export const CONSOLE_DEFAULTS = {
  index: { file: '', feed: true },
  console: {
    listen: '0.0.0.0:9444',
    health: '0.0.0.0:8082',
    sessionTtlMs: 8 * 3600_000,
    accessCacheMs: 30_000,
    viewerGroups: [] as string[],
    oidc: [] as { issuer: string; clientId: string; clientSecret?: string; scopes: string[] }[],
    maxPageEvents: 200,
  },
};

/** `index`: the embedded index of the trail (core/index). */
export const indexSection = z
  .strictObject({
    /** The SQLite file; empty: `<dataDir>/index/events.sqlite`. */
    file: z.string().default(CONSOLE_DEFAULTS.index.file),
    /** The console feeds the index from the trail continuously; false: something else does. */
    feed: z.boolean().default(CONSOLE_DEFAULTS.index.feed),
  })
  .default(CONSOLE_DEFAULTS.index);

/** One OIDC client the console logs in with (authorization code + PKCE); the issuer must be one of proxy.authn.jwt. */
const oidcClient = z.strictObject({
  issuer: z.url({ protocol: /^https$/ }),
  clientId: z.string().min(1),
  /** Confidential clients only; a public client uses PKCE alone. */
  clientSecret: z.string().optional(),
  scopes: z.array(z.string().min(1)).default(['openid', 'profile', 'groups']),
});

/** `console`: the web console (console/). */
export const consoleSection = z
  .strictObject({
    listen: hostPort.default(CONSOLE_DEFAULTS.console.listen),
    health: hostPort.default(CONSOLE_DEFAULTS.console.health),
    tls: z.strictObject({ certFile: z.string().min(1), keyFile: z.string().min(1) }).optional(),
    /** The URL users open (for the OIDC redirect); default https://<listen>. */
    publicUrl: z.url({ protocol: /^https$/ }).optional(),
    /** Where SubjectAccessReviews and approval decisions go; default proxy.upstream. */
    upstream: z
      .strictObject({ kubeconfig: z.string().optional(), context: z.string().optional(), inCluster: z.boolean().default(false) })
      .optional(),
    oidc: z.array(oidcClient).default([]),
    /** Members of these groups see every event; everyone else sees the namespaces RBAC lets them `get` `events.kubetrail.io` in. */
    viewerGroups: z.array(z.string().min(1)).default([]),
    /** A login lasts this long (ms), and never past its token's exp. */
    sessionTtlMs: z.number().int().positive().default(CONSOLE_DEFAULTS.console.sessionTtlMs),
    /** SubjectAccessReview answers are reused this long (ms). */
    accessCacheMs: z.number().int().nonnegative().default(CONSOLE_DEFAULTS.console.accessCacheMs),
    /** Rows per search page. */
    maxPageEvents: z.number().int().positive().max(10_000).default(CONSOLE_DEFAULTS.console.maxPageEvents),
  })
  .default(CONSOLE_DEFAULTS.console);
