/**
 * The Kubernetes streaming subprotocols the relay speaks, and how to choose
 * one from what a client offers (the server picks the first offered protocol
 * it supports, as client-go expects: it fails if the server echoes one it did
 * not offer — client-go transport/websocket/roundtripper.go).
 */

/** Channel ids of exec/attach. */
export const CHANNEL = Object.freeze({ STDIN: 0, STDOUT: 1, STDERR: 2, STATUS: 3, RESIZE: 4, CLOSE: 255 });

/** A stream protocol and what it implies about framing. */
export interface StreamProtocol {
  /** Subprotocol name as on the wire ('' when the client offered none). */
  readonly name: string;
  /** exec/attach channels, direct port-forward channels, or SPDY tunnelled in WebSocket. */
  readonly family: 'remotecommand' | 'portforward' | 'spdy-tunnel';
  /** binary: first byte is the channel; base64: first char is '0'+channel, rest base64 text. */
  readonly encoding: 'binary' | 'base64';
  /** 1 (channel.k8s.io), 4 or 5. */
  readonly version: 1 | 4 | 5;
}

const REMOTECOMMAND: readonly StreamProtocol[] = [
  { name: 'v5.channel.k8s.io', family: 'remotecommand', encoding: 'binary', version: 5 },
  { name: 'v4.channel.k8s.io', family: 'remotecommand', encoding: 'binary', version: 4 },
  { name: 'v4.base64.channel.k8s.io', family: 'remotecommand', encoding: 'base64', version: 4 },
  { name: 'channel.k8s.io', family: 'remotecommand', encoding: 'binary', version: 1 },
  { name: 'base64.channel.k8s.io', family: 'remotecommand', encoding: 'base64', version: 1 },
];

const PORTFORWARD: readonly StreamProtocol[] = [
  { name: 'SPDY/3.1+portforward.k8s.io', family: 'spdy-tunnel', encoding: 'binary', version: 5 },
  { name: 'v4.channel.k8s.io', family: 'portforward', encoding: 'binary', version: 4 },
  { name: 'v4.base64.channel.k8s.io', family: 'portforward', encoding: 'base64', version: 4 },
  { name: 'channel.k8s.io', family: 'portforward', encoding: 'binary', version: 1 },
  { name: 'base64.channel.k8s.io', family: 'portforward', encoding: 'base64', version: 1 },
];

/** Every subprotocol name the relay can accept for the subresource. */
function supportedProtocols(subresource: 'exec' | 'attach' | 'portforward'): readonly StreamProtocol[] {
  return subresource === 'portforward' ? PORTFORWARD : REMOTECOMMAND;
}

/**
 * Picks the first offered protocol we support. No offer at all means binary
 * v1 (apimachinery wsstream/conn.go); offers with no match give undefined.
 */
export function chooseProtocol(subresource: 'exec' | 'attach' | 'portforward', offered: readonly string[]): StreamProtocol | undefined {
  const table = supportedProtocols(subresource);
  if (offered.length === 0) {
    return subresource === 'portforward'
      ? { name: '', family: 'portforward', encoding: 'binary', version: 4 }
      : { name: '', family: 'remotecommand', encoding: 'binary', version: 1 };
  }
  for (const o of offered) {
    const p = table.find((t) => t.name === o);
    if (p) return p;
  }
  return undefined;
}

/** Splits Sec-WebSocket-Protocol header lines into names, in order. */
export function offeredProtocols(header: string | string[] | undefined): string[] {
  const lines = header === undefined ? [] : Array.isArray(header) ? header : [header];
  return lines.flatMap((l) => l.split(',')).map((s) => s.trim()).filter(Boolean);
}

/** Encodes one channel message for the protocol. */
export function encodeFrame(p: Pick<StreamProtocol, 'encoding'>, channel: number, payload: Buffer): { data: Buffer | string; binary: boolean } {
  if (p.encoding === 'base64') return { data: String.fromCharCode(48 + channel) + payload.toString('base64'), binary: false };
  const out = Buffer.allocUnsafe(payload.length + 1);
  out[0] = channel;
  payload.copy(out, 1);
  return { data: out, binary: true };
}

/**
 * Reads the exit code out of a channel-3 Status: 0 for Success, the ExitCode
 * cause for NonZeroExitCode (apiserver streamtranslator.go), undefined when
 * the text is not such a Status (e.g. a v1 plain-text error).
 */
export function exitCodeFromStatus(text: string): { exitCode?: number; failure?: string } {
  let s: unknown;
  try {
    s = JSON.parse(text);
  } catch {
    return text.trim() ? { failure: text.trim().slice(0, 512) } : {};
  }
  if (s === null || typeof s !== 'object') return {};
  const st = s as { status?: unknown; reason?: unknown; message?: unknown; details?: { causes?: { reason?: unknown; message?: unknown }[] } };
  if (st.status === 'Success') return { exitCode: 0 };
  if (st.reason === 'NonZeroExitCode') {
    const cause = st.details?.causes?.find((c) => c.reason === 'ExitCode');
    const n = Number(cause?.message);
    if (Number.isInteger(n)) return { exitCode: n };
  }
  return { failure: typeof st.message === 'string' ? st.message.slice(0, 512) : 'failure' };
}

/**
 * The recorded outcome of an exec/attach whose connection ended with
 * `closed` ('completed' for a normal close). On v4/v5 the channel-3 Status
 * tells a command that ran (Success, NonZeroExitCode) from one the API server
 * or kubelet refused after the upgrade (e.g. "unable to upgrade connection:
 * container not found"): the latter is an error even though the close was
 * normal. v1 protocols carry plain text for both, so the close decides there.
 */
export function sessionOutcome<O extends string>(closed: O, version: StreamProtocol['version'], statusText: string): O | 'error' {
  if (closed !== 'completed' || version < 4) return closed;
  return exitCodeFromStatus(statusText).failure !== undefined ? 'error' : closed;
}

/** A Failure Status the client shows as its error (kubectl prints `message`). */
export function failureStatus(message: string, reason = 'Forbidden', code = 403): Record<string, unknown> {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

/**
 * Whether a subprotocol name is outside RFC 7230 token characters, as
 * `SPDY/3.1+portforward.k8s.io` is ('/' is not a tchar). The ws library
 * refuses such names on both ends, so the relay negotiates them itself.
 */
export function isNonTokenProtocol(name: string): boolean {
  return name !== '' && !/^[!#$%&'*+\-.0-9A-Z^_`|a-z~]+$/.test(name);
}
