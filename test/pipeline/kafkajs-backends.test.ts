import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { createMetricsRegistry } from '../../core/health-server.ts';
import { createEventPipeline } from '../../core/pipeline.ts';
import { harness } from '../support/env.ts';
import { waitFor } from '../support/wait.ts';
import { apiRequestDraft, memoryLogger, pipelineConfig, tempDir, topics } from './support.ts';

const dir = tempDir('kt-kafkajs-backends-');
after(() => rmSync(dir, { recursive: true, force: true }));

test('a Kafka pipeline says at start what its producer thread runs kafkajs with: a log line and kubetrail_kafkajs_backend_info', async () => {
  const env = harness();
  const { log, lines } = memoryLogger('info');
  const registry = createMetricsRegistry();
  const config = pipelineConfig(path.join(dir, 'data'), { kafka: { brokers: env.KAFKA_BROKERS.split(','), topics: topics() } });
  const p = await createEventPipeline({ config, log, registry, component: 'proxy', instance: 'backends' });
  try {
    await p.emit(apiRequestDraft(1));
    const line = await waitFor(() => lines().find((l) => String(l['msg']).startsWith('kafka producer thread:')), 'the producer thread reported its kafkajs backends');
    assert.equal(line['msg'], 'kafka producer thread: kafkajs runs with the native CRC-32C and the rope encoder');
    assert.deepEqual({ crc32c: line['crc32c'], encoder: line['encoder'] }, { crc32c: { backend: 'native' }, encoder: { backend: 'rope' } });
    const text = await registry.metrics();
    assert.match(text, /^kubetrail_kafkajs_backend_info\{component="proxy",part="crc32c",backend="native"\} 1$/m);
    assert.match(text, /^kubetrail_kafkajs_backend_info\{component="proxy",part="encoder",backend="rope"\} 1$/m);
  } finally {
    await p.close();
  }
});
