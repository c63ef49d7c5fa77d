/**
 * A fake exec upstream for tests and benchmarks: a small HTTP server that
 * speaks the API server's pod exec/attach/portforward WebSocket protocols and
 * runs real local processes (there is no kubelet in the harness).
 *
 * - exec/attach: v5.channel.k8s.io, v4.channel.k8s.io, v4.base64.channel.k8s.io,
 *   channel.k8s.io, base64.channel.k8s.io. Sends the initial empty frame,
 *   stdout/stderr, a channel-3 Status with NonZeroExitCode/ExitCode causes
 *   (v4/v5) or plain text (v1), honours [255, 0] on v5, records resizes.
 *   tty: the command runs under `script -qfc CMD /dev/null` (util-linux), which
 *   gives it a real pty; resize is recorded but not applied to that pty.
 *   attach: runs the pod's configured main command for the attaching session.
 * - portforward: tunnelled SPDY/3.1 (a minimal SPDY server: SYN_STREAM/REPLY,
 *   DATA, PING, RST, GOAWAY) and direct v4 `?ports=`; connects to 127.0.0.1:port.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import { connect, type Socket, type AddressInfo } from 'node:net';
import { WebSocketServer, WebSocket, type RawData } from 'ws';
import { SpdyFrameReader, StoredZlib, controlFrame, dataFrame, synReply } from './spdy-server.ts';

/** What the fake saw of one stream request. */
export interface UpstreamRequest {
  path: string;
  query: URLSearchParams;
  protocol: string;
  headers: IncomingMessage['headers'];
  resizes: string[];
  stdinBytes: number;
}

/** Options of the fake. */
export interface FakeUpstreamOptions {
  /** Bearer token the fake requires (401 otherwise). */
  token?: string;
  /** Main command of a pod, for attach. */
  attachCommand?: string[];
  /** Working directory of processes. */
  cwd?: string;
  /** Serve HTTPS with this certificate (as the API server does); default plain HTTP. */
  tls?: { cert: string; key: string };
}

/** A running fake. */
export interface FakeUpstream {
  url: URL;
  requests: UpstreamRequest[];
  /** Live WebSockets, to simulate abrupt upstream failures. */
  sockets: Set<WebSocket>;
  close(): Promise<void>;
}

const REMOTECOMMAND = ['v5.channel.k8s.io', 'v4.channel.k8s.io', 'v4.base64.channel.k8s.io', 'channel.k8s.io', 'base64.channel.k8s.io'];
const PORTFORWARD = ['SPDY/3.1+portforward.k8s.io', 'v4.channel.k8s.io', 'v4.base64.channel.k8s.io'];

