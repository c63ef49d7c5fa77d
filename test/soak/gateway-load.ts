/**
 * `npm run soak:gateway` (needs the harness; a minute by default,
 * `GATEWAY_LOAD_SECONDS=N` to change it). Not part of `npm test`: a soak run,
 * kept out of the suite for its length.
 *
 * Load: 50 concurrent watches plus 200 requests/s for a minute through the
 * gateway (its own process, real event pipeline) to the real API server.
 * Every request succeeds, every watch stays open and keeps receiving events,
 * every request is recorded, and memory after a full GC is steady: the heap
 * at the end is within a fixed margin of the heap after warm-up. RSS before
 * and after is printed for the report.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import https from 'node:https';
import type { ClientRequest } from 'node:http';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import autocannon from 'autocannon';
import { REPO_ROOT } from '../harness/harness.ts';
import { harness } from '../support/env.ts';
import { createNamespace, serviceAccountWithToken, uniq } from '../gateway/support.ts';

const DURATION_S = Number(process.env['GATEWAY_LOAD_SECONDS'] ?? 60);
const WATCHES = 50;
const RATE = 200;

test(`${WATCHES} watches plus ${RATE} requests/s for ${DURATION_S} s: no errors, watches stay open, memory steady`, { timeout: (DURATION_S + 120) * 1000 }, async (t) => {
  const env = harness();
  const ns = `gw-load-${uniq()}`;
  t.after(await createNamespace(ns));
  const token = await serviceAccountWithToken(ns, 'load');
  const child = spawn(process.execPath, ['--expose-gc', path.join(REPO_ROOT, 'test', 'tools', 'gateway-process.ts')], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  t.after(async () => {
    child.kill('SIGTERM');
    await exited;
  });
  const gw = await new Promise<{ url: string; ca: string }>((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (c: Buffer) => {
      buf += c.toString();
      const nl = buf.indexOf('\n');
      if (nl !== -1) resolve(JSON.parse(buf.slice(0, nl)) as { url: string; ca: string });
    });
    child.once('exit', (code) => reject(new Error(`gateway exited ${code}`)));
  });
  const ask = <T>(msg: string): Promise<T> =>
    new Promise((resolve) => {
      child.once('message', (m) => resolve(m as T));
      child.send(msg);
    });

  // 50 watches, each on its own connection.
  const agent = new https.Agent({ ca: gw.ca, keepAlive: false, maxSockets: WATCHES + 10 });
  const watchEvents = new Array<number>(WATCHES).fill(0);
  const watchEnded = new Array<boolean>(WATCHES).fill(false);
  const requests: ClientRequest[] = [];
  await Promise.all(
    Array.from({ length: WATCHES }, (_, i) =>
      new Promise<void>((resolve, reject) => {
        const req = https.get(`${gw.url}/api/v1/namespaces/${ns}/configmaps?watch=true&timeoutSeconds=${DURATION_S + 120}`, { agent, headers: { authorization: `Bearer ${token}` } }, (res) => {
          if (res.statusCode !== 200) reject(new Error(`watch ${i}: ${res.statusCode}`));
          res.on('data', (c: Buffer) => void (watchEvents[i]! += c.toString().split('\n').filter((l) => l.includes('"type"')).length));
          res.on('end', () => void (watchEnded[i] = true));
          res.on('error', () => void (watchEnded[i] = true));
          resolve();
        });
        req.on('error', reject);
        requests.push(req);
      }),
    ),
  );

  // A writer so the watches have something to stream: one ConfigMap update per second, straight to the API server.
  const apiCa = readFileSync(env.APISERVER_CA, 'utf8');
  const writerAgent = new https.Agent({ ca: apiCa, keepAlive: true });
  let writes = 0;
  const writeOnce = (): Promise<void> =>
    new Promise((resolve) => {
      const body = JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'ticker', namespace: ns }, data: { n: String(writes) } });
      const req = https.request(`${env.APISERVER_URL}/api/v1/namespaces/${ns}/configmaps/ticker?fieldManager=load`, { method: 'PATCH', agent: writerAgent, headers: { authorization: `Bearer ${env.ADMIN_TOKEN}`, 'content-type': 'application/apply-patch+yaml' } }, (res) => {
        res.resume();
        res.on('end', () => {
          if (res.statusCode === 200 || res.statusCode === 201) writes++;
          resolve();
        });
      });
      req.on('error', () => resolve());
      req.end(body);
    });
  const ticker = setInterval(() => void writeOnce(), 1000);

  const getTarget = `${gw.url}/api/v1/namespaces/${ns}/configmaps/ticker`;
  await writeOnce();
  // Warm-up, then the baseline heap.
  await autocannon({ url: getTarget, headers: { authorization: `Bearer ${token}` }, connections: 4, duration: 5, overallRate: RATE, tlsOptions: { ca: gw.ca } });
  const warm = (await ask<{ mem: NodeJS.MemoryUsage }>('mem')).mem;
  const before = (await ask<{ emitted: number }>('stats')).emitted;
  // RSS every 15 s during the run, to tell a plateau from steady growth.
  const rssSeries: number[] = [];
  const sampler = setInterval(() => void ask<{ mem: NodeJS.MemoryUsage }>('mem').then((m) => rssSeries.push(m.mem.rss)), 15_000);
  const r = await autocannon({ url: getTarget, headers: { authorization: `Bearer ${token}` }, connections: 8, duration: DURATION_S, overallRate: RATE, tlsOptions: { ca: gw.ca } });
  clearInterval(sampler);
  clearInterval(ticker);
  const end = (await ask<{ mem: NodeJS.MemoryUsage }>('mem')).mem;
  // Events of the last responses may still be on their way to disk.
  let emitted = 0;
  for (let i = 0; i < 50; i++) {
    emitted = (await ask<{ emitted: number }>('stats')).emitted - before;
    if (emitted >= r.requests.total) break;
    await new Promise((res) => setTimeout(res, 100));
  }
  const mb = (n: number): string => (n / 1024 / 1024).toFixed(1);
  t.diagnostic(`requests ${r.requests.total} (${r.requests.average.toFixed(0)}/s), p99 ${r.latency.p99} ms, errors ${r.errors}, non2xx ${r.non2xx}; config map updates ${writes}; watch events min ${Math.min(...watchEvents)}`);
  const memLine = `RSS ${mb(warm.rss)} -> ${mb(end.rss)} MB (every 15 s: ${rssSeries.map(mb).join(', ')}); heapUsed after GC ${mb(warm.heapUsed)} -> ${mb(end.heapUsed)} MB; external ${mb(warm.external)} -> ${mb(end.external)} MB; arrayBuffers ${mb(warm.arrayBuffers)} -> ${mb(end.arrayBuffers)} MB`;
  t.diagnostic(`gateway ${memLine}`);
  process.stderr.write(`[gateway load] ${memLine}; ${r.requests.total} requests, p99 ${r.latency.p99} ms\n`);

  for (const req of requests) req.destroy();
  agent.destroy();
  writerAgent.destroy();

  assert.equal(r.errors, 0);
  assert.equal(r.non2xx, 0);
  assert.ok(r.requests.total >= RATE * DURATION_S * 0.9, `sustained ~${RATE}/s (got ${r.requests.total})`);
  assert.ok(watchEnded.every((e) => !e), 'every watch stayed open');
  assert.ok(writes >= DURATION_S / 2, `the writer kept writing (${writes})`);
  assert.ok(Math.min(...watchEvents) >= writes / 2, `every watch kept receiving events (min ${Math.min(...watchEvents)} of ${writes})`);
  assert.ok(emitted >= r.requests.total, `every request recorded (${emitted} events for ${r.requests.total} requests)`);
  // Steady memory: no growth beyond a fixed margin after a full GC (a leak of even 1 KiB per request would add ~12 MiB).
  assert.ok(end.heapUsed - warm.heapUsed < 8 * 1024 * 1024, `heap grew ${mb(end.heapUsed - warm.heapUsed)} MB`);
});
