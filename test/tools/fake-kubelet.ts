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
import { inflateSync, constants as zc } from 'node:zlib';
import type { Duplex } from 'node:stream';
import { SPDY_DICTIONARY } from '../../exec-proxy/stream/spdy-dictionary.ts';
import { decodeNameValues, encodeNameValues } from '../../exec-proxy/stream/spdy-parser.ts';

/** A running fake kubelet. */
export interface FakeKubelet {
  port: number;
  /** Exec requests seen: path and query. */
  requests: { path: string; query: URLSearchParams }[];
  close(): Promise<void>;
}

function adler32(b: Buffer): number {
  let a = 1;
  let c = 0;
  for (const x of b) {
    a = (a + x) % 65521;
    c = (c + a) % 65521;
  }
  return ((c << 16) | a) >>> 0;
}

/** One direction's header compression: zlib stored blocks, each ended by a sync-flush marker. */
class StoredZlib {
  #started = false;
  block(data: Buffer): Buffer {
    const parts: Buffer[] = [];
    if (!this.#started) {
      let flg = 0x20;
      flg += 31 - ((0x78 * 256 + flg) % 31);
      const id = Buffer.alloc(4);
      id.writeUInt32BE(adler32(SPDY_DICTIONARY));
      parts.push(Buffer.from([0x78, flg]), id);
      this.#started = true;
    }
    const h = Buffer.alloc(5);
    h.writeUInt16LE(data.length, 1);
    h.writeUInt16LE(~data.length & 0xffff, 3);
    parts.push(h, data, Buffer.from([0, 0, 0, 0xff, 0xff]));
    return Buffer.concat(parts);
  }
}

function control(type: number, flags: number, body: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt32BE(0x80030000 + type);
  h.writeUInt32BE(((flags & 0xff) << 24) + body.length, 4);
  return Buffer.concat([h, body]);
}

function data(id: number, flags: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt32BE(id & 0x7fffffff);
  h.writeUInt32BE(((flags & 0xff) << 24) + payload.length, 4);
  return Buffer.concat([h, payload]);
}

const qbool = (q: URLSearchParams, n: string): boolean => ['1', 'true'].includes(q.get(n) ?? '');

function serveExec(socket: Duplex, q: URLSearchParams): void {
  const out = new StoredZlib();
  const compressed: Buffer[] = [];
  let inflated = 0;
  let buf = Buffer.alloc(0);
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
          if (id !== undefined) write(data(id, 0, c));
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
        if (err !== undefined) write(data(err, 0, Buffer.from(JSON.stringify(status))));
        for (const id of streams.values()) write(data(id, 1, Buffer.alloc(0)));
        setTimeout(() => socket.end(), 100);
      });
    });
  };
  socket.on('data', (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk]);
    while (buf.length >= 8) {
      const len = buf.readUInt32BE(4) & 0xffffff;
      if (buf.length < 8 + len) break;
      const first = buf.readUInt32BE(0);
      const flags = buf[4] as number;
      const body = buf.subarray(8, 8 + len);
      buf = buf.subarray(8 + len);
      if (first & 0x80000000) {
        const type = first & 0xffff;
        if (type === 1) {
          const id = body.readUInt32BE(0) & 0x7fffffff;
          compressed.push(body.subarray(10));
          const all = inflateSync(Buffer.concat(compressed), { dictionary: SPDY_DICTIONARY, finishFlush: zc.Z_SYNC_FLUSH });
          const h = decodeNameValues(all.subarray(inflated));
          inflated = all.length;
          streams.set(h['streamtype'] ?? '', id);
          const rb = Buffer.alloc(4);
          rb.writeUInt32BE(id);
          write(control(2, 0, Buffer.concat([rb, out.block(encodeNameValues({}))])));
          if (child === undefined && [...expected].every((s) => streams.has(s))) start();
        } else if (type === 6) {
          write(control(6, 0, body));
        }
      } else {
        const id = first & 0x7fffffff;
        if (id === streams.get('stdin') && child?.stdin) {
          if (body.length > 0) child.stdin.write(body);
          if (flags & 1) child.stdin.end();
        }
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
  const server: Server = createServer({ cert: cert.certPem, key: cert.keyPem }, (_req, res) => res.writeHead(404).end());
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
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
