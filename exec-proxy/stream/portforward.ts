/**
 * Port-forward sessions: relayed and counted, content never recorded.
 *
 * - Tunnelled (`SPDY/3.1+portforward.k8s.io`, kubectl ≥ 1.31's default): SPDY
 *   runs end to end between kubectl and the kubelet inside binary WebSocket
 *   messages whose boundaries mean nothing. We pass the bytes through and run
 *   a passive SPDY parser on the client direction only to learn which ports
 *   were forwarded (the `port` header of each SYN_STREAM).
 * - Direct v4 (`?ports=`): channel 2i is data and 2i+1 errors for the i-th port.
 */
import { WebSocket, type RawData } from 'ws';
import type { IncomingMessage } from 'node:http';
import type { SessionBody } from '../../core/events/model.ts';
import { evaluateExec, type ExecInput } from '../../core/policy/exec.ts';
import { ChannelParser } from './channel-parser.ts';
import { CLOSE, StreamError } from './errors.ts';
import { SpdyParser } from './spdy-parser.ts';
import { failureStatus, isNonTokenProtocol, type StreamProtocol } from './protocol.ts';
import type { SessionRecorder } from './recorder.ts';
import { sessionRecorder } from './session-record.ts';
import { upstreamTls } from './upstream-tls.ts';
import { relayableCloseCode, toBuffer, upstreamUrl, wireLimit } from './wire.ts';
import type { StreamContext } from './context.ts';

const HIGH_WATER = 1024 * 1024;
const LOW_WATER = 256 * 1024;

/** Parses `?ports=8080,9090` (also repeated `ports=`) into port numbers; throws on a bad one. */
function parsePorts(q: URLSearchParams): number[] {
  const out: number[] = [];
  for (const v of q.getAll('ports')) {
    for (const s of v.split(',')) {
      const n = Number(s.trim());
      if (!Number.isInteger(n) || n < 1 || n > 65535) throw new StreamError('STREAM_ERR_BAD_REQUEST', 'ports must be integers 1-65535');
      out.push(n);
    }
  }
  return out;
}

/** One port-forward session. */
export class PortForwardSession {
  readonly #ctx: StreamContext;
  readonly #client: WebSocket;
  readonly #proto: StreamProtocol;
  readonly #recorder: SessionRecorder;
  readonly #ports: number[];
  readonly #spdy: SpdyParser | undefined;
  #upstream: WebSocket | undefined;
  #fromClient: ChannelParser | undefined;
  #bytesIn = 0;
  #bytesOut = 0;
  #outcome: string | undefined;
  #error: string | undefined;
  #ended = false;
  #resolveDone!: () => void;
  readonly done: Promise<void>;
  #paused = { client: new Set<string>(), upstream: new Set<string>() };

