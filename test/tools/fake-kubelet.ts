/**
 * A fake kubelet for the real API server of the harness: an HTTPS server
 * (certificate signed by the harness CA, as `--kubelet-certificate-authority`
 * requires) serving `/exec/{ns}/{pod}/{container}` over legacy SPDY/3.1 — what
 * the API server's StreamTranslatorHandler speaks toward a node after
 * terminating a client's v5.channel.k8s.io WebSocket. It runs real local
 * processes; with `tty=1` the command runs under util-linux `script` (a real
 * pty) and the client's resize stream is accepted (sizes are not applied).
 *
 * SPDY here: the client (the API server) opens one stream per channel with a
 * `streamtype` header (error, stdin, stdout, stderr); we answer each with
 * SYN_REPLY, start the command once all expected streams exist, write its
 * output as DATA frames on the stdout/stderr streams, and finish with a
 * metav1.Status on the error stream (v4.channel.k8s.io).
 */
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { SpdyFrameReader, StoredZlib, controlFrame, dataFrame, synReply } from './spdy-server.ts';

/** A running fake kubelet. */
export interface FakeKubelet {
  port: number;
  /** Exec and log requests seen: path and query. */
  requests: { path: string; query: URLSearchParams }[];
  /** Log streams (`follow=true`) still open toward the API server. */
  readonly openLogStreams: number;
  close(): Promise<void>;
}

const qbool = (q: URLSearchParams, n: string): boolean => ['1', 'true'].includes(q.get(n) ?? '');

function serveExec(socket: Duplex, q: URLSearchParams): void {
  const out = new StoredZlib();
  const reader = new SpdyFrameReader();
  const streams = new Map<string, number>();
  const tty = qbool(q, 'tty');
  const expected = new Set(['error', ...(qbool(q, 'input') ? ['stdin'] : []), ...(qbool(q, 'output') ? ['stdout'] : []), ...(qbool(q, 'error') && !tty ? ['stderr'] : []), ...(tty ? ['resize'] : [])]);
  let child: ReturnType<typeof spawn> | undefined;
  const write = (b: Buffer): void => {
    if (!socket.destroyed) socket.write(b);
  };
  const start = (): void => {
    const cmd = q.getAll('command');
    const quote = (a: string): string => (/^[A-Za-z0-9_\-./=:,@]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);
    child = tty
      ? spawn('script', ['-qefc', cmd.map(quote).join(' '), '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, TERM: 'dumb' } })
      : spawn(cmd[0] as string, cmd.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    child.stdin?.on('error', () => {});
    if (!streams.has('stdin')) child.stdin?.end();
    const pipe = (src: NodeJS.ReadableStream | null, name: string): Promise<void> =>
      new Promise((resolve) => {
        if (!src) return resolve();
        src.on('data', (c: Buffer) => {
          const id = streams.get(name);
          if (id !== undefined) write(dataFrame(id, 0, c));
        });
        src.on('end', () => resolve());
      });
    const done = Promise.all([pipe(child.stdout, 'stdout'), pipe(child.stderr, tty ? 'stdout' : 'stderr')]);
    child.on('close', (code) => {
      void done.then(() => {
        const status =
          code === 0
            ? { metadata: {}, status: 'Success' }
            : { metadata: {}, status: 'Failure', message: `command terminated with non-zero exit code: exit status ${code}`, reason: 'NonZeroExitCode', details: { causes: [{ reason: 'ExitCode', message: String(code) }] } };
        const err = streams.get('error');
        if (err !== undefined) write(dataFrame(err, 0, Buffer.from(JSON.stringify(status))));
        for (const id of streams.values()) write(dataFrame(id, 1, Buffer.alloc(0)));
        setTimeout(() => socket.end(), 100);
      });
    });
  };
  socket.on('data', (chunk: Buffer) => {
    for (const f of reader.push(chunk)) {
      if (f.kind === 'syn') {
        streams.set(f.headers['streamtype'] ?? '', f.id);
        write(synReply(out, f.id));
        if (child === undefined && [...expected].every((s) => streams.has(s))) start();
      } else if (f.kind === 'control') {
        if (f.type === 6) write(controlFrame(6, 0, f.body)); // PING echo
      } else if (f.id === streams.get('stdin') && child?.stdin) {
        if (f.body.length > 0) child.stdin.write(f.body);
        if (f.flags & 1) child.stdin.end();
      }
    }
  });
  socket.on('error', () => child?.kill('SIGKILL'));
  socket.on('close', () => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
  });
}

/** Starts a fake kubelet on 127.0.0.1 with a certificate the API server trusts. */
export async function startFakeKubelet(cert: { certPem: string; keyPem: string }): Promise<FakeKubelet> {
  const requests: FakeKubelet['requests'] = [];
  let openLogStreams = 0;
  // GET /containerLogs/{ns}/{pod}/{container}: `log line N` every 50 ms; three
  // lines then the end, or with follow=true until the API server hangs up.
  const server: Server = createServer({ cert: cert.certPem, key: cert.keyPem }, (req, res) => {
    const url = new URL(req.url ?? '/', 'https://kubelet');
    if (req.method !== 'GET' || !/^\/containerLogs\/[^/]+\/[^/]+\/[^/]+$/.test(url.pathname)) return void res.writeHead(404).end();
    requests.push({ path: url.pathname, query: url.searchParams });
    const follow = qbool(url.searchParams, 'follow');
    res.writeHead(200, { 'content-type': 'text/plain' });
    let n = 0;
    if (follow) openLogStreams++;
    const timer = setInterval(() => {
      n++;
      res.write(`log line ${n}\n`);
      if (!follow && n === 3) {
        clearInterval(timer);
        res.end();
      }
    }, 50);
    res.on('close', () => {
      clearInterval(timer);
      if (follow) openLogStreams--;
    });
  });
  server.on('upgrade', (req, socket: Socket, head: Buffer) => {
    const url = new URL(req.url ?? '/', 'https://kubelet');
    requests.push({ path: url.pathname, query: url.searchParams });
    const offered = ([] as string[]).concat(req.headers['x-stream-protocol-version'] ?? []).flatMap((v) => v.split(',')).map((s) => s.trim());
    if (!/^\/exec\//.test(url.pathname) || (req.headers.upgrade ?? '').toLowerCase() !== 'spdy/3.1' || !offered.includes('v4.channel.k8s.io')) {
      socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      return;
    }
    socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n');
    serveExec(socket, url.searchParams);
    if (head.length > 0) socket.unshift(head);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as AddressInfo).port,
    requests,
    get openLogStreams() {
      return openLogStreams;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
