/**
 * One exec/attach session: the client's WebSocket (already accepted), the
 * upstream WebSocket to the API server (opened here, as the impersonated
 * caller), and everything between them — parsing, guardrails, masking,
 * recording, backpressure, close handling.
 */
import { WebSocket, type RawData } from 'ws';
import type { IncomingMessage } from 'node:http';
import { createSecureContext, type ConnectionOptions } from 'node:tls';
import type { SessionBody } from '../../core/events/model.ts';
import { evaluateExec, hasLineRules, judgeTypedLine, type ExecInput } from '../../core/policy/exec.ts';
import { patternsFor, StreamMasker } from '../../core/masking/stream.ts';
import { ChannelParser } from './channel-parser.ts';
import { CLOSE, StreamError } from './errors.ts';
import { TypedLineGuard, type LineJudgement } from './typed-line-guard.ts';
import { CHANNEL, encodeFrame, exitCodeFromStatus, failureStatus, type StreamProtocol } from './protocol.ts';
import { SessionRecorder } from './recorder.ts';
import type { StreamContext } from './context.ts';

/** Client/upstream send buffer bounds (bytes) for backpressure. */
const HIGH_WATER = 1024 * 1024;
const LOW_WATER = 256 * 1024;
const MAX_STATUS_BYTES = 64 * 1024;

/** Parsed exec/attach options from the request query (PodExecOptions / PodAttachOptions). */
export interface ExecOptions {
  command: string[];
  container: string;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  tty: boolean;
}

/** Booleans as the API server converts them: absent, "0" or "false" are false (apimachinery conversion.go). */
function qbool(q: URLSearchParams, name: string): boolean {
  const v = q.get(name);
  return v !== null && v !== '0' && v !== 'false';
}

/** Reads PodExecOptions / PodAttachOptions from a query. */
export function execOptions(q: URLSearchParams): ExecOptions {
  return { command: q.getAll('command'), container: q.get('container') ?? '', stdin: qbool(q, 'stdin'), stdout: qbool(q, 'stdout'), stderr: qbool(q, 'stderr'), tty: qbool(q, 'tty') };
}

/** Builds the upstream URL for the subresource. */
export function upstreamUrl(ctx: StreamContext): URL {
  const t = ctx.target;
  const base = new URL(ctx.upstream.url);
  base.protocol = base.protocol === 'http:' ? 'ws:' : 'wss:';
  const prefix = base.pathname.replace(/\/$/, '');
  base.pathname = `${prefix}/api/v1/namespaces/${encodeURIComponent(t.namespace)}/pods/${encodeURIComponent(t.pod)}/${t.subresource}`;
  base.search = t.query.toString();
  return base;
}

type MaskPattern = ReturnType<typeof patternsFor>[number];

type Outcome = 'completed' | 'denied' | 'client-closed' | 'upstream-closed' | 'error';

