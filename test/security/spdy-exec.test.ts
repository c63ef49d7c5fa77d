/**
 * Legacy SPDY exec through the gateway fails closed on a byte stream it cannot
 * demultiplex: after a real 101 from the API server and kubelet, a data frame
 * on a stream that was never opened, or bytes that are not SPDY/3, end the
 * session at once and it is recorded as an error (never as completed, never
 * relayed on unrecorded). A raw TLS client plays the attacker; the rest is real.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:tls';
import { test } from 'node:test';
import { sessionEnd } from '../exec/helpers.ts';
import { nodeEnv, runPod, startNodeGateway, uniq } from '../node/support.ts';

/** Sends a SPDY exec upgrade, waits for the 101, then writes `after`; resolves with what came back once the gateway closes. */
function rawSpdyExec(gatewayUrl: string, token: string, pod: string, after: Buffer): Promise<{ head: string; closed: boolean }> {
  const u = new URL(gatewayUrl);
  return new Promise((resolve, reject) => {
    const s = connect({ host: u.hostname, port: Number(u.port), rejectUnauthorized: false });
    let got = Buffer.alloc(0);
    let sent = false;
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`the gateway kept the connection open: ${got.toString('latin1').slice(0, 200)}`));
    }, 30_000);
    s.on('secureConnect', () => {
      s.write(
        `POST /api/v1/namespaces/agents/pods/${pod}/exec?command=sleep&command=30&stdout=true HTTP/1.1\r\n` +
          `Host: ${u.host}\r\nAuthorization: Bearer ${token}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n` +
          'X-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\n',
      );
    });
    s.on('data', (c: Buffer) => {
      got = Buffer.concat([got, c]);
      if (!sent && got.includes('\r\n\r\n')) {
        sent = true;
        s.write(after);
      }
    });
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(timer);
      const text = got.toString('latin1');
      resolve({ head: text.slice(0, text.indexOf('\r\n')), closed: true });
    });
  });
}

const cases = [
  // A SPDY/3 data frame (control bit clear) for stream 1, which no SYN_STREAM opened: 8-byte header then "hello".
  { name: 'a data frame on a stream that was never opened', bytes: Buffer.from('0000000100000005' + Buffer.from('hello').toString('hex'), 'hex') },
  // A control frame of SPDY version 2 (SYN_STREAM), which SPDY/3.1 peers must not send.
  { name: 'a control frame of another SPDY version', bytes: Buffer.from('80020001000000000000', 'hex') },
];

for (const c of cases) {
  test(`a SPDY exec that sends ${c.name} after the 101 is cut off and recorded as an error`, async (t) => {
    const env = nodeEnv();
    const pod = await runPod(t, `kt-spdy-bad-${uniq()}`, { command: ['sleep', '3600'] });
    const g = await startNodeGateway();
    t.after(() => g.close());
    const r = await rawSpdyExec(g.gw.url, env.AGENT_TOKEN, pod, c.bytes);
    assert.equal(r.head, 'HTTP/1.1 101 Switching Protocols');
    assert.ok(r.closed);
    const sink = g.memory!;
    const end = await sessionEnd(sink, sink.ofType('session.start').at(-1)?.correlation?.session as string);
    assert.equal(end.outcome, 'error', JSON.stringify(end));
    assert.equal(end.error, 'STREAM_ERR_SPDY_FRAME');
    assert.equal(end.protocol, 'SPDY/3.1');
  });
}
