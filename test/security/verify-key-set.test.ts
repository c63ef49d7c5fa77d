/**
 * `kubetrail verify` on one topic written by a webhook and a gateway, each
 * with its own (dev) signing key, as every component instance has without
 * signing.keyFile: it used to take one key, so such a topic never verified.
 * Keys come from repeated --public-key flags, a key-set file (several PEM
 * blocks) or a directory of *.pem; a missing key is still a bad signature.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Registry } from 'prom-client';
import { harness, productEnv, run } from '../support/env.ts';
import { createEventPipeline } from '../../core/pipeline.ts';
import type { VerifyReport } from '../../core/chain/verify.ts';
import { apiRequestDraft, memoryLogger, pipelineConfig, tempDir, topics } from '../pipeline/support.ts';

const CLI = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'cli', 'main.ts');
const dir = tempDir('kt-key-set-');
after(() => rmSync(dir, { recursive: true, force: true }));

const t = topics();
const headDir = path.join(dir, 'heads');
const pubOf = (component: string): string => path.join(dir, component, 'keys', 'dev-signing.pub.pem');
let brokers = '';

before(async () => {
  brokers = harness().KAFKA_BROKERS;
  for (const component of ['webhook', 'proxy'] as const) {
    const config = pipelineConfig(path.join(dir, component), {
      kafka: { brokers: brokers.split(','), topics: t },
      signing: { checkpointEvery: 40, checkpointIntervalMs: 60_000, headDir },
    });
    const p = await createEventPipeline({ config, log: memoryLogger().log, registry: new Registry(), component, instance: `${component}-0` });
    await Promise.all(Array.from({ length: 100 }, (_, i) => p.emit(apiRequestDraft(i, 100))));
    await p.close();
  }
  assert.notEqual(readFileSync(pubOf('webhook'), 'utf8'), readFileSync(pubOf('proxy'), 'utf8'), 'two instances, two dev keys');
});

async function verify(keyArgs: string[]): Promise<{ status: number | null; report: VerifyReport }> {
  const r = await run(process.execPath, [CLI, 'verify', '-o', 'json', ...keyArgs, '--signed-heads', headDir, '--brokers', brokers, '--topic', t.events], undefined, { env: productEnv() });
  assert.ok(r.stdout.trim() !== '', `verify printed nothing: ${r.stderr}`);
  return { status: r.status, report: JSON.parse(r.stdout) as VerifyReport };
}

test('a topic written by a webhook and a gateway verifies with both public keys given as repeated --public-key', async () => {
  const { status, report } = await verify(['--public-key', pubOf('webhook'), '--public-key', pubOf('proxy')]);
  assert.deepEqual(report.issues, []);
  assert.equal(status, 0);
  assert.deepEqual(report.sources.map((s) => s.source).sort(), ['test/proxy/proxy-0', 'test/webhook/webhook-0']);
  assert.equal(report.signedHeads, 2);
  for (const s of report.sources) assert.equal(s.signedHead, 102, `${s.source}: 100 events and 2 checkpoints before the signed head`);
});

test('the same topic verifies with a key-set file of concatenated PEMs, and with a directory of *.pem', async () => {
  const file = path.join(dir, 'keys.pem');
  writeFileSync(file, readFileSync(pubOf('webhook'), 'utf8') + readFileSync(pubOf('proxy'), 'utf8'));
  const keysDir = path.join(dir, 'keys.d');
  mkdirSync(keysDir);
  copyFileSync(pubOf('webhook'), path.join(keysDir, 'webhook.pem'));
  copyFileSync(pubOf('proxy'), path.join(keysDir, 'proxy.pem'));
  writeFileSync(path.join(keysDir, 'README'), 'not a key, not read\n');
  for (const args of [['--key-set', file], ['--key-set', keysDir]]) {
    const { status, report } = await verify(args);
    assert.deepEqual(report.issues, [], args.join(' '));
    assert.equal(status, 0);
  }
});

test('with only one of the keys, the other instance\'s checkpoints and signed head are bad signatures', async () => {
  const { status, report } = await verify(['--public-key', pubOf('webhook')]);
  assert.equal(status, 1);
  assert.deepEqual([...new Set(report.issues.map((i) => i.kind))], ['bad-signature']);
  assert.ok(report.issues.every((i) => i.source === 'test/proxy/proxy-0'), JSON.stringify(report.issues));
  assert.match(report.issues[0]?.detail ?? '', /not among the given keys/);
});

test('a key-set file that holds no key is a usage error (exit 2), not an empty key set', async () => {
  const bad = path.join(dir, 'empty.pem');
  writeFileSync(bad, 'nothing here\n');
  const r = await run(process.execPath, [CLI, 'verify', '--key-set', bad, '--log-dir', dir], undefined, { env: productEnv() });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--key-set: .*empty\.pem: no PEM block/);
});