/** Sends a Failure to the client the way kubectl reads it, then closes normally. */
export function sendFailureAndClose(ws: WebSocket, proto: StreamProtocol, message: string, reason = 'Forbidden', code = 403): void {
  // v4/v5 carry a metav1.Status on channel 3; v1 protocols carry plain text there.
  const payload = proto.version >= 4 ? Buffer.from(JSON.stringify(failureStatus(message, reason, code))) : Buffer.from(message);
  const f = encodeFrame(proto, CHANNEL.STATUS, payload);
  // A paused socket could not read the client's answer to our close frame.
  ws.resume();
  ws.send(f.data, { binary: f.binary }, () => ws.close(CLOSE.NORMAL));
}

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
  /**
   * Masking patterns by output channel. Maskers are built on a channel's
   * first output (an idle session never pays for their prefilter tables).
   */
  #maskPatterns = new Map<number, readonly MaskPattern[]>();
  #stdinPatterns: readonly MaskPattern[] | undefined;
  /** Whether typed bytes are tracked to tell their echo apart (tty with output masking). */
  #trackEcho = false;
  /** Maskers of what the client receives, by channel. */
  #maskers = new Map<number, StreamMasker>();
  /**
   * tty sessions only: maskers of what is recorded. The echo of a keystroke
   * goes to the client without hold-back (it is the user's own input, and a
   * held 'e' — a possible start of "eyJ" — would delay typing by maskHoldMs),
   * but the recording still masks it, so it needs its own masker state.
   */
  #recMaskers = new Map<number, StreamMasker>();
  /** Typed bytes not yet seen echoed (tty), bounded. */
  #typed = Buffer.alloc(0);
  #stdinMasker: StreamMasker | undefined;
  #maskTimer: NodeJS.Timeout | undefined;
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
  #paused = { client: new Set<string>(), upstream: new Set<string>() };

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
    this.#pause('client', 'upstream-not-open');
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
      for (const f of ev.fired) await this.#recorder.decision({ allowed: f.action !== 'deny', action: f.action, policy: f.policy, rule: f.rule, message: f.message }, { command: this.#opts.command, container: this.#opts.container });
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
    if (!ev.decision.allowed) {
      this.#outcome = 'denied';
      this.#ctx.log.info({ policy: ev.decision.policy, rule: ev.decision.rule }, 'exec session denied by policy');
      sendFailureAndClose(this.#client, this.#proto, `kubetrail: ${ev.decision.message ?? 'denied by policy'} (ExecPolicy ${ev.decision.policy}/${ev.decision.rule})`);
      await this.#finish();
      return;
    }
    const who = { namespace: this.#ctx.target.namespace, user: this.#ctx.identity };
    const masking = this.#ctx.masking();
    for (const [ch, name] of [[CHANNEL.STDOUT, 'stdout'], [CHANNEL.STDERR, 'stderr']] as const) {
      const pats = patternsFor(masking, who, name);
      if (pats.length > 0) this.#maskPatterns.set(ch, pats);
    }
    this.#trackEcho = this.#opts.tty && this.#maskPatterns.size > 0;
    const stdinPats = patternsFor(masking, who, 'stdin');
    if (stdinPats.length > 0) this.#stdinPatterns = stdinPats;
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
      this.#resume('client', 'upstream-not-open');
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

  #pause(side: 'client' | 'upstream', reason: string): void {
    const set = this.#paused[side];
    const ws = side === 'client' ? this.#client : this.#upstream;
    if (set.size === 0) ws?.pause();
    set.add(reason);
  }

  #resume(side: 'client' | 'upstream', reason: string): void {
    const set = this.#paused[side];
    if (!set.delete(reason)) return;
    const ws = side === 'client' ? this.#client : this.#upstream;
    if (set.size === 0) ws?.resume();
  }

  /** Sends to `dst`, pausing `src` while `dst` is backed up. */
  #send(dst: WebSocket, srcSide: 'client' | 'upstream', data: Buffer | string, binary: boolean): void {
    if (dst.readyState !== WebSocket.OPEN) return;
    const reason = `backpressure`;
    dst.send(data, { binary }, () => {
      if (dst.bufferedAmount <= LOW_WATER) this.#resume(srcSide, reason);
    });
    if (dst.bufferedAmount > HIGH_WATER) this.#pause(srcSide, reason);
  }

  #checkRecorder(side: 'client' | 'upstream'): void {
    if (!this.#recorder.congested) return;
    this.#pause(side, 'recording');
    void this.#recorder.drained().then(() => this.#resume(side, 'recording'));
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
      this.#record('stdin', frame.payload);
      if (this.#trackEcho) this.#noteTyped(frame.payload);
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
    this.#checkRecorder('client');
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

  #sendChannel(dst: WebSocket, srcSide: 'client' | 'upstream', channel: number, payload: Buffer): void {
    const f = encodeFrame(this.#proto, channel, payload);
    this.#send(dst, srcSide, f.data, f.binary);
  }

  #forwardRaw(dst: WebSocket, srcSide: 'client' | 'upstream', data: Buffer, isBinary: boolean): void {
    this.#send(dst, srcSide, isBinary ? data : data.toString('latin1'), isBinary);
  }

  #record(stream: 'stdin' | 'stdout' | 'stderr', bytes: Buffer): void {
    if (stream === 'stdin' && this.#stdinPatterns !== undefined) {
      this.#stdinMasker ??= new StreamMasker(this.#stdinPatterns);
      // stdin is masked in the recording only: the container must receive what was typed.
      this.#recorder.data('stdin', this.#stdinMasker.push(bytes));
      this.#armMaskTimer();
      return;
    }
    this.#recorder.data(stream, bytes);
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
      this.#flushMaskers();
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
      this.#flushMaskers();
      if (this.#status.length < MAX_STATUS_BYTES) this.#status += frame.payload.toString('utf8');
      this.#forwardRaw(this.#client, 'upstream', data, isBinary);
    } else {
      this.#forwardRaw(this.#client, 'upstream', data, isBinary);
    }
    this.#checkRecorder('upstream');
  }

  #noteTyped(bytes: Buffer): void {
    const all = Buffer.concat([this.#typed, bytes]);
    this.#typed = all.length > 4096 ? all.subarray(all.length - 4096) : all;
  }

  /** Whether `payload` is the echo of typed bytes; consumes them if so. */
  #takeEcho(payload: Buffer): boolean {
    if (payload.length === 0 || payload.length > 64) return false;
    const i = this.#typed.indexOf(payload);
    if (i === -1) return false;
    this.#typed = this.#typed.subarray(i + payload.length);
    return true;
  }

  #recordOut(ch: number, bytes: Buffer): void {
    if (bytes.length > 0) this.#record(ch === CHANNEL.STDOUT ? 'stdout' : 'stderr', bytes);
  }

  /** Masks, records and sends output; `fromUpstream` false for kubetrail's own messages. */
  #deliverOutput(ch: number, payload: Buffer, fromUpstream: boolean, raw?: Buffer, rawBinary = true): void {
    const masker = this.#maskerFor(ch);
    if (!masker) {
      this.#recordOut(ch, payload);
      // Unchanged bytes: forward the upstream message itself rather than re-framing a copy.
      if (raw) this.#forwardRaw(this.#client, 'upstream', raw, rawBinary);
      else this.#sendChannel(this.#client, 'upstream', ch, payload);
      return;
    }
    const rec = this.#recMaskers.get(ch);
    if (rec && fromUpstream && masker.pendingBytes === 0 && this.#takeEcho(payload)) {
      this.#sendChannel(this.#client, 'upstream', ch, payload);
      this.#recordOut(ch, rec.push(payload));
      this.#armMaskTimer();
      return;
    }
    // Our own message goes after whatever is held back, in order.
    const out = fromUpstream ? masker.push(payload) : Buffer.concat([masker.flush(), payload]);
    if (rec) this.#recordOut(ch, fromUpstream ? rec.push(payload) : Buffer.concat([rec.flush(), payload]));
    else this.#recordOut(ch, out);
    if (out === payload && raw) this.#forwardRaw(this.#client, 'upstream', raw, rawBinary);
    else if (out.length > 0) this.#sendChannel(this.#client, 'upstream', ch, out);
    this.#armMaskTimer();
  }

  /** The channel's masker (and, for tty, its recording twin), built on first use; undefined when nothing is masked there. */
  #maskerFor(ch: number): StreamMasker | undefined {
    const m = this.#maskers.get(ch);
    if (m !== undefined) return m;
    const pats = this.#maskPatterns.get(ch);
    if (pats === undefined) return undefined;
    const created = new StreamMasker(pats);
    this.#maskers.set(ch, created);
    if (this.#opts.tty) this.#recMaskers.set(ch, new StreamMasker(pats));
    return created;
  }

  #armMaskTimer(): void {
    const held = [...this.#maskers.values(), ...this.#recMaskers.values()].some((m) => m.pendingBytes > 0) || (this.#stdinMasker?.pendingBytes ?? 0) > 0;
    if (!held || this.#maskTimer !== undefined) return;
    this.#maskTimer = setTimeout(() => {
      this.#maskTimer = undefined;
      this.#flushMaskers();
    }, this.#ctx.limits.maskHoldMs);
  }

  #flushMaskers(): void {
    if (this.#maskTimer !== undefined) {
      clearTimeout(this.#maskTimer);
      this.#maskTimer = undefined;
    }
    for (const [ch, m] of this.#maskers) {
      const rest = m.flush();
      const rec = this.#recMaskers.get(ch);
      if (rec) this.#recordOut(ch, rec.flush());
      else this.#recordOut(ch, rest);
      if (rest.length > 0) this.#sendChannel(this.#client, 'upstream', ch, rest);
    }
    if (this.#stdinMasker) this.#recorder.data('stdin', this.#stdinMasker.flush());
  }

  #onUpstreamClose(code: number): void {
    if (this.#ended) return;
    this.#flushMaskers();
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
    if (this.#maskTimer !== undefined) clearTimeout(this.#maskTimer);
    // Give sockets a bounded time to close on their own, then cut them.
    const cut = setTimeout(() => {
      if (this.#client.readyState !== WebSocket.CLOSED) this.#client.terminate();
      if (this.#upstream && this.#upstream.readyState !== WebSocket.CLOSED) this.#upstream.terminate();
    }, 5000);
    cut.unref();
    const st = exitCodeFromStatus(this.#status);
    const masked: Record<string, number> = {};
    // Recording maskers see everything a tty session printed (echo included), so they count for it.
    const counted = [...this.#maskers.entries()].map(([ch, m]) => this.#recMaskers.get(ch) ?? m);
    for (const m of [...counted, ...(this.#stdinMasker ? [this.#stdinMasker] : [])]) for (const [k, v] of m.counts) masked[k] = (masked[k] ?? 0) + v;
    const body: SessionBody = {
      ...this.#body(),
      outcome: this.#outcome ?? 'error',
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

/** Upstream TLS options by the identity of their ca/cert/key values; a few at most (credential rotation adds one). */
const secureContexts = new Map<string, ConnectionOptions>();
const MAX_SECURE_CONTEXTS = 8;
const materialIds = new WeakMap<object, number>();
let nextMaterialId = 0;

/** A key for a ca/cert/key value: strings by content, Buffers and arrays by identity. */
function materialKey(v: unknown): string {
  if (v === undefined) return '-';
  if (typeof v === 'string') return `s${v.length}:${v}`;
  if (typeof v === 'object' && v !== null) {
    let id = materialIds.get(v);
    if (id === undefined) {
      id = nextMaterialId++;
      materialIds.set(v, id);
    }
    return `o${id}`;
  }
  return `?${String(v)}`;
}

/**
 * Upstream TLS options with one SecureContext per upstream configuration:
 * passing `ca`/`cert`/`key` to every connection would parse them and build a
 * new OpenSSL context per session. The gateway hands every session a fresh
 * copy of its TLS options, so the cache is keyed by the material they carry
 * (the same strings or Buffers each time), not by the options object.
 */
export function upstreamTls(tls: ConnectionOptions): ConnectionOptions {
  if (tls.secureContext !== undefined || (tls.ca === undefined && tls.cert === undefined && tls.key === undefined)) return tls;
  const { ca, cert, key, ...rest } = tls;
  const id = `${materialKey(ca)}|${materialKey(cert)}|${materialKey(key)}`;
  let base = secureContexts.get(id);
  if (base === undefined) {
    base = { secureContext: createSecureContext({ ...(ca !== undefined ? { ca } : {}), ...(cert !== undefined ? { cert } : {}), ...(key !== undefined ? { key } : {}) }) };
    if (secureContexts.size >= MAX_SECURE_CONTEXTS) secureContexts.delete(secureContexts.keys().next().value as string);
    secureContexts.set(id, base);
  }
  return { ...rest, secureContext: base.secureContext };
}

/** ws `maxPayload` for a decoded limit: channel byte, and base64 growth for text protocols. */
export function wireLimit(maxFrameBytes: number, proto: Pick<StreamProtocol, 'encoding'>): number {
  return proto.encoding === 'base64' ? Math.ceil(maxFrameBytes / 3) * 4 + 1 : maxFrameBytes + 1;
}

/** A close code that may be sent on the wire (1005/1006/1015 are reserved for local use). */
export function relayableCloseCode(code: number, fallback: number): number {
  if (code === 1005 || code === 1006 || code === 1015) return fallback;
  if ((code >= 1000 && code <= 1014) || (code >= 3000 && code <= 4999)) return code;
  return fallback;
}

/** ws delivers Buffer, ArrayBuffer or Buffer[] depending on binaryType. */
export function toBuffer(raw: RawData): Buffer {
  if (Buffer.isBuffer(raw)) return raw;
  if (Array.isArray(raw)) return Buffer.concat(raw);
  return Buffer.from(raw);
}

/** Header values as ws/http accept them. */
export function flattenHeaders(h: Record<string, string | string[]>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(h)) out[k] = v;
  return out;
}
