import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { Writable } from 'node:stream';
import { Registry } from 'prom-client';
import { loadConfig } from '../config.ts';
import { createLogger } from '../logger.ts';
import { createEventPipeline, localLogDir } from '../pipeline.ts';
import { readEvents } from '../events/reader.ts';
import { ChainVerifier } from '../chain/verify.ts';
import { loadPublicKey } from '../chain/signing.ts';
import { readRecords } from '../events/reader.ts';
import type { EventDraft } from '../events/model.ts';

const root = mkdtempSync(path.join(tmpdir(), 'kt-local-'));
after(() => rmSync(root, { recursive: true, force: true }));

function logger(): { log: ReturnType<typeof createLogger>; text: () => string } {
  let text = '';
  const destination = new Writable({ write: (c: Buffer, _e, cb) => ((text += c.toString()), cb()) });
  return { log: createLogger({ level: 'warn', destination }), text: () => text };
}

const draft = (user: string, ns: string): EventDraft<'api.request'> => ({
  type: 'api.request',
  actor: { username: user, groups: [], authn: 'token' },
  target: { version: 'v1', resource: 'pods', namespace: ns, name: 'p' },
  body: { verb: 'get', method: 'GET', path: `/api/v1/namespaces/${ns}/pods/p`, status: 200, latencyMs: 1, bytesIn: 0, bytesOut: 1 },
});

test('without kafka the pipeline writes the local log; a restart continues the chain, and the dev key is announced loudly', async () => {
  const dataDir = path.join(root, 'restart');
  const config = loadConfig({ document: { cluster: 'unit', dataDir, signing: { checkpointEvery: 2, checkpointIntervalMs: 60_000 } } });
  const l1 = logger();
  const p1 = await createEventPipeline({ config, log: l1.log, registry: new Registry(), component: 'webhook' });
  assert.equal(p1.kind, 'local');
  assert.match(l1.text(), /SIGNING WITH A GENERATED DEV KEY/);
  const a = await p1.emit(draft('alice', 'ns1'));
  await p1.emit(draft('bob', 'ns2'));
  await p1.close();
  const p2 = await createEventPipeline({ config, log: logger().log, registry: new Registry(), component: 'webhook' });
  const c = await p2.emit(draft('alice', 'ns2'));
  await p2.close();
  assert.equal(a.chain?.seq, 1);
  assert.ok((c.chain?.seq ?? 0) > 2, 'the second process continued the sequence');
  assert.equal(a.source.instance, c.source.instance, 'the stored instance id is stable');

  const v = new ChainVerifier({ publicKey: loadPublicKey(path.join(dataDir, 'keys', 'dev-signing.pub.pem')) });
  for await (const r of readRecords({ source: { kind: 'local', dir: dataDir } })) v.add(r);
  const report = v.finish();
  assert.deepEqual(report.issues, []);
  assert.ok((report.sources[0]?.validCheckpoints ?? 0) >= 2);

  const FILTERS = [
    [{ user: 'alice' }, 2],
    [{ namespace: 'ns2' }, 2],
    [{ user: 'alice', namespace: 'ns1' }, 1],
    [{ type: 'api' }, 3],
    [{ type: 'chain.checkpoint' }, report.sources[0]?.checkpoints ?? -1],
    [{ since: new Date(Date.now() + 60_000) }, 0],
  ] as const;
  for (const [filter, count] of FILTERS) {
    let got = 0;
    for await (const _ of readEvents({ source: { kind: 'local', dir: localLogDir(dataDir, 'webhook') }, filter })) got += 1;
    assert.equal(got, count, JSON.stringify(filter));
  }
});

test('following the local log yields events written after the reader started', async () => {
  const dataDir = path.join(root, 'follow');
  const config = loadConfig({ document: { dataDir } });
  const p = await createEventPipeline({ config, log: logger().log, registry: new Registry(), component: 'proxy' });
  await p.emit(draft('a', 'x'));
  const ac = new AbortController();
  const seen: string[] = [];
  const reading = (async () => {
    for await (const e of readEvents({ source: { kind: 'local', dir: dataDir }, follow: true, signal: ac.signal, pollMs: 20, filter: { type: 'api.request' } })) {
      seen.push(e.actor?.username ?? '');
      if (seen.length === 3) ac.abort();
    }
  })();
  await p.emit(draft('b', 'x'));
  await p.emit(draft('c', 'x'));
  await reading;
  await p.close();
  assert.deepEqual(seen, ['a', 'b', 'c']);
});

test('a burst of concurrent emits leaves the highest link in the chain head file, once the burst is durable and at close', async () => {
  const dataDir = path.join(root, 'head-burst');
  const config = loadConfig({ document: { cluster: 'unit', dataDir, signing: { checkpointEvery: 1000, checkpointIntervalMs: 60_000 } } });
  const p = await createEventPipeline({ config, log: logger().log, registry: new Registry(), component: 'proxy', instance: 'burst' });
  const headFile = path.join(dataDir, 'chain', 'proxy-burst.head');
  const head = (): { seq: number; hash: string } => JSON.parse(readFileSync(headFile, 'utf8')) as { seq: number; hash: string };
  const events = await Promise.all(Array.from({ length: 50 }, (_, i) => p.emit(draft(`u${i}`, 'ns'))));
  await new Promise((r) => setImmediate(r));
  const last = events.reduce((m, e) => ((e.chain?.seq ?? 0) > (m.chain?.seq ?? 0) ? e : m));
  assert.equal(last.chain?.seq, 50);
  assert.deepEqual(head(), { seq: 50, hash: last.chain?.hash });
  const more = await p.emit(draft('late', 'ns'));
  await p.close();
  // close() writes a final checkpoint after `more`: the head names that one.
  assert.ok(head().seq > (more.chain?.seq ?? Infinity), `head ${head().seq} is not past ${more.chain?.seq}`);
});
