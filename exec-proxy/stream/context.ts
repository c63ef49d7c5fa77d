/**
 * What the gateway hands the stream relay once it has authenticated a caller:
 * who, which pod and subresource, how to reach the API server as that caller,
 * where events go, and the live policy sets.
 */
import type { ConnectionOptions } from 'node:tls';
import type { Config } from '../../core/config.ts';
import type { Identity } from '../../core/identity.ts';
import type { Logger } from '../../core/logger.ts';
import type { EventSink } from '../../core/sinks/sink.ts';
import type { CompiledExecPolicy } from '../../core/policy/exec.ts';
import type { CompiledMaskingPolicy } from '../../core/masking/stream.ts';

/** The subresources the relay serves. */
export type StreamSubresource = 'exec' | 'attach' | 'portforward';

/** Everything the relay needs for one upgrade request. */
export interface StreamContext {
  identity: Identity;
  sessionId: string;
  target: { namespace: string; pod: string; subresource: StreamSubresource; query: URLSearchParams };
  upstream: {
    /** API server base URL. */
    url: URL;
    /** ca, cert, key, servername for the upstream TLS connection. */
    tls: ConnectionOptions;
    /** The proxy's Authorization plus Impersonate-* headers (including the session extra), already built. */
    headers: Record<string, string | string[]>;
  };
  sink: EventSink;
  log: Logger;
  execPolicies: () => readonly CompiledExecPolicy[];
  masking: () => readonly CompiledMaskingPolicy[];
  limits: Config['proxy']['exec'];
  /** Holding an exec whose CONNECT needs approval (config `approvals`); absent: the denial is shown at once. */
  approvals?: import('../approval-hold.ts').ApprovalHold;
}
