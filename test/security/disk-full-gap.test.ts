/**
 * Attack class (or accident): the disk under the local log fills up. Events
 * that cannot be written are refused (fail closed), the pipeline goes
 * unready (/readyz 503) until it can write again, and then a signed
 * `chain.gap` declares the lost seqs, so verify reports a declared gap
 * instead of the deletion it would otherwise look like. A real full
 * filesystem: a 1 MiB tmpfs this test mounts and removes (needs root).
 * The same holds for the Kafka sink's spool (Kafka down and the disk full).
 */
import assert from 'node:assert/strict';
import { closeSync, cpSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { generateKeyPairSync, sign } from 'node:crypto';
import { Registry } from 'prom-client';
import { productEnv, run } from '../support/env.ts';
import net from 'node:net';
import { createEventPipeline, localLogDir, spoolDir, type EventPipeline } from '../../core/pipeline.ts';
import { startHealthServer } from '../../core/health-server.ts';
import { canonicalJson } from '../../core/chain/canonical.ts';
import { sha256Hex } from '../../core/chain/hash.ts';
import { gapMessage } from '../../core/chain/signing.ts';
import type { GapBody, KubetrailEvent } from '../../core/events/model.ts';
import type { VerifyReport } from '../../core/chain/verify.ts';
import { SinkError } from '../../core/sinks/errors.ts';
import { apiRequestDraft, memoryLogger, pipelineConfig, tempDir, topics } from '../pipeline/support.ts';

const CLI = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'cli', 'main.ts');
const dir = tempDir('kt-disk-full-');
const mnt = path.join(dir, 'mnt');
mkdirSync(mnt);
let mounted = false;
after(async () => {
  if (mounted) await run('umount', [mnt]);
  rmSync(dir, { recursive: true, force: true });
});

function readyz(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/readyz' }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    }).on('error', reject);
  });
}

/** Fills the filesystem of `file` until a write fails with ENOSPC. */
function fill(file: string): void {
  const fd = openSync(file, 'w');
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    closeSync(fd);
  }
  // The last partial chunk: write byte by byte what still fits.
  const fd2 = openSync(file, 'a');
  try {
    for (;;) writeSync(fd2, 'a');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    closeSync(fd2);
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

/**
 * Fills the disk under a running pipeline, checks that a write is refused,
 * that it is unready (and refuses without sealing) until the disk has room,
 * then ready again. Returns how many emits were refused while unready.
 */
async function diskFullCycle(p: EventPipeline, healthPort: number, filler: string): Promise<void> {
  for (let i = 0; i < 20; i++) await p.emit(apiRequestDraft(i, 300));
  assert.equal(await readyz(healthPort), 200);
  fill(filler);
  // What was left of the last page may still take an event or two: emit until one is refused.
  let failures = 0;
  for (let i = 0; i < 200 && failures === 0; i++) {
    try {
      await p.emit(apiRequestDraft(100 + i, 300));
    } catch (err) {
      assert.ok(err instanceof SinkError, String(err));
      assert.equal(err.code, 'SINK_ERR_IO');
      failures += 1;
    }
  }
  assert.equal(failures, 1, 'a write was refused on the full disk');
  assert.equal(p.ready(), false, 'the pipeline is unready while it cannot write');
  assert.equal(await readyz(healthPort), 503);
  // Until the gap is declared, emits are refused without consuming a seq.
  await assert.rejects(p.emit(apiRequestDraft(500, 300)), (e: unknown) => e instanceof SinkError && e.code === 'SINK_ERR_UNAVAILABLE');
  await assert.rejects(p.emit(apiRequestDraft(501, 300)), (e: unknown) => e instanceof SinkError && e.code === 'SINK_ERR_UNAVAILABLE');
  unlinkSync(filler);
  await until(() => p.ready(), 'the pipeline to be ready again');
  assert.equal(await readyz(healthPort), 200);
  for (let i = 0; i < 10; i++) await p.emit(apiRequestDraft(600 + i, 300));
}

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 2000 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(cond(), `timed out waiting for ${what}`);
}

