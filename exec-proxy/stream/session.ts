/**
 * One exec/attach session: the client's WebSocket (already accepted), the
 * upstream WebSocket to the API server (opened here, as the impersonated
 * caller), and the orchestration between them — parsing, guardrails, the
 * hold for a session's approval and close handling here; typed lines
 * (typed-line-relay.ts), approvals (session-approvals.ts), output masking
 * (output-masking.ts), backpressure (backpressure.ts), recording
 * (recorder.ts, session-record.ts) and the upstream TLS cache
 * (upstream-tls.ts) in their own modules. It stays a little over 400 lines
 * because it is the one state machine of a session's life (open, hold,
 * relay, close, end record); splitting it further would scatter its
 * transitions.
 */
import { WebSocket, type RawData } from 'ws';
import type { IncomingMessage } from 'node:http';
import type { SessionBody } from '../../core/events/model.ts';
import type { MaskPattern } from '../../core/masking/patterns.ts';
import { evaluateExec, hasLineRules, judgeTypedLine, type ExecInput } from '../../core/policy/exec.ts';
import { patternsFor } from '../../core/masking/stream.ts';
import { Backpressure, type Side } from './backpressure.ts';
import { ChannelParser } from './channel-parser.ts';
import { CLOSE, StreamError } from './errors.ts';
import { OutputMasking } from './output-masking.ts';
import { CHANNEL, encodeFrame, sessionOutcome, type StreamProtocol } from './protocol.ts';
import { execInput, execSessionBody, recordEnd, resizeOf, sessionEndBody, sessionRecorder } from './session-record.ts';
import type { SessionRecorder } from './recorder.ts';
import { TypedLineGuard } from './typed-line-guard.ts';
import { TypedLineRelay } from './typed-line-relay.ts';
import { upstreamTls } from './upstream-tls.ts';
import { MAX_STATUS_BYTES, flattenHeaders, onRefusalBody, relayableCloseCode, sendFailureAndClose, toBuffer, upstreamUrl, wireLimit } from './wire.ts';
import type { StreamContext } from './context.ts';
import { execOptions, type ExecOptions } from './exec-options.ts';
import { approvalOfDenial, type ApprovalRef } from '../approval-hold.ts';
import type { ApprovalRequirement } from '../../core/approvals/types.ts';
import { SessionApprovals } from './session-approvals.ts';


type Outcome = 'completed' | 'denied' | 'client-closed' | 'upstream-closed' | 'error';

/** Runs one exec/attach session to its end; resolves when session.end is recorded. */
export class ExecSession {
  readonly #ctx: StreamContext;
  readonly #client: WebSocket;
  readonly #proto: StreamProtocol;
  readonly #opts: ExecOptions;
  readonly #recorder: SessionRecorder;
  readonly #input: ExecInput;
  #upstream: WebSocket | undefined;
  #fromClient: ChannelParser;
  #fromUpstream: ChannelParser;
  #masking: OutputMasking | undefined;
  #lines: TypedLineRelay | undefined;
  readonly #approvals: SessionApprovals;
  #bytesIn = 0;
  #bytesOut = 0;
  #status = '';
  #outcome: Outcome | undefined;
  #error: string | undefined;
  #size: { width: number; height: number } | undefined;
  #ended = false;
  #done: Promise<void>;
  #resolveDone!: () => void;
  readonly #flow: Backpressure;

  constructor(ctx: StreamContext, client: WebSocket, proto: StreamProtocol) {
    this.#ctx = ctx;
    this.#client = client;
    this.#proto = proto;
    this.#opts = execOptions(ctx.target.query);
    const limits = ctx.limits;
    this.#fromClient = new ChannelParser(proto, { maxFrameBytes: limits.maxFrameBytes, acceptText: true });
    this.#fromUpstream = new ChannelParser(proto, { maxFrameBytes: limits.maxFrameBytes });
    this.#recorder = sessionRecorder(ctx);
    this.#recorder.onError = (err) => this.#fail(err, 'error');
    this.#input = execInput(ctx, this.#opts);
    this.#flow = new Backpressure(client);
    this.#approvals = new SessionApprovals(ctx, this.#opts);
    this.#done = new Promise((r) => (this.#resolveDone = r));
  }

