/**
 * Attack class: removing or replaying the NEWEST evidence. Cutting the log
 * after its last checkpoint, deleting the whole last segment (checkpoint
 * included) or copying an old segment back in used to verify as OK; with
 * the signed head kept in `signing.headDir`, `kubetrail verify
 * --signed-heads` catches each, and a clean log still passes.
 */
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Registry } from 'prom-client';
import { productEnv, run } from '../support/env.ts';
import { createEventPipeline, localLogDir } from '../../core/pipeline.ts';
import type { KubetrailEvent } from '../../core/events/model.ts';
import type { VerifyReport } from '../../core/chain/verify.ts';
import { apiRequestDraft, memoryLogger, pipelineConfig, tempDir } from '../pipeline/support.ts';

const CLI = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'cli', 'main.ts');
const dir = tempDir('kt-evidence-');
after(() => rmSync(dir, { recursive: true, force: true }));

const dataDir = path.join(dir, 'data');
const headDir = path.join(dir, 'heads');
const pub = path.join(dataDir, 'keys', 'dev-signing.pub.pem');
let logDir = '';

before(async () => {
  const { log } = memoryLogger();
  // ~1 KiB events in 32 KiB segments: 350 events span about a dozen segments.
  const config = pipelineConfig(dataDir, { localLog: { segmentBytes: 32 * 1024 }, signing: { checkpointEvery: 100, checkpointIntervalMs: 60_000, headDir } });
  const p = await createEventPipeline({ config, log, registry: new Registry(), component: 'webhook', instance: 'evidence' });
  for (let i = 0; i < 350; i++) await p.emit(apiRequestDraft(i, 700));
  await p.close();
  logDir = localLogDir(dataDir, 'webhook');
});

async function verify(logCopy: string, withHeads = true): Promise<{ status: number | null; report: VerifyReport; stdout: string }> {
  const r = await run(process.execPath, [CLI, 'verify', '-o', 'json', '--public-key', pub, '--log-dir', logCopy, ...(withHeads ? ['--signed-heads', headDir] : [])], undefined, { env: productEnv() });
  assert.ok(r.stdout.trim() !== '', `verify printed nothing: ${r.stderr}`);
  return { status: r.status, report: JSON.parse(r.stdout) as VerifyReport, stdout: r.stdout };
}

function copyOfLog(name: string): { copy: string; segments: string[] } {
  const copy = path.join(dir, name);
  cpSync(logDir, copy, { recursive: true });
  return { copy, segments: readdirSync(copy).filter((f) => f.endsWith('.ndjson')).sort() };
}

const kinds = (r: VerifyReport): string[] => [...new Set(r.issues.map((i) => i.kind))].sort();

test('a clean log verifies against its signed head, which vouches for every event', async () => {
  const { copy } = copyOfLog('clean');
  const { status, report } = await verify(copy);
  assert.deepEqual(report.issues, []);
  assert.equal(status, 0);
  assert.equal(report.signedHeads, 1);
  // 350 events + 3 periodic checkpoints + the one signed at close.
  assert.equal(report.sources[0]?.lastSeq, 354);
  assert.equal(report.sources[0]?.signedHead, 353, 'the signed head is the last event before the final checkpoint');
  assert.equal(report.sources[0]?.unsignedTail, 1, 'only the final checkpoint event itself is after the signed seq');
});

test('the newest events cut off after the last checkpoint left in the log: verify reports the signed head as not present', async () => {
  const { copy, segments } = copyOfLog('cut-tail');
  // Put every line in one list, cut right after the checkpoint at seq 303 (a
  // checkpoint-aligned cut leaves no unsigned tail to give it away), write back.
  const lines = segments.flatMap((s) => readFileSync(path.join(copy, s), 'utf8').trimEnd().split('\n'));
  const cut = lines.findIndex((l) => (JSON.parse(l) as KubetrailEvent).chain?.seq === 303);
  assert.equal((JSON.parse(lines[cut] as string) as KubetrailEvent).type, 'chain.checkpoint');
  for (const s of segments) unlinkSync(path.join(copy, s));
  writeFileSync(path.join(copy, segments[0] as string), lines.slice(0, cut + 1).join('\n') + '\n');
  // Without the signed head this cut is invisible: that is the limit docs/security.md states.
  const blind = await verify(copy, false);
  assert.equal(blind.status, 0, JSON.stringify(blind.report.issues));
  const { status, report } = await verify(copy);
  assert.deepEqual(kinds(report), ['truncated'], JSON.stringify(report.issues));
  assert.match(report.issues[0]?.detail ?? '', /^last signed head seq 353 not present/);
  assert.equal(status, 1);
});

test('the whole last segment removed, its checkpoint included: verify reports the signed head as not present', async () => {
  const { copy, segments } = copyOfLog('no-last-segment');
  unlinkSync(path.join(copy, segments.at(-1) as string));
  const { status, report } = await verify(copy);
  assert.deepEqual(kinds(report), ['truncated'], JSON.stringify(report.issues));
  assert.equal(status, 1);
});