  constructor(ctx: StreamContext, client: WebSocket, proto: StreamProtocol) {
    this.#ctx = ctx;
    this.#client = client;
    this.#proto = proto;
    this.#ports = proto.family === 'portforward' ? parsePorts(ctx.target.query) : [];
    if (proto.family === 'portforward') {
      this.#fromClient = new ChannelParser(proto, { maxFrameBytes: ctx.limits.maxFrameBytes, maxChannel: Math.max(0, this.#ports.length * 2 - 1), closeSignals: false });
    } else {
      this.#spdy = new SpdyParser({ maxFrameBytes: ctx.limits.maxFrameBytes });
    }
    this.#recorder = sessionRecorder(ctx);
    this.#recorder.onError = (e) => this.#fail(e);
    this.done = new Promise((r) => (this.#resolveDone = r));
  }

  #body(): SessionBody {
    const ports = this.#spdy ? [...this.#spdy.ports] : this.#ports;
    return { kind: 'portforward', pod: this.#ctx.target.pod, namespace: this.#ctx.target.namespace, ports, protocol: this.#proto.name, subprotocol: this.#proto.name };
  }

  /** Runs the session to its end. */
  async run(): Promise<void> {
    this.#pause('client', 'upstream-not-open');
    this.#client.on('error', (err: Error & { code?: string }) => {
      if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') {
        this.#outcome ??= 'error';
        this.#error ??= 'STREAM_ERR_FRAME_TOO_LARGE';
      }
    });
    this.#client.on('close', (code) => this.#onClientClose(code));
    const input: ExecInput = { kind: 'portforward', namespace: this.#ctx.target.namespace, pod: this.#ctx.target.pod, container: '', command: [], tty: false, user: this.#ctx.identity };
    const ev = evaluateExec(this.#ctx.execPolicies(), input, 'session');
    try {
      await this.#recorder.start({ ...this.#body(), decision: ev.decision });
      for (const f of ev.fired) await this.#recorder.decision({ allowed: f.action !== 'deny', action: f.action, policy: f.policy, rule: f.rule, message: f.message }, { ports: this.#ports });
    } catch {
      this.#outcome = 'error';
      this.#error = 'STREAM_ERR_RECORDING';
      this.#client.close(CLOSE.INTERNAL_ERROR, 'kubetrail: cannot record the session');
      await this.#finish();
      return;
    }
    if (this.#ended) return;
    if (!ev.decision.allowed) {
      this.#outcome = 'denied';
      this.#client.resume();
      // The tunnelled protocol has no status channel of ours: the close reason carries the message.
      const msg = `kubetrail: ${ev.decision.message ?? 'denied'}`;
      if (this.#proto.family === 'portforward' && this.#ports.length > 0) {
        const f = Buffer.concat([Buffer.from([1]), Buffer.from(JSON.stringify(failureStatus(msg)))]);
        this.#client.send(f, { binary: true }, () => this.#client.close(CLOSE.POLICY_VIOLATION, msg.slice(0, 120)));
      } else {
        this.#client.close(CLOSE.POLICY_VIOLATION, msg.slice(0, 120));
      }
      await this.#finish();
      return;
    }
    this.#client.on('message', (d, b) => this.#onClient(d, b));
    const nonToken = isNonTokenProtocol(this.#proto.name);
    const up = new WebSocket(upstreamUrl(this.#ctx), this.#proto.name && !nonToken ? [this.#proto.name] : [], {
      ...upstreamTls(this.#ctx.upstream.tls),
      // ws refuses '/' in subprotocol names: offer it as a plain header instead.
      headers: { ...this.#ctx.upstream.headers, ...(nonToken ? { 'Sec-WebSocket-Protocol': this.#proto.name } : {}) },
      perMessageDeflate: false,
      maxPayload: wireLimit(this.#ctx.limits.maxFrameBytes, this.#proto),
      handshakeTimeout: this.#ctx.limits.upstreamTimeoutMs,
    });
    this.#upstream = up;
    if (nonToken) {
      // Check the echoed name ourselves, then hide it from ws (which would reject it as unrequested).
      up.on('upgrade', (res: IncomingMessage) => {
        if (res.headers['sec-websocket-protocol'] === this.#proto.name) delete res.headers['sec-websocket-protocol'];
      });
    }
    up.on('unexpected-response', (_req, res: IncomingMessage) => {
      res.resume();
      this.#outcome = 'error';
      this.#error = `upstream HTTP ${res.statusCode ?? 0}`;
      this.#client.resume();
      this.#client.close(CLOSE.BAD_GATEWAY, `kubetrail: the API server refused the stream (HTTP ${res.statusCode ?? 0})`);
      void this.#finish();
    });
    up.on('error', () => {
      if (up.readyState !== WebSocket.OPEN && this.#outcome === undefined) {
        this.#outcome = 'error';
        this.#error = 'STREAM_ERR_UPSTREAM';
        this.#client.resume();
        if (this.#client.readyState === WebSocket.OPEN) this.#client.close(CLOSE.BAD_GATEWAY, 'kubetrail: the API server could not be reached');
        void this.#finish();
      }
    });
    up.on('open', () => {
      if (this.#ended) {
        up.close();
        return;
      }
      this.#resume('client', 'upstream-not-open');
    });
    up.on('message', (d, b) => this.#onUpstream(d, b));
    up.on('close', (code) => {
      if (this.#ended) return;
      this.#outcome ??= code === CLOSE.NORMAL ? 'completed' : 'upstream-closed';
      this.#client.resume();
      if (this.#client.readyState === WebSocket.OPEN) this.#client.close(relayableCloseCode(code, CLOSE.INTERNAL_ERROR));
      void this.#finish();
    });
  }

  #pause(side: 'client' | 'upstream', reason: string): void {
    const set = this.#paused[side];
    if (set.size === 0) (side === 'client' ? this.#client : this.#upstream)?.pause();
    set.add(reason);
  }

  #resume(side: 'client' | 'upstream', reason: string): void {
    const set = this.#paused[side];
    if (set.delete(reason) && set.size === 0) (side === 'client' ? this.#client : this.#upstream)?.resume();
  }

  #send(dst: WebSocket, srcSide: 'client' | 'upstream', data: Buffer | string, binary: boolean): void {
    if (dst.readyState !== WebSocket.OPEN) return;
    dst.send(data, { binary }, () => {
      if (dst.bufferedAmount <= LOW_WATER) this.#resume(srcSide, 'backpressure');
    });
    if (dst.bufferedAmount > HIGH_WATER) this.#pause(srcSide, 'backpressure');
  }

  #onClient(raw: RawData, isBinary: boolean): void {
    if (this.#ended || !this.#upstream) return;
    const data = toBuffer(raw);
    try {
      if (this.#spdy) {
        if (!isBinary) throw new StreamError('STREAM_ERR_TEXT_FRAME', 'text message in a SPDY tunnel');
        this.#spdy.push(data);
      } else {
        this.#fromClient?.parse(data, isBinary);
      }
    } catch (err) {
      this.#fail(err);
      return;
    }
    this.#bytesIn += data.length;
    this.#send(this.#upstream, 'client', isBinary ? data : data.toString('latin1'), isBinary);
  }

  #onUpstream(raw: RawData, isBinary: boolean): void {
    if (this.#ended) return;
    const data = toBuffer(raw);
    this.#bytesOut += data.length;
    this.#send(this.#client, 'upstream', isBinary ? data : data.toString('latin1'), isBinary);
  }

  #onClientClose(code: number): void {
    if (this.#ended) return;
    this.#outcome ??= 'client-closed';
    const up = this.#upstream;
    if (up && up.readyState !== WebSocket.CLOSED) {
      if (code === 1006 || up.readyState === WebSocket.CONNECTING) up.terminate();
      else up.close(relayableCloseCode(code, CLOSE.NORMAL));
    }
    void this.#finish();
  }

  #fail(err: unknown): void {
    if (this.#ended) return;
    const e = err instanceof StreamError ? err : new StreamError('STREAM_ERR_BAD_REQUEST', 'stream error', { cause: err });
    this.#outcome ??= 'error';
    this.#error ??= e.code;
    this.#client.resume();
    if (this.#client.readyState === WebSocket.OPEN) this.#client.close(e.closeCode, e.message.slice(0, 120));
    this.#upstream?.terminate();
    void this.#finish();
  }

  async #finish(): Promise<void> {
    if (this.#ended) return;
    this.#ended = true;
    const cut = setTimeout(() => {
      if (this.#client.readyState !== WebSocket.CLOSED) this.#client.terminate();
      if (this.#upstream && this.#upstream.readyState !== WebSocket.CLOSED) this.#upstream.terminate();
    }, 5000);
    cut.unref();
    try {
      await this.#recorder.end({
        ...this.#body(),
        outcome: this.#outcome ?? 'error',
        bytesIn: this.#bytesIn,
        bytesOut: this.#bytesOut,
        durationMs: this.#recorder.elapsed(),
        ...(this.#error ? { error: this.#error } : {}),
      });
    } catch (err) {
      this.#ctx.log.error({ err: { code: (err as StreamError).code } }, 'port-forward recording incomplete');
    } finally {
      this.#resolveDone();
    }
  }
}
