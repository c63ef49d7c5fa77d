/**
 * The test gateway as its own process, for benchmarks that must measure the
 * relay apart from the load generator: records to the real local-log
 * pipeline under --data-dir, optionally with every built-in MaskingPolicy
 * pattern (--mask) and an ExecPolicy line rule (--line-rule). Prints one JSON
 * line {url} when listening; answers "rss" on stdin with {rss, heapUsed}
 * after a GC (run with --expose-gc); exits on "exit" or stdin end.
 *
 *   node --expose-gc test/tools/stream-gateway-main.ts --upstream URL --data-dir D [--mask] [--line-rule] [--upstream-ca F] [--upstream-token-file F]
 */
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { Registry } from 'prom-client';
import { loadConfig } from '../../core/config.ts';
import { createLogger } from '../../core/logger.ts';
import { createEventPipeline } from '../../core/pipeline.ts';
import { compileMaskingPolicy } from '../../core/masking/stream.ts';
import { compileExecPolicy } from '../../core/policy/exec.ts';
import { drainSessions } from '../../exec-proxy/stream/index.ts';
import { startStreamGateway } from './stream-gateway.ts';
import type { EventSink } from '../../core/sinks/sink.ts';

const { values } = parseArgs({
  options: { upstream: { type: 'string' }, 'data-dir': { type: 'string' }, mask: { type: 'boolean' }, 'line-rule': { type: 'boolean' }, 'discard-sink': { type: 'boolean' }, 'chunk-bytes': { type: 'string' }, 'upstream-ca': { type: 'string' }, 'upstream-token-file': { type: 'string' }, limit: { type: 'string', multiple: true } },
  strict: true,
});
if (!values.upstream || !values['data-dir']) throw new Error('--upstream and --data-dir are required');
const config = loadConfig({ document: { dataDir: values['data-dir'], cluster: 'bench' } });
const pipeline = await createEventPipeline({ config, log: createLogger({ level: 'silent' }), registry: new Registry(), component: 'proxy', instance: 'bench' });
// --discard-sink: events are built (base64, chunking) but not stored — to tell relay cost from storage cost.
const discard: EventSink = {
  emit: async (d) => ({ ...d, apiVersion: 'kubetrail.io/v1', id: '', time: '', source: { component: 'proxy', instance: 'bench', cluster: 'bench' } }) as never,
  flush: async () => {},
  close: async () => {},
};
const gw = await startStreamGateway({
  upstream: new URL(values.upstream),
  ...(values['upstream-ca'] ? { upstreamCa: readFileSync(values['upstream-ca'], 'utf8') } : {}),
  // --upstream-token-file: a real API server's token (bench:exec's real-container rows); the gateway impersonates agent-ci with it.
  upstreamToken: values['upstream-token-file'] ? readFileSync(values['upstream-token-file'], 'utf8').trim() : 'upstream-token',
  sink: values['discard-sink'] ? discard : pipeline,
  limits: {
    ...(values['chunk-bytes'] ? { chunkBytes: Number(values['chunk-bytes']) } : {}),
    // --limit name=value overrides any proxy.exec limit (numbers or strings)
    ...Object.fromEntries((values.limit ?? []).map((kv) => {
      const [k, v] = kv.split('=') as [string, string];
      return [k, /^\d+$/.test(v) ? Number(v) : v];
    })),
  },
  masking: values.mask ? [compileMaskingPolicy({ apiVersion: 'kubetrail.io/v1alpha1', kind: 'MaskingPolicy', metadata: { name: 'all' }, spec: {} }, 'bench')] : [],
  execPolicies: values['line-rule']
    ? [compileExecPolicy({ apiVersion: 'kubetrail.io/v1alpha1', kind: 'ExecPolicy', metadata: { name: 'no-rm' }, spec: { rules: [{ name: 'no-rm', on: 'line', expression: 'line.matches("^\\\\s*rm\\\\b")' }] } }, 'bench')]
    : [],
});
process.stdout.write(JSON.stringify({ url: gw.url }) + '\n');
const rl = createInterface({ input: process.stdin });
const stop = async (): Promise<void> => {
  await gw.close();
  await drainSessions();
  await pipeline.close();
  process.exit(0);
};
rl.on('line', (line) => {
  if (line === 'rss') {
    (globalThis as { gc?: () => void }).gc?.();
    const m = process.memoryUsage();
    process.stdout.write(JSON.stringify({ rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers }) + '\n');
  } else if (line === 'exit') void stop();
});
rl.on('close', () => void stop());