test('every segment removed: the signed head still says the source existed', async () => {
  const copy = path.join(dir, 'empty');
  mkdirSync(copy);
  const { status, report } = await verify(copy);
  assert.deepEqual(kinds(report), ['truncated'], JSON.stringify(report.issues));
  assert.equal(status, 1);
});

test('an old segment copied back in after the newest is reported as a replay, not as duplicates', async () => {
  const { copy, segments } = copyOfLog('replayed');
  cpSync(path.join(copy, segments[1] as string), path.join(copy, '000000000900.ndjson'));
  const { status, report } = await verify(copy);
  assert.deepEqual(kinds(report), ['replayed'], JSON.stringify(report.issues));
  assert.equal(status, 1);
});

test('an old segment copied in between two others is a replay too', async () => {
  const { copy, segments } = copyOfLog('replayed-middle');
  // Rename every segment after the 5th up by one and put a copy of the 2nd in the hole.
  for (const s of [...segments].reverse().slice(0, segments.length - 5)) {
    const n = Number(s.slice(0, 12)) + 1;
    cpSync(path.join(copy, s), path.join(copy, `${String(n).padStart(12, '0')}.ndjson`));
  }
  cpSync(path.join(copy, segments[1] as string), path.join(copy, segments[5] as string));
  const { status, report } = await verify(copy);
  assert.deepEqual(kinds(report), ['replayed'], JSON.stringify(report.issues));
  assert.equal(status, 1);
});

test('copies that repeat the stream through to its newest event (what a re-send looks like) are duplicates, not a replay', async () => {
  const { copy, segments } = copyOfLog('resent-tail');
  const last = path.join(copy, segments.at(-1) as string);
  const lines = readFileSync(last, 'utf8').trimEnd().split('\n');
  writeFileSync(last, [...lines, ...lines.slice(-5)].join('\n') + '\n');
  const { status, report } = await verify(copy);
  assert.deepEqual(report.issues, []);
  assert.equal(report.sources[0]?.duplicates, 5);
  assert.equal(status, 0);
});

test('a restart whose local files end before the signed head continues the chain after it: the loss shows as missing seqs, never as reused ones', async () => {
  const data2 = path.join(dir, 'restarted');
  cpSync(dataDir, data2, { recursive: true });
  const heads2 = path.join(dir, 'restarted-heads');
  cpSync(headDir, heads2, { recursive: true });
  const log2 = localLogDir(data2, 'webhook');
  const segments = readdirSync(log2).filter((f) => f.endsWith('.ndjson')).sort();
  for (const s of segments.slice(-2)) unlinkSync(path.join(log2, s));
  // The chain head hint goes too, as it would with the whole data dir lost.
  rmSync(path.join(data2, 'chain'), { recursive: true });
  const { log, lines } = memoryLogger();
  const config = pipelineConfig(data2, { localLog: { segmentBytes: 32 * 1024 }, signing: { checkpointEvery: 100, checkpointIntervalMs: 60_000, headDir: heads2 } });
  const p = await createEventPipeline({ config, log, registry: new Registry(), component: 'webhook', instance: 'evidence' });
  const first = await p.emit(apiRequestDraft(1000, 10));
  await p.close();
  assert.equal(first.chain?.seq, 355, 'continues after the checkpoint of the signed head (seq 354)');
  assert.ok(lines().some((l) => l['setting'] === 'signing.headDir' && l['signedHeadSeq'] === 354), JSON.stringify(lines()));
  const r = await run(process.execPath, [CLI, 'verify', '-o', 'json', '--public-key', path.join(data2, 'keys', 'dev-signing.pub.pem'), '--log-dir', log2, '--signed-heads', heads2], undefined, { env: productEnv() });
  const report = JSON.parse(r.stdout) as VerifyReport;
  assert.deepEqual(kinds(report), ['missing'], JSON.stringify(report.issues));
  assert.equal(r.status, 1);
});

test('a signed head edited to claim more (or fewer) events than were signed is a bad signature, not evidence', async () => {
  const { copy } = copyOfLog('edited-head');
  const heads = path.join(dir, 'edited-heads');
  cpSync(headDir, heads, { recursive: true });
  const file = path.join(heads, readdirSync(heads)[0] as string);
  const h = JSON.parse(readFileSync(file, 'utf8')) as { seq: number };
  writeFileSync(file, JSON.stringify({ ...h, seq: h.seq - 50 }) + '\n');
  const r = await run(process.execPath, [CLI, 'verify', '-o', 'json', '--public-key', pub, '--log-dir', copy, '--signed-heads', heads], undefined, { env: productEnv() });
  const report = JSON.parse(r.stdout) as VerifyReport;
  assert.deepEqual(kinds(report), ['bad-signature'], JSON.stringify(report.issues));
  assert.equal(r.status, 1);
  // A file there that is not a signed head at all is a usage error: evidence is never skipped silently.
  writeFileSync(path.join(heads, 'junk.head.json'), '{"kind":"nothing"}\n');
  const u = await run(process.execPath, [CLI, 'verify', '--public-key', pub, '--log-dir', copy, '--signed-heads', heads], undefined, { env: productEnv() });
  assert.equal(u.status, 2);
  assert.match(u.stderr, /--signed-heads: .*junk\.head\.json: not a kubetrail signed head/);
});
