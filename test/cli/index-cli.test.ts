import assert from 'node:assert/strict';
import path from 'node:path';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { run } from '../support/env.ts';
import { writeTrail } from '../support/trail.ts';

const CLI = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'cli', 'main.ts');
const dir = mkdtempSync(path.join(tmpdir(), 'kt-index-cli-'));
const dataDir = path.join(dir, 'data');
const indexFile = path.join(dir, 'index.sqlite');
const START = Date.now() - 3_600_000;
before(() => void writeTrail(dataDir, 1500, START, { users: 5, namespaces: 11 }, 500));
after(() => rmSync(dir, { recursive: true, force: true }));

const cli = (args: string[]): ReturnType<typeof run> => run(process.execPath, [CLI, ...args, '--log-dir', dataDir]);

const LISTINGS: string[][] = [
  ['events', '-o', 'json'],
  ['events', '--user', 'u2', '--namespace', 'ns3'],
  ['events', '--type', 'session', '-o', 'json'],
  ['events', '--since', new Date(START + 750).toISOString(), '-o', 'json'],
  ['sessions'],
  ['sessions', '--user', 'u1', '-o', 'json'],
  ['sessions', '--pod', 'pod-5'],
];

for (const args of LISTINGS) {
  test(`kubetrail ${args.join(' ')} --index prints what the scan prints`, async () => {
    const scan = await cli([...args, '--scan']);
    const indexed = await cli([...args, '--index', indexFile]);
    assert.equal(scan.status, 0, scan.stderr);
    assert.equal(indexed.status, 0, indexed.stderr);
    assert.ok(scan.stdout.split('\n').length > 2, 'the listing is not empty');
    assert.equal(indexed.stdout, scan.stdout);
    assert.ok(existsSync(indexFile));
  });
}
