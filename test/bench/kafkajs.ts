/**
 * `npm run bench:kafkajs` (no harness): what kubetrail's two changes to
 * kafkajs save in the producer thread. CPU per 15 KiB admission event of
 * kafkajs encoding a 30-event produce request (records with the CloudEvents
 * headers, as KafkaSink sends them), in three child processes loading
 * kafkajs as the producer thread does (kafkajs first, then the modules):
 * kafkajs as shipped (the baseline), with the native CRC-32C
 * (core/sinks/kafkajs-crc32c.ts), and with the rope encoder as well
 * (core/sinks/kafkajs-encoder.ts). `--rounds N` alternates them N times.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const SELF = fileURLToPath(import.meta.url);
const VARIANTS = ['kafkajs as shipped', 'native CRC-32C', 'native CRC-32C + rope encoder'] as const;
type Variant = (typeof VARIANTS)[number];

async function measure(variant: Variant): Promise<number> {
  const { createRequire } = await import('node:module');
  const require = createRequire(import.meta.url);
  require('kafkajs');
  if (variant !== 'kafkajs as shipped') {
    const { crc32cBackend } = await import('../../core/sinks/kafkajs-crc32c.ts');
    if (crc32cBackend.backend !== 'native') throw new Error(`CRC-32C: ${crc32cBackend.reason}`);
  }
  if (variant === 'native CRC-32C + rope encoder') {
    const { encoderBackend } = await import('../../core/sinks/kafkajs-encoder.ts');
    if (encoderBackend.backend !== 'rope') throw new Error(`encoder: ${encoderBackend.reason}`);
  }
  const Produce = require('kafkajs/src/protocol/requests/produce/v3/request.js');
  const Request = require('kafkajs/src/protocol/request.js');
  const Long = require('kafkajs/src/utils/long.js');
  const N = 30;
  const headers = { ce_id: 'id', ce_type: 'io.kubetrail.v1.admission.review', ce_source: 'kubetrail/webhook', ce_specversion: '1.0', 'content-type': 'application/json' };
  const messages = Array.from({ length: N }, (_, i) => ({ key: `k${i}`, value: Buffer.from(JSON.stringify({ i, pad: 'x'.repeat(15 * 1024) })), timestamp: 1700000000000 + i, headers }));
  const topicData = [{ topic: 't', partitions: [{ partition: 0, firstSequence: 7, messages }] }];
  const once = async (): Promise<void> => {
    await Request({ correlationId: 9, clientId: 'kubetrail', request: Produce({ acks: -1, timeout: 30000, producerId: Long.fromInt(42), producerEpoch: 1, compression: 0, topicData }) });
  };
  for (let i = 0; i < 200; i++) await once();
  const rounds = 1000;
  const c0 = process.cpuUsage();
  for (let i = 0; i < rounds; i++) await once();
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / (rounds * N);
}

if (process.argv[2] === 'measure') {
  process.stdout.write(String(await measure(process.argv[3] as Variant)));
} else {
  const { values } = parseArgs({ options: { rounds: { type: 'string' } } });
  const rounds = Number(values.rounds ?? 2);
  const us = new Map<Variant, number[]>(VARIANTS.map((v) => [v, []]));
  for (let r = 0; r < rounds; r++) for (const v of VARIANTS) us.get(v)?.push(Number(execFileSync(process.execPath, [SELF, 'measure', v], { encoding: 'utf8' })));
  const base = us.get('kafkajs as shipped') as number[];
  process.stdout.write(`bench:kafkajs — producer-thread CPU per 15 KiB event (30-event produce request), ${rounds} alternating rounds, node ${process.version}\n`);
  for (const [v, xs] of us) process.stdout.write(`${v.padEnd(32)} ${xs.map((x) => x.toFixed(1)).join(' / ')} µs; ratio to as shipped ${xs.map((x, i) => (x / (base[i] as number)).toFixed(2)).join(' / ')}\n`);
}