test('a full disk: writes are refused, /readyz fails until the log is writable, then a signed gap declaration makes verify pass', async () => {
  const m = await run('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mnt]);
  assert.equal(m.status, 0, `mount tmpfs (root needed): ${m.stderr}`);
  mounted = true;
  const dataDir = path.join(mnt, 'data');
  const { log } = memoryLogger('warn');
  const registry = new Registry();
  const config = pipelineConfig(dataDir, { signing: { checkpointEvery: 1000, checkpointIntervalMs: 60_000 } });
  const p = await createEventPipeline({ config, log, registry, component: 'webhook', instance: 'disk-full' });
  const health = await startHealthServer('127.0.0.1:0', registry);
  health.addCheck('event-pipeline', () => p.ready());
  try {
    await diskFullCycle(p, health.port, path.join(mnt, 'filler'));
  } finally {
    await health.close();
    await p.close();
  }

  const logDir = localLogDir(dataDir, 'webhook');
  const pub = path.join(dataDir, 'keys', 'dev-signing.pub.pem');
  const r = await run(process.execPath, [CLI, 'verify', '-o', 'json', '--public-key', pub, '--log-dir', logDir], undefined, { env: productEnv() });
  const report = JSON.parse(r.stdout) as VerifyReport;
  assert.deepEqual(report.issues, []);
  assert.equal(r.status, 0);
  const gaps = report.sources[0]?.declaredGaps ?? [];
  assert.equal(gaps.length, 1, JSON.stringify(report.sources));
  assert.equal(gaps[0]?.events, 1);
  assert.equal(gaps[0]?.refused, 2);
  assert.equal(gaps[0]?.reason, 'SINK_ERR_IO');
  assert.equal(gaps[0]?.errno, 'ENOSPC');
  const text = await run(process.execPath, [CLI, 'verify', '--public-key', pub, '--log-dir', logDir], undefined, { env: productEnv() });
  assert.match(text.stdout, /DECLARED GAP test\/webhook\/disk-full seq \d+: 1 event\(s\) could not be recorded \(SINK_ERR_IO ENOSPC\)/);

  // The declaration is evidence only while its signature holds: one changed
  // to cover a deletion (re-hashed, re-signed with another key) is refused.
  const copy = path.join(dir, 'forged');
  cpSync(logDir, copy, { recursive: true });
  const seg = path.join(copy, readdirSync(copy).filter((f) => f.endsWith('.ndjson'))[0] as string);
  const lines = readFileSync(seg, 'utf8').trimEnd().split('\n');
  const gi = lines.findIndex((l) => (JSON.parse(l) as KubetrailEvent).type === 'chain.gap');
  const g = JSON.parse(lines[gi] as string) as KubetrailEvent<'chain.gap'>;
  const body: GapBody = { ...g.body, fromSeq: g.body.fromSeq - 1, events: 2 };
  body.signature = sign(null, gapMessage(g.source.instance, body), generateKeyPairSync('ed25519').privateKey).toString('base64');
  const forged = { ...g, body, chain: { ...g.chain!, hash: '' } };
  forged.chain.hash = sha256Hex(canonicalJson(forged));
  const deleted = gi - 2; // the event the forged declaration is meant to hide
  const edited = lines.map((l, i) => (i === gi ? canonicalJson(forged) : l)).filter((_, i) => i !== deleted);
  writeFileSync(seg, edited.join('\n') + '\n');
  const f = await run(process.execPath, [CLI, 'verify', '-o', 'json', '--public-key', pub, '--log-dir', copy], undefined, { env: productEnv() });
  const fr = JSON.parse(f.stdout) as VerifyReport;
  assert.deepEqual([...new Set(fr.issues.map((i) => i.kind))].sort(), ['altered', 'bad-signature', 'broken-link', 'missing'], JSON.stringify(fr.issues));
  assert.equal(f.status, 1);
});

test('Kafka down and the disk under the spool full: the same refusal, readiness and declared gap in the spool', async () => {
  assert.ok(mounted, 'the tmpfs of the first test');
  const dataDir = path.join(mnt, 'kafka-data');
  const { log } = memoryLogger('warn');
  const registry = new Registry();
  // Nothing listens on this port: the brokers are unreachable from the start, so every event goes to the spool.
  const config = pipelineConfig(dataDir, {
    kafka: { brokers: [`127.0.0.1:${await freePort()}`], topics: topics(), connectTimeoutMs: 300, ackDeadlineMs: 500 },
    spool: { groupCommitMs: 0 },
    signing: { checkpointEvery: 1000, checkpointIntervalMs: 60_000, headDir: path.join(dir, 'kafka-heads') },
  });
  const p = await createEventPipeline({ config, log, registry, component: 'proxy', instance: 'spool-full-disk' });
  const health = await startHealthServer('127.0.0.1:0', registry);
  health.addCheck('event-pipeline', () => p.ready());
  try {
    await diskFullCycle(p, health.port, path.join(mnt, 'filler'));
  } finally {
    await health.close();
    await p.close();
  }
  // Kafka never acknowledged a checkpoint: a signed head naming one would call the topic truncated.
  assert.deepEqual(readdirSync(path.join(dir, 'kafka-heads')), []);
  const pub = path.join(dataDir, 'keys', 'dev-signing.pub.pem');
  const r = await run(process.execPath, [CLI, 'verify', '-o', 'json', '--public-key', pub, '--log-dir', spoolDir(dataDir, 'proxy')], undefined, { env: productEnv() });
  const report = JSON.parse(r.stdout) as VerifyReport;
  assert.deepEqual(report.issues, []);
  assert.equal(r.status, 0);
  const gaps = report.sources[0]?.declaredGaps ?? [];
  assert.equal(gaps.length, 1, JSON.stringify(report.sources));
  assert.equal(gaps[0]?.events, 1);
  assert.equal(gaps[0]?.refused, 2);
  assert.equal(gaps[0]?.errno, 'ENOSPC');
});
