/**
 * One exec/attach session: the client's WebSocket (already accepted), the
 * upstream WebSocket to the API server (opened here, as the impersonated
 * caller), and the orchestration between them — parsing, guardrails and
 * close handling here; output masking (output-masking.ts), backpressure
 * (backpressure.ts), recording (recorder.ts) and the upstream TLS cache
 * (upstream-tls.ts) in their own modules. It stays a little over 400 lines
 * because it is the one state machine of a session's life (open, relay,
 * close, end record); splitting it further would scatter its transitions.
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
import { CHANNEL, encodeFrame, exitCodeFromStatus, sessionOutcome, type StreamProtocol } from './protocol.ts';
import { SessionRecorder } from './recorder.ts';
import { TypedLineGuard, type LineJudgement } from './typed-line-guard.ts';
import { upstreamTls } from './upstream-tls.ts';
import { flattenHeaders, relayableCloseCode, sendFailureAndClose, toBuffer, upstreamUrl, wireLimit } from './wire.ts';
import type { StreamContext } from './context.ts';
import { execOptions, type ExecOptions } from './exec-options.ts';
import { approvalOfDenial, heldStatusBody, holdForApproval, type ApprovalRef } from '../approval-hold.ts';
import { approvalBodySha256 } from '../../core/approvals/hash.ts';
import type { GateAnswer } from '../../core/approvals/gate.ts';
import type { ApprovalRequirement } from '../../core/approvals/types.ts';

const MAX_STATUS_BYTES = 64 * 1024;

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
  #guard: TypedLineGuard | undefined;
  #bytesIn = 0;
  #bytesOut = 0;
  #status = '';
  #outcome: Outcome | undefined;
  #error: string | undefined;
  #linesChecked = 0;
  #linesBlocked = 0;
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
    this.#recorder = new SessionRecorder(
      ctx.sink,
      {
        actor: ctx.identity,
        target: { group: '', version: 'v1', resource: 'pods', subresource: ctx.target.subresource, namespace: ctx.target.namespace, name: ctx.target.pod },
        session: ctx.sessionId,
      },
      { chunkBytes: limits.chunkBytes, flushMs: limits.recordFlushMs, maxRecordedBytes: limits.maxRecordedBytes, maxInflightBytes: limits.maxInflightRecordBytes, compression: limits.recordCompression },
    );
    this.#recorder.onError = (err) => this.#fail(err, 'error');
    this.#input = {
      kind: ctx.target.subresource === 'attach' ? 'attach' : 'exec',
      namespace: ctx.target.namespace,
      pod: ctx.target.pod,
      container: this.#opts.container,
      command: this.#opts.command,
      tty: this.#opts.tty,
      user: ctx.identity,
    };
    this.#flow = new Backpressure(client);
    this.#done = new Promise((r) => (this.#resolveDone = r));
  }

  /** Resolves once the session is over and session.end is recorded (or failed to be). */
  get done(): Promise<void> {
    return this.#done;
  }

  #body(): SessionBody {
    const t = this.#ctx.target;
    return {
      kind: this.#input.kind,
      pod: t.pod,
      namespace: t.namespace,
      ...(this.#opts.container ? { container: this.#opts.container } : {}),
      ...(this.#input.kind === 'exec' ? { command: this.#opts.command } : {}),
      tty: this.#opts.tty,
      stdin: this.#opts.stdin,
      protocol: this.#proto.name,
      subprotocol: this.#proto.name,
    };
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
      this.#guard = new TypedLineGuard((line, opaque) => judgeTypedLine(this.#ctx.execPolicies(), { ...this.#input, line }, opaque).decision, { maxLineBytes: this.#ctx.limits.maxLineBytes });
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
    const chunks: Buffer[] = [];
    let len = 0;
    res.on('data', (c: Buffer) => {
      if (len < MAX_STATUS_BYTES) chunks.push(c);
      len += c.length;
    });
    res.on('end', () => {
      // The webhook wants approval for this exec: hold the session before the upstream opens (issue 17).
      const held = this.#ctx.approvals && res.statusCode === 403 ? approvalOfDenial(Buffer.concat(chunks), this.#ctx.target.namespace) : undefined;
      if (held !== undefined && !this.#ended) {
        void this.#holdForApproval(held, () => this.#openUpstream());
        return;
      }
      let message = `kubetrail: the API server refused the stream (HTTP ${res.statusCode ?? 0})`;
      let reason = 'BadGateway';
      try {
        const s = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { message?: unknown; reason?: unknown };
        if (typeof s.message === 'string') message = s.message;
        if (typeof s.reason === 'string') reason = s.reason;
      } catch {
        /* keep the generic message: never echo a non-Status body */
      }
      this.#outcome = 'error';
      this.#error = `upstream HTTP ${res.statusCode ?? 0}`;
      if (this.#client.readyState === WebSocket.OPEN) sendFailureAndClose(this.#client, this.#proto, message, reason, res.statusCode ?? 502);
      void this.#finish();
    });
    res.on('error', () => void this.#finish());
  }

  /**
   * An ExecPolicy rule requires approval: the gateway finds or creates the
   * ApprovalRequest (core/approvals/gate.ts, as the webhook does) and holds
   * the session before its upstream opens, with the same hold as a CONNECT
   * the webhook denied for approval. Once approved it asks again, which marks
   * the approval used, and opens.
   */
  async #policyApproval(need: ApprovalRequirement): Promise<void> {
    const gate = this.#ctx.approvals?.gate;
    const refuse = (message: string, reason = 'Forbidden', code = 403): void => {
      this.#outcome = 'denied';
      if (this.#client.readyState === WebSocket.OPEN) sendFailureAndClose(this.#client, this.#proto, message, reason, code);
      void this.#finish();
    };
    if (gate === undefined) {
      refuse(`kubetrail: ${need.reason} (ExecPolicy ${need.policy}/${need.rule} requires approval by ${need.approval}; approvals are not configured on this gateway, so nothing can approve it)`);
      return;
    }
    const t = this.#ctx.target;
    const u = this.#ctx.identity;
    const o = this.#opts;
    const query = {
      requester: { username: u.username, groups: [...u.groups], ...(u.uid ? { uid: u.uid } : {}) },
      request: {
        kind: 'exec' as const,
        verb: 'connect',
        apiGroup: '',
        apiVersion: 'v1',
        resource: 'pods',
        subresource: t.subresource,
        namespace: t.namespace,
        name: t.pod,
        pod: t.pod,
        ...(o.container ? { container: o.container } : {}),
        command: [...o.command],
        // Bound to what the session would run, as the webhook binds a CONNECT to its PodExecOptions.
        bodySha256: approvalBodySha256({ container: o.container, command: o.command, stdin: o.stdin, tty: o.tty }, []),
      },
      need,
      correlation: { session: this.#ctx.sessionId },
      dryRun: false,
      namespace: t.namespace,
      authn: u.authn,
    };
    const ask = async (): Promise<GateAnswer | undefined> => {
      try {
        return await gate.decide(query);
      } catch (err) {
        this.#ctx.log.warn({ err, code: (err as { code?: unknown }).code }, 'approvals could not be checked; session refused');
        refuse('kubetrail could not check approvals (the API server could not be asked); the session is refused', 'ServiceUnavailable', 503);
        return undefined;
      }
    };
    const first = await ask();
    if (first === undefined || this.#ended) return;
    if (first.allowed) return this.#startRelay();
    if (first.name === undefined || first.namespace === undefined) return refuse(`kubetrail: ${first.message}`);
    await this.#holdForApproval({ name: first.name, namespace: first.namespace }, async () => {
      const again = await ask();
      if (again === undefined || this.#ended) return;
      if (again.allowed) this.#startRelay();
      else refuse(`kubetrail: ${again.message}`);
    });
  }

  /** Tells the user what they wait for, waits (bounded) for the decision, then goes on (`approved`) or fails with the Status. */
  async #holdForApproval(ref: ApprovalRef, approved: () => void | Promise<void>): Promise<void> {
    const hold = this.#ctx.approvals;
    if (hold === undefined) return;
    const ch = this.#opts.stderr && !this.#opts.tty ? CHANNEL.STDERR : CHANNEL.STDOUT;
    const note = `kubetrail: waiting for approval ${ref.name} (an approver runs: kubetrail approvals approve ${ref.name} -n ${ref.namespace})${this.#opts.tty ? '\r\n' : '\n'}`;
    if (this.#client.readyState === WebSocket.OPEN) this.#sendChannel(this.#client, 'upstream', ch, Buffer.from(note));
    const gone = new AbortController();
    const onClose = (): void => gone.abort();
    this.#client.once('close', onClose);
    const started = performance.now();
    let phase: Awaited<ReturnType<typeof holdForApproval>> = 'Pending';
    try {
      phase = await holdForApproval(hold, ref, gone.signal);
    } catch (err) {
      this.#ctx.log.warn({ err, approval: ref.name }, 'could not watch the ApprovalRequest');
    } finally {
      this.#client.off('close', onClose);
    }
    if (this.#ended || this.#client.readyState !== WebSocket.OPEN) {
      void this.#finish();
      return;
    }
    if (phase === 'Approved') {
      await approved();
      return;
    }
    const st = JSON.parse(heldStatusBody(ref, phase, performance.now() - started).toString('utf8')) as { message: string };
    this.#outcome = 'error';
    this.#error = 'upstream HTTP 403';
    sendFailureAndClose(this.#client, this.#proto, st.message, 'Forbidden', 403);
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
      if (this.#guard) {
        const { chunks, judged } = this.#guard.feed(frame.payload);
        const forward = chunks.length === 1 ? (chunks[0] as { data: Buffer }).data : Buffer.concat(chunks.map((c) => c.data));
        if (forward.length > 0) this.#sendChannel(up, 'client', CHANNEL.STDIN, forward);
        for (const j of judged) this.#onLineJudged(j);
      } else {
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

  #onLineJudged({ line, opaque, decision }: LineJudgement): void {
    this.#linesChecked++;
    if (decision.allowed) {
      if (decision.action === 'audit') void this.#recorder.decision(decision, { line });
      return;
    }
    this.#linesBlocked++;
    void this.#recorder.decision(decision, { line, opaque });
    // Not executed (the guard withheld its Enter and cleared the remote line): tell the user why on their terminal.
    const msg = Buffer.from(`\r\nkubetrail: line blocked: ${decision.message ?? 'denied by policy'} (ExecPolicy ${decision.policy}/${decision.rule})\r\n`);
    this.#deliverOutput(CHANNEL.STDOUT, msg, false);
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
    const text = payload.toString('utf8');
    for (const line of text.split('\n')) {
      if (!line.trim()) continue;
      try {
        const s = JSON.parse(line) as { Width?: unknown; Height?: unknown };
        if (typeof s.Width === 'number' && typeof s.Height === 'number') this.#size ??= { width: s.Width, height: s.Height };
      } catch {
        /* recorded as-is below; the container decides what a bad resize means */
      }
    }
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
    const st = exitCodeFromStatus(this.#status);
    const masked = this.#masking?.counts() ?? {};
    const body: SessionBody = {
      ...this.#body(),
      outcome: sessionOutcome(this.#outcome ?? 'error', this.#proto.version, this.#status),
      bytesIn: this.#bytesIn,
      bytesOut: this.#bytesOut,
      durationMs: this.#recorder.elapsed(),
      ...(st.exitCode !== undefined ? { exitCode: st.exitCode } : {}),
      ...(this.#error !== undefined ? { error: this.#error } : st.failure !== undefined ? { error: st.failure } : {}),
      ...(Object.keys(masked).length > 0 ? { masked } : {}),
      ...(this.#guard ? { linesChecked: this.#linesChecked, linesBlocked: this.#linesBlocked } : {}),
      ...(this.#size ? { width: this.#size.width, height: this.#size.height } : {}),
    };
    try {
      await this.#recorder.end(body);
    } catch (err) {
      this.#ctx.log.error({ err: { code: (err as StreamError).code } }, 'session recording incomplete');
    } finally {
      this.#resolveDone();
    }
  }
}
