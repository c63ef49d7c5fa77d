/**
 * The gateway as its own process for load tests: forwards to the harness API
 * server as its admin, records into the real event pipeline (local log under a
 * temp dataDir). Prints `{url, ca}` as one JSON line on stdout; over IPC,
 * answers `mem` with its memory after a full GC (run it with --expose-gc) and
 * `stats` with the pipeline's event count. Logs go to stderr.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createCA, issueCert } from '../../certs/generate.ts';
import { loadConfig } from '../../core/config.ts';
import { createLogger } from '../../core/logger.ts';
import { createMetricsRegistry } from '../../core/health-server.ts';
import { createEventPipeline } from '../../core/pipeline.ts';
import type { EventDraft, EventType, KubetrailEvent } from '../../core/events/model.ts';
import type { EventSink } from '../../core/sinks/sink.ts';
import { startGateway } from '../../exec-proxy/main.ts';
import { readEnvFile } from '../harness/harness.ts';

const env = readEnvFile();
if (!env) throw new Error('harness not running');
const dataDir = mkdtempSync(path.join(tmpdir(), 'kubetrail-gw-proc-'));
const ca = createCA({ commonName: 'gw-proc-ca' });
const serving = issueCert(ca, { commonName: 'gateway', ips: ['127.0.0.1'] });
const config = loadConfig({ document: { cluster: 'load', dataDir, policies: { dir: path.join(dataDir, 'none') }, proxy: { upstream: { kubeconfig: env.ADMIN_KUBECONFIG } } } });
const log = createLogger({ level: 'warn', destination: process.stderr });
const registry = createMetricsRegistry();
const pipeline = await createEventPipeline({ config, log, registry, component: 'proxy', instance: 'load-test' });
let emitted = 0;
const counting: EventSink = {
  async emit<T extends EventType>(d: EventDraft<T>): Promise<KubetrailEvent<T>> {
    const e = await pipeline.emit(d);
    emitted++;
    return e;
  },
  flush: () => pipeline.flush(),
  close: () => pipeline.close(),
};
const gw = await startGateway({ config, log, sink: counting, registry, tls: { cert: serving.certPem, key: serving.keyPem }, listen: '127.0.0.1:0' });
process.stdout.write(`${JSON.stringify({ url: gw.url, ca: ca.certPem })}\n`);
process.on('message', (m: unknown) => {
  if (m === 'mem') {
    (globalThis as { gc?: () => void }).gc?.();
    process.send?.({ mem: process.memoryUsage() });
  } else if (m === 'stats') {
    process.send?.({ emitted });
  }
});
process.on('SIGTERM', () => {
  void (async () => {
    await gw.close();
    await pipeline.close();
    rmSync(dataDir, { recursive: true, force: true });
    process.exit(0);
  })();
});
