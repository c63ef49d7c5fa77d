/**
 * Errors of the gateway, and the one place that turns any error into the
 * Kubernetes `Status` a client (kubectl, client-go, client-node) understands.
 *
 * Two bases, after panva/jose: {@link AuthError} for "who are you" failures
 * (always 401, so a client never learns which check failed) and
 * {@link ProxyError} for everything after authentication. Messages sent to a
 * client are fixed per code; internal error text never leaves the process.
 */
import type { ServerResponse } from 'node:http';
import { KubetrailError } from '../core/errors.ts';

/** Why a caller could not be authenticated. */
export type AuthErrorCode =
  | 'AUTH_ERR_NO_CREDENTIALS'
  | 'AUTH_ERR_AMBIGUOUS_CREDENTIALS'
  | 'AUTH_ERR_MALFORMED'
  | 'AUTH_ERR_ALGORITHM'
  | 'AUTH_ERR_SIGNATURE'
  | 'AUTH_ERR_UNKNOWN_KEY'
  | 'AUTH_ERR_EXPIRED'
  | 'AUTH_ERR_NOT_YET_VALID'
  | 'AUTH_ERR_ISSUER'
  | 'AUTH_ERR_AUDIENCE'
  | 'AUTH_ERR_CLAIM_VALIDATION'
  | 'AUTH_ERR_CLAIM_MAPPING'
  | 'AUTH_ERR_USER_VALIDATION'
  | 'AUTH_ERR_DISCOVERY'
  | 'AUTH_ERR_TOKEN_REJECTED'
  | 'AUTH_ERR_TOKEN_REVIEW_FAILED';

/** Authentication failed; always answered with 401. `claim` names the failing claim when there is one. */
export class AuthError extends KubetrailError<AuthErrorCode> {
  readonly claim: string | undefined;
  constructor(code: AuthErrorCode, message: string, options: { cause?: unknown; claim?: string } = {}) {
    super(code, message, { status: 401, cause: options.cause });
    this.claim = options.claim;
  }
}

/** Failures after authentication, each with its HTTP status. */
export type ProxyErrorCode =
  | 'PROXY_ERR_IMPERSONATION_FORBIDDEN'
  | 'PROXY_ERR_IMPERSONATION_INVALID'
  | 'PROXY_ERR_AUTHORIZATION_FAILED'
  | 'PROXY_ERR_GUARDRAIL_DENIED'
  | 'PROXY_ERR_BAD_REQUEST'
  | 'PROXY_ERR_UPSTREAM_UNAVAILABLE'
  | 'PROXY_ERR_UPSTREAM_TIMEOUT'
  | 'PROXY_ERR_UPSTREAM_CONFIG'
  | 'PROXY_ERR_AUDIT_NOT_DURABLE'
  | 'PROXY_ERR_CLIENT_ABORTED'
  | 'PROXY_ERR_SHUTTING_DOWN'
  | 'PROXY_ERR_INTERNAL';

const PROXY_STATUS: Record<ProxyErrorCode, number> = {
  PROXY_ERR_IMPERSONATION_FORBIDDEN: 403,
  PROXY_ERR_IMPERSONATION_INVALID: 400,
  PROXY_ERR_AUTHORIZATION_FAILED: 503,
  PROXY_ERR_GUARDRAIL_DENIED: 403,
  PROXY_ERR_BAD_REQUEST: 400,
  PROXY_ERR_UPSTREAM_UNAVAILABLE: 502,
  PROXY_ERR_UPSTREAM_TIMEOUT: 504,
  PROXY_ERR_UPSTREAM_CONFIG: 500,
  PROXY_ERR_AUDIT_NOT_DURABLE: 503,
  PROXY_ERR_CLIENT_ABORTED: 499,
  PROXY_ERR_SHUTTING_DOWN: 503,
  PROXY_ERR_INTERNAL: 500,
};

/**
 * A gateway failure after authentication. `clientMessage`, when given, is a
 * message written for the caller (e.g. a guardrail's own text); otherwise the
 * caller gets a fixed message for the code.
 */
export class ProxyError extends KubetrailError<ProxyErrorCode> {
  readonly clientMessage: string | undefined;
  constructor(code: ProxyErrorCode, message: string, options: { cause?: unknown; clientMessage?: string } = {}) {
    super(code, message, { status: PROXY_STATUS[code], cause: options.cause });
    this.clientMessage = options.clientMessage;
  }
}

/** The Kubernetes `metav1.Status` failure body. */
export interface KubeStatus {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: Record<string, never>;
  status: 'Failure';
  message: string;
  reason: string;
  code: number;
}

// Reasons as in k8s.io/apimachinery/pkg/apis/meta/v1/types.go (StatusReason*).
const REASON_BY_STATUS: Record<number, string> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  499: 'BadRequest',
  500: 'InternalError',
  502: 'ServiceUnavailable',
  503: 'ServiceUnavailable',
  504: 'Timeout',
};

const FIXED_MESSAGE: Record<ProxyErrorCode, string> = {
  PROXY_ERR_IMPERSONATION_FORBIDDEN: 'impersonation is not allowed for this user',
  PROXY_ERR_IMPERSONATION_INVALID: 'invalid impersonation headers',
  PROXY_ERR_AUTHORIZATION_FAILED: 'the gateway could not check authorization; try again',
  PROXY_ERR_GUARDRAIL_DENIED: 'denied by a kubetrail guardrail',
  PROXY_ERR_BAD_REQUEST: 'bad request',
  PROXY_ERR_UPSTREAM_UNAVAILABLE: 'the API server is not reachable through the gateway',
  PROXY_ERR_UPSTREAM_TIMEOUT: 'the API server did not answer in time',
  PROXY_ERR_UPSTREAM_CONFIG: 'the gateway is misconfigured',
  PROXY_ERR_AUDIT_NOT_DURABLE: 'the request could not be recorded; try again',
  PROXY_ERR_CLIENT_ABORTED: 'client closed the request',
  PROXY_ERR_SHUTTING_DOWN: 'the gateway is shutting down; try again',
  PROXY_ERR_INTERNAL: 'internal error in the gateway',
};

/** Maps any error to the Status a client receives. Unknown errors become a bare 500. */
export function toKubeStatus(err: unknown): KubeStatus {
  let code = 500;
  let message = 'internal error in the gateway';
  if (err instanceof AuthError) {
    // Like the API server: one message for every authentication failure.
    code = 401;
    message = 'Unauthorized';
  } else if (err instanceof ProxyError) {
    code = err.status;
    message = err.clientMessage ?? FIXED_MESSAGE[err.code];
  }
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason: REASON_BY_STATUS[code] ?? 'InternalError', code };
}

/** Writes the Status for `err` unless headers were already sent (then the connection is cut: the body is incomplete). */
export function sendError(res: ServerResponse, err: unknown): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const status = toKubeStatus(err);
  const body = JSON.stringify(status);
  res.writeHead(status.code === 499 ? 400 : status.code, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  });
  res.end(body);
}

/** The raw HTTP/1.1 response for a failed upgrade, written straight to the socket. */
export function statusResponseBytes(err: unknown): string {
  const status = toKubeStatus(err);
  const body = JSON.stringify(status);
  const code = status.code === 499 ? 400 : status.code;
  return `HTTP/1.1 ${code} ${status.reason}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`;
}