function shellQuote(a: string): string {
  return /^[A-Za-z0-9_\-./=:,@]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`;
}

function qbool(q: URLSearchParams, n: string): boolean {
  const v = q.get(n);
  return v !== null && v !== '0' && v !== 'false';
}

/** Starts the fake on 127.0.0.1 (random port). */
export async function startFakeUpstream(opts: FakeUpstreamOptions = {}): Promise<FakeUpstream> {
  const requests: UpstreamRequest[] = [];
  const sockets = new Set<WebSocket>();
  const children = new Set<ChildProcess>();
  const notFound = (_req: IncomingMessage, res: import('node:http').ServerResponse): void => {
    res.writeHead(404, { 'content-type': 'application/json' }).end('{"kind":"Status","status":"Failure","code":404}');
  };
  const server: Server = opts.tls ? createTlsServer({ cert: opts.tls.cert, key: opts.tls.key }, notFound) : createServer(notFound);
  server.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url ?? '/', 'http://fake');
    const m = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)\/(exec|attach|portforward)$/.exec(url.pathname);
    if (opts.token !== undefined && req.headers.authorization !== `Bearer ${opts.token}`) {
      socket.end('HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{"kind":"Status","apiVersion":"v1","status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}');
      return;
    }
    if (!m) {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
      return;
    }
    if (m[2] === 'forbidden-pod') {
      const body = JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', message: 'pods "forbidden-pod" is forbidden: User "x" cannot get resource "pods/exec"', reason: 'Forbidden', code: 403 });
      socket.end(`HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
      return;
    }
    const sub = m[3] as string;
    const offered = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((s) => s.trim()).filter(Boolean);
    const table = sub === 'portforward' ? PORTFORWARD : REMOTECOMMAND;
    const chosen = offered.find((o) => table.includes(o)) ?? (offered.length === 0 ? '' : undefined);
    if (chosen === undefined) {
      socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      return;
    }
    const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 64 * 1024 * 1024, handleProtocols: () => chosen || false });
    if (chosen.includes('/')) {
      // ws refuses '/' in subprotocol names; echo it ourselves.
      delete req.headers['sec-websocket-protocol'];
      wss.on('headers', (h) => h.push(`Sec-WebSocket-Protocol: ${chosen}`));
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      sockets.add(ws);
      ws.on('close', () => sockets.delete(ws));
      const rec: UpstreamRequest = { path: url.pathname, query: url.searchParams, protocol: chosen, headers: req.headers, resizes: [], stdinBytes: 0 };
      requests.push(rec);
      if (sub === 'portforward') {
        if (chosen.startsWith('SPDY/')) spdyPortForward(ws);
        else directPortForward(ws, url.searchParams, chosen);
      } else {
        const cmd = sub === 'attach' ? (opts.attachCommand ?? ['cat']) : url.searchParams.getAll('command');
        runCommand(ws, chosen, cmd, url.searchParams, rec, children, opts.cwd);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as AddressInfo).port;
  return {
    url: new URL(`${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`),
    requests,
    sockets,
    async close() {
      for (const c of children) c.kill('SIGKILL');
      for (const s of sockets) s.terminate();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

function encode(proto: string, ch: number, payload: Buffer): [Buffer | string, boolean] {
  if (proto.includes('base64')) return [String.fromCharCode(48 + ch) + payload.toString('base64'), false];
  return [Buffer.concat([Buffer.from([ch]), payload]), true];
}

function decode(proto: string, raw: RawData, isBinary: boolean): { ch: number; payload: Buffer } | undefined {
  const data = Buffer.isBuffer(raw) ? raw : Array.isArray(raw) ? Buffer.concat(raw) : Buffer.from(raw);
  if (data.length === 0) return undefined;
  if (proto.includes('base64')) {
    if (isBinary) return undefined;
    return { ch: (data[0] as number) - 48, payload: Buffer.from(data.subarray(1).toString('latin1'), 'base64') };
  }
  if (!isBinary) return undefined;
  return { ch: data[0] as number, payload: data.subarray(1) };
}

function runCommand(ws: WebSocket, proto: string, cmd: string[], q: URLSearchParams, rec: UpstreamRequest, children: Set<ChildProcess>, cwd: string | undefined): void {
  const tty = qbool(q, 'tty');
  const wantStdin = qbool(q, 'stdin');
  const wantOut = qbool(q, 'stdout');
  const wantErr = qbool(q, 'stderr') && !tty;
  const send = (ch: number, payload: Buffer, cb?: () => void): void => {
    if (ws.readyState !== WebSocket.OPEN) return;
    const [d, b] = encode(proto, ch, payload);
    ws.send(d, { binary: b }, cb);
  };
  // The API server's first frame: empty, on stdout, else stderr, else status.
  send(wantOut ? 1 : wantErr ? 2 : 3, Buffer.alloc(0));
  if (cmd[0] === 'kubetrail-idle') {
    // A session that stays open doing nothing, without a process (benchmarks of idle sessions).
    ws.on('message', () => {});
    return;
  }
  if (cmd.length === 0) {
    send(3, Buffer.from(JSON.stringify({ metadata: {}, status: 'Failure', message: 'you must specify at least one command for the container', reason: 'BadRequest', code: 400 })), () => ws.close(1000));
    return;
  }
  const argv = tty ? ['script', ['-qefc', cmd.map(shellQuote).join(' '), '/dev/null']] as const : [cmd[0] as string, cmd.slice(1)] as const;
  const child = spawn(argv[0], [...argv[1]], { stdio: ['pipe', 'pipe', 'pipe'], cwd: cwd ?? process.cwd(), env: { ...process.env, TERM: 'dumb', PS1: '$ ' } });
  children.add(child);
  let spawnError: string | undefined;
  child.on('error', (e) => {
    spawnError = `exec failed: ${(e as NodeJS.ErrnoException).code ?? 'error'}`;
  });
  child.stdin.on('error', () => {});
  const pump = (src: NodeJS.ReadableStream & { pause(): void; resume(): void }, ch: number, want: boolean): Promise<void> =>
    new Promise((resolve) => {
      src.on('data', (c: Buffer) => {
        if (!want) return;
        send(ch, c, () => {
          if (ws.bufferedAmount < 256 * 1024) src.resume();
        });
        if (ws.bufferedAmount > 1024 * 1024) src.pause();
      });
      src.on('end', () => resolve());
      src.on('error', () => resolve());
    });
  const outs = Promise.all([pump(child.stdout, 1, wantOut), pump(child.stderr, tty ? 1 : 2, tty ? wantOut : wantErr)]);
  if (!wantStdin) child.stdin.end();
  ws.on('message', (raw, isBinary) => {
    const f = decode(proto, raw, isBinary);
    if (!f) {
      ws.close(1002);
      return;
    }
    if (f.ch === 255 && proto.startsWith('v5')) {
      if (f.payload[0] === 0) child.stdin.end();
      return;
    }
    if (f.ch === 0) {
      rec.stdinBytes += f.payload.length;
      if (f.payload.length > 0 && wantStdin && !child.stdin.writableEnded) {
        if (!child.stdin.write(f.payload)) {
          ws.pause();
          child.stdin.once('drain', () => ws.resume());
        }
      }
    } else if (f.ch === 4) {
      rec.resizes.push(f.payload.toString('utf8'));
    }
  });
  ws.on('close', () => {
    children.delete(child);
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  child.on('close', (code, signal) => {
    void outs.then(() => {
      children.delete(child);
      const exit = code ?? (signal ? 128 + 9 : 1);
      let status: Buffer | undefined;
      if (proto.startsWith('v4') || proto.startsWith('v5')) {
        const s = spawnError
          ? { metadata: {}, status: 'Failure', message: spawnError, reason: 'InternalError', code: 500 }
          : exit === 0
            ? { metadata: {}, status: 'Success' }
            : { metadata: {}, status: 'Failure', message: `command terminated with non-zero exit code: exit status ${exit}`, reason: 'NonZeroExitCode', details: { causes: [{ reason: 'ExitCode', message: String(exit) }] } };
        status = Buffer.from(JSON.stringify(s));
      } else if (exit !== 0 || spawnError) {
        status = Buffer.from(spawnError ?? `command terminated with non-zero exit code: exit status ${exit}`);
      }
      if (status) send(3, status, () => ws.close(1000));
      else ws.close(1000);
    });
  });
}

function directPortForward(ws: WebSocket, q: URLSearchParams, proto: string): void {
  const ports = q.getAll('ports').flatMap((v) => v.split(',')).map(Number);
  const socks: Socket[] = [];
  ports.forEach((port, i) => {
    const portBytes = Buffer.alloc(2);
    portBytes.writeUInt16LE(port);
    const [d1, b1] = encode(proto, 2 * i, portBytes);
    const [d2, b2] = encode(proto, 2 * i + 1, portBytes);
    ws.send(d1, { binary: b1 });
    ws.send(d2, { binary: b2 });
    const s = connect(port, '127.0.0.1');
    socks[i] = s;
    s.on('data', (c: Buffer) => {
      const [d, b] = encode(proto, 2 * i, c);
      if (ws.readyState === WebSocket.OPEN) ws.send(d, { binary: b });
    });
    s.on('error', (e) => {
      const [d, b] = encode(proto, 2 * i + 1, Buffer.from(`error forwarding port ${port}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`));
      if (ws.readyState === WebSocket.OPEN) ws.send(d, { binary: b });
    });
    s.on('close', () => {
      if (ws.readyState === WebSocket.OPEN) ws.close(1000);
    });
  });
  ws.on('message', (raw, isBinary) => {
    const f = decode(proto, raw, isBinary);
    if (!f || f.ch % 2 !== 0) return;
    socks[f.ch / 2]?.write(f.payload);
  });
  ws.on('close', () => socks.forEach((s) => s.destroy()));
}

function spdyPortForward(ws: WebSocket): void {
  const out = new StoredZlib();
  const reader = new SpdyFrameReader();
  const streams = new Map<number, { type: string; port: number; sock?: Socket }>();
  const send = (b: Buffer): void => {
    if (ws.readyState === WebSocket.OPEN) ws.send(b, { binary: true });
  };
  ws.on('message', (raw) => {
    const data = Buffer.isBuffer(raw) ? raw : Array.isArray(raw) ? Buffer.concat(raw) : Buffer.from(raw);
    for (const f of reader.push(data)) {
      if (f.kind === 'syn') {
        const id = f.id;
        const st: { type: string; port: number; sock?: Socket } = { type: f.headers['streamtype'] ?? '', port: Number(f.headers['port']) };
        streams.set(id, st);
        send(synReply(out, id));
        if (st.type === 'data') {
          const s = connect(st.port, '127.0.0.1');
          st.sock = s;
          s.on('data', (c: Buffer) => {
            for (let o = 0; o < c.length; o += 16 * 1024) send(dataFrame(id, 0, c.subarray(o, o + 16 * 1024)));
          });
          s.on('end', () => send(dataFrame(id, 1, Buffer.alloc(0))));
          s.on('error', () => {
            const errId = [...streams.entries()].find(([, v]) => v.type === 'error' && v.port === st.port)?.[0];
            if (errId !== undefined) send(dataFrame(errId, 1, Buffer.from(`error connecting to port ${st.port}`)));
          });
        }
      } else if (f.kind === 'control') {
        if (f.type === 6) send(controlFrame(6, 0, f.body)); // PING echo
        else if (f.type === 3) streams.get(f.body.readUInt32BE(0) & 0x7fffffff)?.sock?.destroy(); // RST_STREAM
      } else {
        const st = streams.get(f.id);
        if (st?.sock) {
          if (f.body.length > 0) st.sock.write(f.body);
          if (f.flags & 1) st.sock.end();
        }
      }
    }
  });
  ws.on('close', () => {
    for (const s of streams.values()) s.sock?.destroy();
  });
}