  /** Resolves once the session is over and session.end is recorded (or failed to be). */
  get done(): Promise<void> {
    return this.#done;
  }

  #body(): SessionBody {
    return execSessionBody(this.#ctx, this.#opts, this.#proto.name, this.#proto.name);
  }

  /** Starts the session: guardrails, session.start, upstream, relay. */
  async run(): Promise<void> {
    // Hold client frames until the upstream is open; ws buffers nothing while paused.
    this.#flow.pause('client', 'upstream-not-open');
    this.#client.on('error', (err: Error & { code?: string }) => {
      // ws enforces maxPayload itself (closing with 1009); say so in the record.
      if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') {
        this.#outcome ??= 'error';
        this.#error ??= 'STREAM_ERR_FRAME_TOO_LARGE';
      }
      // Anything else surfaces as 'close' (1006) and is recorded there.
    });
    this.#client.on('close', (code) => this.#onClientClose(code));
    const ev = evaluateExec(this.#ctx.execPolicies(), this.#input, 'session');
    try {
      await this.#recorder.start({ ...this.#body(), decision: ev.decision });
      for (const f of ev.fired) await this.#recorder.decision({ allowed: f.action === 'audit', action: f.action, policy: f.policy, rule: f.rule, message: f.message }, { command: this.#opts.command, container: this.#opts.container });
    } catch {
      // Fail closed: a session we cannot record does not open.
      this.#outcome = 'error';
      this.#error = 'STREAM_ERR_RECORDING';
      if (this.#client.readyState === WebSocket.OPEN) sendFailureAndClose(this.#client, this.#proto, 'kubetrail: the session cannot be recorded right now, so it is not opened', 'ServiceUnavailable', 503);
      await this.#finish();
      return;
    }
    // The client may have gone while session.start was being made durable.
    if (this.#ended) return;
    if (ev.approval !== undefined) {
      void this.#policyApproval(ev.approval);
      return;
    }
    if (!ev.decision.allowed) {
      this.#outcome = 'denied';
      this.#ctx.log.info({ policy: ev.decision.policy, rule: ev.decision.rule }, 'exec session denied by policy');
      sendFailureAndClose(this.#client, this.#proto, `kubetrail: ${ev.decision.message ?? 'denied by policy'} (ExecPolicy ${ev.decision.policy}/${ev.decision.rule})`);
      await this.#finish();
      return;
    }
    this.#startRelay();
  }

  /** Masking, the typed-line guard and the client relay; then the upstream. */
  #startRelay(): void {
    const who = { namespace: this.#ctx.target.namespace, user: this.#ctx.identity };
    const masking = this.#ctx.masking();
    const patterns = new Map<number, readonly MaskPattern[]>();
    for (const [ch, name] of [[CHANNEL.STDOUT, 'stdout'], [CHANNEL.STDERR, 'stderr']] as const) {
      const pats = patternsFor(masking, who, name);
      if (pats.length > 0) patterns.set(ch, pats);
    }
    const stdinPats = patternsFor(masking, who, 'stdin');
    this.#masking = new OutputMasking(
      { patterns, stdin: stdinPats.length > 0 ? stdinPats : undefined, tty: this.#opts.tty, holdMs: this.#ctx.limits.maskHoldMs },
      {
        record: (stream, bytes) => this.#recorder.data(stream, bytes),
        send: (ch, payload) => this.#sendChannel(this.#client, 'upstream', ch, payload),
        forward: (raw, binary) => this.#forwardRaw(this.#client, 'upstream', raw, binary),
      },
    );
    if (this.#opts.tty && this.#opts.stdin && hasLineRules(this.#ctx.execPolicies(), this.#input)) {
      const guard = new TypedLineGuard((line, opaque) => judgeTypedLine(this.#ctx.execPolicies(), { ...this.#input, line }, opaque), { maxLineBytes: this.#ctx.limits.maxLineBytes });
      this.#lines = new TypedLineRelay(guard, this.#approvals, {
        toContainer: (keys) => this.#upstream && this.#sendChannel(this.#upstream, 'client', CHANNEL.STDIN, keys),
        toUser: (text) => this.#deliverOutput(CHANNEL.STDOUT, Buffer.from(text), false),
        record: (decision, data) => void this.#recorder.decision(decision, data),
        ended: () => this.#ended,
        onClientClose: (f) => {
          this.#client.once('close', f);
          return () => this.#client.off('close', f);
        },
      });
    }
    this.#client.on('message', (data, isBinary) => this.#onClientMessage(data, isBinary));
    this.#openUpstream();
  }

  #openUpstream(): void {
    const url = upstreamUrl(this.#ctx);
    const up = new WebSocket(url, this.#proto.name ? [this.#proto.name] : [], {
      ...upstreamTls(this.#ctx.upstream.tls),
      headers: { ...flattenHeaders(this.#ctx.upstream.headers) },
      perMessageDeflate: false,
      maxPayload: wireLimit(this.#ctx.limits.maxFrameBytes, this.#proto),
      handshakeTimeout: this.#ctx.limits.upstreamTimeoutMs,
    });
    this.#upstream = up;
    this.#flow.upstream = up;
    up.on('unexpected-response', (_req, res) => this.#onUpstreamRefused(res));
    up.on('error', (err) => {
      if (this.#outcome === undefined) {
        this.#ctx.log.warn({ err: { code: (err as NodeJS.ErrnoException).code } }, 'upstream stream connection failed');
        if (up.readyState !== WebSocket.OPEN && this.#client.readyState === WebSocket.OPEN) {
          this.#outcome = 'error';
          this.#error = 'STREAM_ERR_UPSTREAM';
          sendFailureAndClose(this.#client, this.#proto, 'kubetrail: the API server could not be reached', 'ServiceUnavailable', 503);
          void this.#finish();
        }
      }
    });
    up.on('open', () => {
      if (up.protocol !== this.#proto.name) {
        this.#fail(new StreamError('STREAM_ERR_UPSTREAM', 'upstream chose another subprotocol'), 'error');
        return;
      }
      if (this.#ended || this.#client.readyState !== WebSocket.OPEN) {
        up.close(CLOSE.NORMAL);
        return;
      }
      this.#flow.resume('client', 'upstream-not-open');
    });
    up.on('message', (data, isBinary) => this.#onUpstreamMessage(data, isBinary));
    up.on('close', (code) => this.#onUpstreamClose(code));
  }

  #onUpstreamRefused(res: IncomingMessage): void {
    // The API server refused the upgrade (RBAC, no such pod ...): show the client its Status.
    onRefusalBody(res, (refusal) => {
      // The webhook wants approval for this exec: hold the session before the upstream opens (issue 17).
      const held = this.#ctx.approvals && res.statusCode === 403 ? approvalOfDenial(refusal, this.#ctx.target.namespace) : undefined;
      if (held !== undefined && !this.#ended) {
        void this.#holdForApproval(held, () => this.#openUpstream());
        return;
      }
      let message = `kubetrail: the API server refused the stream (HTTP ${res.statusCode ?? 0})`;
      let reason = 'BadGateway';
      try {
        const s = JSON.parse(refusal.toString('utf8')) as { message?: unknown; reason?: unknown };
        if (typeof s.message === 'string') message = s.message;
        if (typeof s.reason === 'string') reason = s.reason;
      } catch {
        /* keep the generic message: never echo a non-Status body */
      }
      this.#outcome = 'error';
      this.#error = `upstream HTTP ${res.statusCode ?? 0}`;
      if (this.#client.readyState === WebSocket.OPEN) sendFailureAndClose(this.#client, this.#proto, message, reason, res.statusCode ?? 502);
      void this.#finish();
    }, () => void this.#finish());
  }

  /**
   * An ExecPolicy rule requires approval: the gateway finds or creates the
   * ApprovalRequest (session-approvals.ts, through the gate the webhook uses
   * too) and holds the session before its upstream opens, with the same hold
   * as a CONNECT the webhook denied for approval. Once approved it asks
   * again, which marks the approval used, and opens.
   */
  async #policyApproval(need: ApprovalRequirement): Promise<void> {
    const refuse = (message: string, reason = 'Forbidden', code = 403): void => {
      this.#outcome = 'denied';
      if (this.#client.readyState === WebSocket.OPEN) sendFailureAndClose(this.#client, this.#proto, message, reason, code);
      void this.#finish();
    };
    const first = await this.#approvals.ask(need);
    if (this.#ended) return;
    if (first.allowed) return this.#startRelay();
    if (!('wait' in first)) return refuse(first.message, first.reason, first.code);
    await this.#holdForApproval(first.wait, async () => {
      const again = await this.#approvals.ask(need);
      if (this.#ended) return;
      if (again.allowed) this.#startRelay();
      else if ('wait' in again) refuse(`kubetrail: ApprovalRequest ${again.wait.namespace}/${again.wait.name} is not approved; the session was not opened`);
      else refuse(again.message, again.reason, again.code);
    });
  }

  /** Tells the user what they wait for, waits (bounded) for the decision, then goes on (`approved`) or fails with the Status. */
  async #holdForApproval(ref: ApprovalRef, approved: () => void | Promise<void>): Promise<void> {
    const ch = this.#opts.stderr && !this.#opts.tty ? CHANNEL.STDERR : CHANNEL.STDOUT;
    if (this.#client.readyState === WebSocket.OPEN) this.#sendChannel(this.#client, 'upstream', ch, Buffer.from(this.#approvals.waitingNote(ref, false)));
    const gone = new AbortController();
    const onClose = (): void => gone.abort();
    this.#client.once('close', onClose);
    const result = await this.#approvals.wait(ref, gone.signal, 'session').finally(() => this.#client.off('close', onClose));
    if (this.#ended || this.#client.readyState !== WebSocket.OPEN) {
      void this.#finish();
      return;
    }
    if (result.phase === 'Approved') {
      await approved();
      return;
    }
    this.#outcome = 'error';
    this.#error = 'upstream HTTP 403';
    sendFailureAndClose(this.#client, this.#proto, result.message, 'Forbidden', 403);
    void this.#finish();
  }

  #onClientMessage(raw: RawData, wireBinary: boolean): void {
    if (this.#ended) return;
    const data = toBuffer(raw);
    // A text message on a binary protocol carries the same bytes; it goes upstream as binary.
    const isBinary = wireBinary || this.#proto.encoding === 'binary';
    let frame;
    try {
      frame = this.#fromClient.parse(data, wireBinary);
    } catch (err) {
      this.#fail(err, 'error');
      return;
    }
    const up = this.#upstream;
    if (!up) return;
    if (frame.type === 'close') {
      this.#forwardRaw(up, 'client', data, isBinary);
      return;
    }
    if (frame.channel === CHANNEL.STDIN) {
      this.#bytesIn += frame.payload.length;
      // Set in run() before this handler is attached.
      const masking = this.#masking as OutputMasking;
      masking.recordStdin(frame.payload);
      masking.noteTyped(frame.payload);
      if (this.#lines) this.#lines.feed(frame.payload);
      else {
        this.#forwardRaw(up, 'client', data, isBinary);
      }
    } else if (frame.channel === CHANNEL.RESIZE) {
      this.#recordResize(frame.payload);
      this.#forwardRaw(up, 'client', data, isBinary);
    } else {
      // stdout/stderr/status from a client have no meaning; the API server ignores them, so do we.
      this.#ctx.log.debug({ channel: frame.channel }, 'client frame on a server channel dropped');
    }
    this.#flow.checkRecorder('client', this.#recorder);
  }

  #deliverOutput(ch: number, payload: Buffer, fromUpstream: boolean, raw?: Buffer, rawBinary = true): void {
    if (this.#masking) this.#masking.deliver(ch, payload, fromUpstream, raw, rawBinary);
    else if (raw) this.#forwardRaw(this.#client, 'upstream', raw, rawBinary);
    else this.#sendChannel(this.#client, 'upstream', ch, payload);
  }

  #sendChannel(dst: WebSocket, srcSide: Side, channel: number, payload: Buffer): void {
    const f = encodeFrame(this.#proto, channel, payload);
    this.#flow.send(dst, srcSide, f.data, f.binary);
  }

  #forwardRaw(dst: WebSocket, srcSide: Side, data: Buffer, isBinary: boolean): void {
    this.#flow.send(dst, srcSide, isBinary ? data : data.toString('latin1'), isBinary);
  }

  #recordResize(payload: Buffer): void {
    this.#size ??= resizeOf(payload);
    this.#recorder.data('resize', payload);
  }

  #onUpstreamMessage(raw: RawData, isBinary: boolean): void {
    if (this.#ended) return;
    const data = toBuffer(raw);
    let frame;
    try {
      frame = this.#fromUpstream.parse(data, isBinary);
    } catch (err) {
      this.#fail(err, 'error');
      return;
    }
    if (frame.type === 'close') {
      this.#masking?.flush();
      this.#forwardRaw(this.#client, 'upstream', data, isBinary);
      return;
    }
    const ch = frame.channel;
    if (ch === CHANNEL.STDOUT || ch === CHANNEL.STDERR) {
      this.#bytesOut += frame.payload.length;
      if (frame.payload.length === 0) {
        // The server's initial empty frame: pass it on unchanged.
        this.#forwardRaw(this.#client, 'upstream', data, isBinary);
        return;
      }
      this.#deliverOutput(ch, frame.payload, true, data, isBinary);
    } else if (ch === CHANNEL.STATUS) {
      this.#masking?.flush();
      if (this.#status.length < MAX_STATUS_BYTES) this.#status += frame.payload.toString('utf8');
      this.#forwardRaw(this.#client, 'upstream', data, isBinary);
    } else {
      this.#forwardRaw(this.#client, 'upstream', data, isBinary);
    }
    this.#flow.checkRecorder('upstream', this.#recorder);
  }

  #onUpstreamClose(code: number): void {
    if (this.#ended) return;
    this.#masking?.flush();
    // 1000 after the status is a completed command; anything else is an upstream drop.
    this.#outcome ??= code === CLOSE.NORMAL ? 'completed' : 'upstream-closed';
    this.#client.resume();
    if (this.#client.readyState === WebSocket.OPEN) this.#client.close(relayableCloseCode(code, CLOSE.INTERNAL_ERROR));
    void this.#finish();
  }

  #onClientClose(code: number): void {
    if (this.#ended) return;
    this.#outcome ??= 'client-closed';
    const up = this.#upstream;
    if (up && (up.readyState === WebSocket.OPEN || up.readyState === WebSocket.CONNECTING)) {
      if (code === 1006 || up.readyState === WebSocket.CONNECTING) up.terminate();
      else up.close(relayableCloseCode(code, CLOSE.NORMAL));
    }
    void this.#finish();
  }

  #fail(err: unknown, outcome: Outcome): void {
    if (this.#ended) return;
    const e = err instanceof StreamError ? err : new StreamError('STREAM_ERR_BAD_REQUEST', 'stream error', { cause: err });
    this.#outcome ??= outcome;
    this.#error ??= e.code;
    this.#ctx.log.warn({ code: e.code }, 'exec session ended by a stream error');
    this.#client.resume();
    if (this.#client.readyState === WebSocket.OPEN) this.#client.close(e.closeCode, e.message.slice(0, 120));
    const up = this.#upstream;
    if (up && up.readyState !== WebSocket.CLOSED) up.terminate();
    void this.#finish();
  }

  async #finish(): Promise<void> {
    if (this.#ended) return this.#done;
    this.#ended = true;
    this.#masking?.stop();
    // Give sockets a bounded time to close on their own, then cut them.
    const cut = setTimeout(() => {
      if (this.#client.readyState !== WebSocket.CLOSED) this.#client.terminate();
      if (this.#upstream && this.#upstream.readyState !== WebSocket.CLOSED) this.#upstream.terminate();
    }, 5000);
    cut.unref();
    const body = sessionEndBody(this.#body(), {
      outcome: sessionOutcome(this.#outcome ?? 'error', this.#proto.version, this.#status),
      bytesIn: this.#bytesIn,
      bytesOut: this.#bytesOut,
      durationMs: this.#recorder.elapsed(),
      status: this.#status,
      ...(this.#error !== undefined ? { error: this.#error } : {}),
      masked: this.#masking?.counts() ?? {},
      ...(this.#lines ? { lines: { checked: this.#lines.checked, blocked: this.#lines.blocked } } : {}),
      ...(this.#size ? { size: this.#size } : {}),
    });
    await recordEnd(this.#recorder, body, this.#ctx.log, 'session');
    this.#resolveDone();
  }
}
