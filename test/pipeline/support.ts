/**
 * Helpers for pipeline tests: a config for a temp data dir, a silent logger,
 * a throw-away topic pair, and reading a topic back through the verifier.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { loadConfig, type Config, type ConfigInput } from '../../core/config.ts';
import { createLogger, type Logger } from '../../core/logger.ts';
import { loadPublicKey } from '../../core/chain/signing.ts';
import { ChainVerifier, type VerifyReport } from '../../core/chain/verify.ts';
import { readRecords, type ReadSource } from '../../core/events/reader.ts';
import type { EventDraft } from '../../core/events/model.ts';

/** A fresh temp directory. */
export function tempDir(prefix = 'kt-pipeline-'): string {
  return mkdtempSync(path.join(tmpdir(), prefix));
}

/** A logger that keeps its records in memory (tests assert on warnings). */
export function memoryLogger(level: 'debug' | 'info' | 'warn' = 'warn'): { log: Logger; lines: () => Record<string, unknown>[] } {
  const chunks: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk.toString('utf8'));
      cb();
    },
  });
  return {
    log: createLogger({ level, destination }),
    lines: () =>
      chunks
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

/** Unique topic names for one test. */
export function topics(): { events: string; sessions: string } {
  const id = randomUUID().slice(0, 8);
  return { events: `kt-test-${id}.events`, sessions: `kt-test-${id}.sessions` };
}

/** Config for a pipeline in `dataDir`, optionally on Kafka. */
export function pipelineConfig(dataDir: string, extra: ConfigInput = {}): Config {
  return loadConfig({ document: { cluster: 'test', dataDir, ...extra } });
}

/** A 1 KiB-ish api.request draft (i names the object). */
export function apiRequestDraft(i: number, padding = 600): EventDraft<'api.request'> {
  return {
    type: 'api.request',
    actor: { username: 'agent-ci', groups: ['agents'], authn: 'token' },
    target: { group: '', version: 'v1', resource: 'configmaps', namespace: 'agents', name: `cm-${i % 50}` },
    correlation: { request: `req-${i}` },
    body: { verb: 'get', method: 'GET', path: `/api/v1/namespaces/agents/configmaps/cm-${i % 50}`, status: 200, latencyMs: 3, bytesIn: 0, bytesOut: 512, userAgent: `kubectl/v1.32.4 ${'x'.repeat(padding)}` },
  };
}

/** Runs the verifier over a source with the dev public key of `dataDir`. */
export async function verifySource(source: ReadSource, publicKeyFile: string): Promise<VerifyReport> {
  const v = new ChainVerifier({ publicKey: loadPublicKey(publicKeyFile) });
  for await (const r of readRecords({ source })) v.add(r);
  return v.finish();
}
