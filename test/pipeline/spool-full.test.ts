import assert from 'node:assert/strict';
import path from 'node:path';
import { rmSync } from 'node:fs';
import { after, test } from 'node:test';
import { createMetricsRegistry, startHealthServer } from '../../core/health-server.ts';
import { createEventPipeline, spoolDir } from '../../core/pipeline.ts';
import { SinkError } from '../../core/sinks/errors.ts';
import { freePort } from '../harness/harness.ts';
import { apiRequestDraft, memoryLogger, pipelineConfig, tempDir, topics, verifySource } from './support.ts';

const dir = tempDir('kt-spool-full-');
after(() => rmSync(dir, { recursive: true, force: true }));

const CASES = [
  { overflow: 'fail-closed', code: 'SINK_ERR_SPOOL_FULL', metric: 'kubetrail_events_refused_total' },
  { overflow: 'drop', code: 'SINK_ERR_EVENT_DROPPED', metric: 'kubetrail_events_dropped_total' },
] as const;

for (const c of CASES) {
  test(`with Kafka down and the spool full, overflow=${c.overflow} rejects with ${c.code}, counts it in /metrics, and leaves no gap in the chain`, async () => {
    const dataDir = path.join(dir, c.overflow);
    const { log, lines } = memoryLogger();
    // Nothing listens on this port: the brokers are unreachable from the start.
    const dead = `127.0.0.1:${await freePort()}`;
    const config = pipelineConfig(dataDir, {
      kafka: { brokers: [dead], topics: topics(), connectTimeoutMs: 300, ackDeadlineMs: 500 },
      spool: { maxBytes: 40_000, overflow: c.overflow, segmentBytes: 1024 * 1024, groupCommitMs: 0 },
      signing: { checkpointEvery: 1000, checkpointIntervalMs: 60_000 },
    });
    const registry = createMetricsRegistry();
    const health = await startHealthServer('127.0.0.1:0', registry);
    const p = await createEventPipeline({ config, log, registry, component: 'webhook', instance: `full-${c.overflow}` });
    health.addCheck('events', () => p.ready());
    try {
      let accepted = 0;
      const rejected: SinkError[] = [];
      for (let i = 0; i < 200; i++) {
        try {
          await p.emit(apiRequestDraft(i, 300));
          accepted += 1;
        } catch (err) {
          assert.ok(err instanceof SinkError, 'rejections are SinkErrors');
          rejected.push(err);
        }
      }
      assert.ok(accepted > 10, `some events fit the spool (${accepted})`);
      assert.equal(rejected.length, 200 - accepted);
      assert.ok(rejected.length > 0, 'the spool bound was reached');
      assert.deepEqual([...new Set(rejected.map((e) => e.code))], [c.code]);

      const metrics = await (await fetch(`http://127.0.0.1:${health.port}/metrics`)).text();
      const line = metrics.split('\n').find((l) => l.startsWith(`${c.metric}{`) && l.includes('component="webhook"'));
      assert.equal(line?.split(' ').at(-1), String(rejected.length), `${c.metric} in /metrics: ${line}`);
      assert.match(metrics, /kubetrail_spool_active\{component="webhook"\} 1/);
      const ready = await fetch(`http://127.0.0.1:${health.port}/readyz`);
      // fail-closed refuses work, so the component is not ready; drop keeps serving.
      assert.equal(ready.status, c.overflow === 'fail-closed' ? 503 : 200);
    } finally {
      await p.close();
      await health.close();
    }
    if (c.overflow === 'drop') {
      const warned = lines().find((l) => l['msg'] === 'spool full: events dropped (spool.overflow=drop)');
      assert.ok(warned, 'a warning logs the dropped count');
      assert.ok(Number(warned['dropped']) > 0);
    }
    // Refused/dropped events consumed no sequence number: the spool holds a gap-free chain.
    const report = await verifySource({ kind: 'local', dir: spoolDir(dataDir, 'webhook') }, path.join(dataDir, 'keys', 'dev-signing.pub.pem'));
    assert.deepEqual(report.issues, []);
  });
}
