/**
 * Legacy SPDY/3.1 exec and attach (kubectl ≤ 1.29, KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false,
 * client-go tools built against older client-go). The session is relayed to
 * the API server as the impersonated caller byte for byte — SPDY runs end to
 * end between the client and the kubelet — while a passive SPDY parser on
 * each direction (spdy-parser.ts) demultiplexes it: each stream's `streamtype`
 * header (stdin, stdout, stderr, error, resize) says what its data frames
 * carry, and they are recorded into the same session.start / session.data /
 * session.end events as a WebSocket session.
 *
 * What SPDY cannot do here: change bytes in flight. SPDY/3.1 has per-stream
 * and per-connection flow-control windows and a shared header compressor, so
 * rewriting a data frame (inline masking of stdout/stderr, withholding a typed
 * line) would mean terminating SPDY on both sides. A session one of those
 * rules applies to is refused (fail closed) with a Status naming the rule
 * and the workaround (WebSocket), and the refusal is recorded. Command-level
 * ExecPolicy needs no rewriting (the command is in the query string) and
 * stdin masking only touches the recording, so both apply as on WebSocket.
 */
import https from 'node:https';
import type { IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import type { Duplex } from 'node:stream';
import type { SessionBody } from '../../core/events/model.ts';
import { patternsFor } from '../../core/masking/stream.ts';
import { evaluateExec, hasLineRules, type ExecInput } from '../../core/policy/exec.ts';
import { forwardedHeaders } from '../relay.ts';
import type { StreamContext } from './context.ts';
import { StreamError } from './errors.ts';
import { execOptions, type ExecOptions } from './exec-options.ts';
import { OutputMasking } from './output-masking.ts';
import { failureStatus, sessionOutcome, type StreamProtocol } from './protocol.ts';
import { execInput, execSessionBody, recordEnd, resizeOf, sessionEndBody, sessionRecorder } from './session-record.ts';
import type { SessionRecorder } from './recorder.ts';
import { SpdyParser } from './spdy-parser.ts';
import { upstreamTls } from './upstream-tls.ts';
import { MAX_STATUS_BYTES, onRefusalBody, upstreamUrl, writeHttpStatus } from './wire.ts';

/** How long both sockets get to close on their own once one side has gone. */
const CLOSE_GRACE_MS = 5000;

/** The refusal of a SPDY session that a byte-rewriting rule applies to; `rules` names them. */
export function spdyRewriteRefusal(rules: string): string {
  return (
    `kubetrail: ${rules} cover this session, and kubetrail applies them over WebSocket only (it cannot rewrite legacy SPDY streams in flight), so this SPDY exec/attach is refused. ` +
    'Use WebSocket: kubectl 1.30 or newer uses it by default (unset KUBECTL_REMOTE_COMMAND_WEBSOCKETS or set it to true).'
  );
}

type Outcome = 'completed' | 'denied' | 'client-closed' | 'upstream-closed' | 'error';
type Side = 'client' | 'upstream';

/** The remotecommand version a negotiated X-Stream-Protocol-Version implies (v2/v3 error streams carry text, as v1). */
function versionOf(name: string): StreamProtocol['version'] {
  return name === 'v5.channel.k8s.io' ? 5 : name === 'v4.channel.k8s.io' ? 4 : 1;
}

/** One legacy SPDY exec/attach session, from the client's upgrade request to session.end. */
export class SpdyExecSession {
  readonly #ctx: StreamContext;
  readonly #req: IncomingMessage;
  readonly #client: Duplex;
  readonly #head: Buffer;
  readonly #opts: ExecOptions;
  readonly #input: ExecInput;
  readonly #recorder: SessionRecorder;
  /** Stream id → streamtype, learnt from the client's SYN_STREAMs (client-go opens every stream). */
  readonly #streams = new Map<number, string>();
  readonly #paused: Record<Side, Set<string>> = { client: new Set(), upstream: new Set() };
  #upstream: Duplex | undefined;
  #masking: OutputMasking | undefined;
  #negotiated = '';
  #status = '';
  #bytesIn = 0;
  #bytesOut = 0;
  #outcome: Outcome | undefined;
  #error: string | undefined;
  #closedFirst: Side | undefined;
  #size: { width: number; height: number } | undefined;
  #ended = false;
  #resolveDone!: () => void;
  /** Resolves once session.end is recorded (or failed to be). */
  readonly #done: Promise<void>;

  constructor(ctx: StreamContext, req: IncomingMessage, client: Duplex, head: Buffer) {
    this.#ctx = ctx;
    this.#req = req;
    this.#client = client;
    this.#head = head;
    this.#opts = execOptions(ctx.target.query);
    this.#input = execInput(ctx, this.#opts);
    this.#recorder = sessionRecorder(ctx);
    this.#recorder.onError = (err) => this.#fail(err);
    this.#done = new Promise((r) => (this.#resolveDone = r));
  }

  #body(): SessionBody {
    return execSessionBody(this.#ctx, this.#opts, 'SPDY/3.1', this.#negotiated);
  }

  /** Runs the session; resolves once session.end is recorded (or failed to be). Never rejects. */
  async run(): Promise<void> {
    this.#client.on('close', () => this.#onClose('client'));
    this.#client.on('error', () => this.#client.destroy());
    const policies = this.#ctx.execPolicies();
    const ev = evaluateExec(policies, this.#input, 'session');
    try {
      await this.#recorder.start({ ...this.#body(), decision: ev.decision });
      for (const f of ev.fired) await this.#recorder.decision({ allowed: f.action !== 'deny', action: f.action, policy: f.policy, rule: f.rule, message: f.message }, { command: this.#opts.command, container: this.#opts.container });
    } catch {
      // Fail closed: a session we cannot record does not open.
      return this.#refuse('error', 'STREAM_ERR_RECORDING', 503, 'ServiceUnavailable', 'kubetrail: the session cannot be recorded right now, so it is not opened');
    }
    // The client may have gone while session.start was being made durable.
    if (this.#ended) return this.#done;
    if (!ev.decision.allowed) {
      this.#ctx.log.info({ policy: ev.decision.policy, rule: ev.decision.rule }, 'SPDY exec session denied by policy');
      return this.#refuse('denied', undefined, 403, 'Forbidden', `kubetrail: ${ev.decision.message ?? 'denied by policy'} (ExecPolicy ${ev.decision.policy}/${ev.decision.rule})`);
    }
    const who = { namespace: this.#ctx.target.namespace, user: this.#ctx.identity };
    const masking = this.#ctx.masking();
    const rewriting = [
      ...(patternsFor(masking, who, 'stdout').length > 0 || patternsFor(masking, who, 'stderr').length > 0 ? ['inline masking of output (MaskingPolicy)'] : []),
      ...(this.#opts.tty && this.#opts.stdin && hasLineRules(policies, this.#input) ? ['typed-line rules (ExecPolicy on: line)'] : []),
    ];
    if (rewriting.length > 0) {
      this.#ctx.log.info({ rules: rewriting }, 'SPDY exec session refused: its rules need WebSocket');
      return this.#refuse('denied', 'STREAM_ERR_SPDY_UNSUPPORTED', 400, 'BadRequest', spdyRewriteRefusal(rewriting.join(' and ')));
    }
    const stdinPats = patternsFor(masking, who, 'stdin');
    // Recording-side masking of stdin only: nothing is sent through it (the container gets what was typed).
    this.#masking = new OutputMasking(
      { patterns: new Map(), stdin: stdinPats.length > 0 ? stdinPats : undefined, tty: this.#opts.tty, holdMs: this.#ctx.limits.maskHoldMs },
      { record: (stream, bytes) => this.#recorder.data(stream, bytes), send: () => undefined, forward: () => undefined },
    );
    this.#openUpstream();
    return this.#done;
  }

  async #refuse(outcome: Outcome, error: string | undefined, status: number, reason: string, message: string): Promise<void> {
    this.#outcome = outcome;
    if (error !== undefined) this.#error = error;
    if (!this.#client.destroyed) writeHttpStatus(this.#client, status, failureStatus(message, reason, status));
    return this.#finish();
  }

  #openUpstream(): void {
    const url = upstreamUrl(this.#ctx);
    const headers: OutgoingHttpHeaders = forwardedHeaders(this.#req, this.#ctx.upstream.headers);
    headers['connection'] = 'Upgrade';
    headers['upgrade'] = this.#req.headers.upgrade ?? 'SPDY/3.1';
    // The remotecommand versions the client speaks; the kubelet picks one and names it in the 101.
    const versions = this.#req.headersDistinct['x-stream-protocol-version'];
    if (versions !== undefined) headers['x-stream-protocol-version'] = versions;
    const upReq = https.request({
      ...upstreamTls(this.#ctx.upstream.tls),
      host: url.hostname.replace(/^\[|\]$/g, ''),
      port: url.port || 443,
      method: this.#req.method ?? 'POST',
      path: `${url.pathname}${url.search}`,
      headers,
      agent: false,
      timeout: this.#ctx.limits.upstreamTimeoutMs,
    });
    this.#client.once('close', () => {
      if (this.#upstream === undefined) upReq.destroy();
    });
    upReq.on('timeout', () => upReq.destroy(new StreamError('STREAM_ERR_UPSTREAM', 'upstream handshake timed out')));
    upReq.on('error', (err) => {
      if (this.#upstream !== undefined || this.#ended) return;
      this.#ctx.log.warn({ err: { code: (err as NodeJS.ErrnoException).code } }, 'upstream SPDY connection failed');
      void this.#refuse('error', 'STREAM_ERR_UPSTREAM', 503, 'ServiceUnavailable', 'kubetrail: the API server could not be reached');
    });
    upReq.on('response', (res) => this.#onRefused(res));
    upReq.on('upgrade', (res, socket, upHead) => {
      upReq.setTimeout(0);
      this.#onUpgrade(res, socket, upHead);
    });
    upReq.end();
  }

  /** The API server answered without upgrading (RBAC, no such pod, no node ...): relay its Status, record an error. */
  #onRefused(res: IncomingMessage): void {
    onRefusalBody(res, (refusal) => {
      const code = res.statusCode ?? 502;
      let body: Record<string, unknown> = failureStatus(`kubetrail: the API server refused the stream (HTTP ${code})`, 'BadGateway', code);
      try {
        const s = JSON.parse(refusal.toString('utf8')) as Record<string, unknown>;
        // Relay only a Status: never echo a body of another kind.
        if (s['kind'] === 'Status' && typeof s['message'] === 'string') body = s;
      } catch {
        /* keep the generic Status */
      }
      this.#outcome = 'error';
      this.#error = `upstream HTTP ${code}`;
      if (!this.#client.destroyed) writeHttpStatus(this.#client, code, body);
      void this.#finish();
    }, () => void this.#finish());
  }

  #onUpgrade(res: IncomingMessage, up: Duplex, upHead: Buffer): void {
    this.#upstream = up;
    const negotiated = res.headers['x-stream-protocol-version'];
    this.#negotiated = typeof negotiated === 'string' ? negotiated : '';
    if (this.#ended || this.#client.destroyed) {
      up.destroy();
      return;
    }
    (up as Duplex & { setNoDelay?: (v: boolean) => void }).setNoDelay?.(true);
    (this.#client as Duplex & { setNoDelay?: (v: boolean) => void }).setNoDelay?.(true);
    up.on('close', () => this.#onClose('upstream'));
    up.on('error', () => up.destroy());
    const limits = { maxFrameBytes: this.#ctx.limits.maxFrameBytes };
    const fromClient = new SpdyParser(limits, {
      synStream: (id, h) => {
        if (h === undefined) throw new StreamError('STREAM_ERR_SPDY_FRAME', 'SPDY stream headers past the parser bound');
        this.#streams.set(id, h['streamtype'] ?? '');
      },
      data: (id, payload) => this.#fromClientData(id, payload),
    });
    const fromUpstream = new SpdyParser(limits, { data: (id, payload) => this.#fromUpstreamData(id, payload) });
    // The 101 as the API server sent it: it names the remotecommand version the client must use.
    let head = `HTTP/1.1 ${res.statusCode ?? 101} ${res.statusMessage ?? ''}\r\n`;
    for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) head += `${res.rawHeaders[i]}: ${res.rawHeaders[i + 1]}\r\n`;
    this.#client.write(`${head}\r\n`);
    if (!this.#relay('upstream', fromUpstream, upHead) || !this.#relay('client', fromClient, this.#head)) return;
    this.#pipe('client', this.#client, up, fromClient);
    this.#pipe('upstream', up, this.#client, fromUpstream);
  }

  /** Parses then forwards one chunk from `side`; false when the session failed on it. */
  #relay(side: Side, parser: SpdyParser, chunk: Buffer): boolean {
    if (chunk.length === 0) return true;
    try {
      parser.push(chunk);
    } catch (err) {
      this.#fail(err);
      return false;
    }
    const dst = side === 'client' ? this.#upstream : this.#client;
    if (dst === undefined || dst.destroyed) return false;
    if (!dst.write(chunk)) {
      this.#pause(side, 'backpressure');
      dst.once('drain', () => this.#resume(side, 'backpressure'));
    }
    if (this.#recorder.congested) {
      this.#pause(side, 'recording');
      void this.#recorder.drained().then(() => this.#resume(side, 'recording'));
    }
    return true;
  }

  #pipe(side: Side, src: Duplex, dst: Duplex, parser: SpdyParser): void {
    src.on('data', (c: Buffer) => {
      if (!this.#ended) this.#relay(side, parser, c);
    });
    // A half-close travels on: client-go ends its side once it has the status.
    src.on('end', () => dst.end());
  }

  #pause(side: Side, reason: string): void {
    const set = this.#paused[side];
    if (set.size === 0) (side === 'client' ? this.#client : this.#upstream)?.pause();
    set.add(reason);
  }

  #resume(side: Side, reason: string): void {
    const set = this.#paused[side];
    if (set.delete(reason) && set.size === 0) (side === 'client' ? this.#client : this.#upstream)?.resume();
  }

  #fromClientData(id: number, payload: Buffer): void {
    const type = this.#streams.get(id);
    if (type === undefined) throw new StreamError('STREAM_ERR_SPDY_FRAME', 'SPDY data on a stream that was never opened');
    if (payload.length === 0) return;
    if (type === 'stdin') {
      this.#bytesIn += payload.length;
      (this.#masking as OutputMasking).recordStdin(payload);
    } else if (type === 'resize') {
      this.#recordResize(payload);
    }
    // Client data on an output or error stream means nothing to the kubelet; it is relayed, not recorded.
  }

  #fromUpstreamData(id: number, payload: Buffer): void {
    const type = this.#streams.get(id);
    // Fail closed: output we cannot attribute to a stream would go unrecorded.
    if (type === undefined) throw new StreamError('STREAM_ERR_SPDY_FRAME', 'SPDY data from the server on an unknown stream');
    if (payload.length === 0) return;
    if (type === 'stdout' || type === 'stderr') {
      this.#bytesOut += payload.length;
      this.#recorder.data(type, payload);
    } else if (type === 'error') {
      if (this.#status.length < MAX_STATUS_BYTES) this.#status += payload.toString('utf8');
    } else {
      throw new StreamError('STREAM_ERR_SPDY_FRAME', 'SPDY data from the server on a stream that carries no output');
    }
  }

  #recordResize(payload: Buffer): void {
    this.#size ??= resizeOf(payload);
    this.#recorder.data('resize', payload);
  }

  #onClose(side: Side): void {
    this.#closedFirst ??= side;
    if (this.#upstream === undefined) {
      // Before the upgrade (openUpstream destroys its request), or after a refusal was sent.
      this.#outcome ??= 'client-closed';
      void this.#finish();
      return;
    }
    const other = side === 'client' ? this.#upstream : this.#client;
    // end(), not destroy(): the last frames (the exit Status) may still be queued for the client.
    if (!other.destroyed) other.end();
    void this.#finish();
  }

  #fail(err: unknown): void {
    if (this.#ended) return;
    const e = err instanceof StreamError ? err : new StreamError('STREAM_ERR_BAD_REQUEST', 'stream error', { cause: err });
    this.#outcome ??= 'error';
    this.#error ??= e.code;
    this.#ctx.log.warn({ code: e.code }, 'SPDY exec session ended by a stream error');
    this.#client.destroy();
    this.#upstream?.destroy();
    void this.#finish();
  }

  #finishing: Promise<void> | undefined;

  #finish(): Promise<void> {
    this.#finishing ??= this.#end();
    return this.#finishing;
  }

  async #end(): Promise<void> {
    this.#ended = true;
    this.#masking?.flush();
    this.#masking?.stop();
    const cut = setTimeout(() => {
      this.#client.destroy();
      this.#upstream?.destroy();
    }, CLOSE_GRACE_MS);
    cut.unref();
    const version = versionOf(this.#negotiated);
    let outcome = this.#outcome;
    if (outcome === undefined) {
      // The kubelet writes the exit Status, then both sides close; which closes first is a race.
      if (this.#status !== '') outcome = sessionOutcome('completed', version, this.#status);
      else outcome = this.#closedFirst === 'client' ? 'client-closed' : version < 4 ? 'completed' : 'upstream-closed';
    }
    const body = sessionEndBody(this.#body(), {
      outcome,
      bytesIn: this.#bytesIn,
      bytesOut: this.#bytesOut,
      durationMs: this.#recorder.elapsed(),
      status: this.#status,
      ...(this.#error !== undefined ? { error: this.#error } : {}),
      masked: this.#masking?.counts() ?? {},
      ...(this.#size ? { size: this.#size } : {}),
    });
    await recordEnd(this.#recorder, body, this.#ctx.log, 'SPDY session');
    this.#resolveDone();
  }
}
