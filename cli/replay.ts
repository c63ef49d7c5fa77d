/**
 * `kubetrail replay SESSION_ID`: plays a recorded session back in real time
 * (the exact recorded stdout/stderr bytes, with the recorded pauses divided
 * by --speed), or writes it as an asciicast v2 file with --export.
 *
 *   kubetrail replay SESSION_ID [--config F] [--log-dir D | --brokers B [--topic T]...]
 *                    [--speed N] [--max-idle S] [--export FILE.cast]
 *
 * Exit codes: 0 played/exported; 1 session not found or recording incomplete
 * (missing chunks are named, and what exists is still played); 2 usage.
 */
import { parseCommandArgs } from './args.ts';
import { writeFileSync } from 'node:fs';
import { readEvents } from '../core/events/reader.ts';
import type { KubetrailEvent } from '../core/events/model.ts';
import { SOURCE_FLAGS, UsageError, sourceFromFlags } from './events.ts';
import { chunkBytes, gatherRecording, toAsciicast } from './asciicast.ts';

const USAGE = `usage: kubetrail replay SESSION_ID [--config F] [--log-dir D | --brokers B [--topic T]...]
                        [--speed N] [--max-idle SECONDS] [--export FILE.cast]
`;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Runs `kubetrail replay`. */
export async function run(argv: string[]): Promise<number> {
  const parsed = parseCommandArgs('replay', USAGE, argv, {
        ...SOURCE_FLAGS,
        speed: { type: 'string' },
        'max-idle': { type: 'string' },
        export: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      }, true);
  if (typeof parsed === 'number') return parsed;
  const { values, positionals } = parsed;
  try {
    const id = positionals[0];
    if (id === undefined || positionals.length > 1) throw new UsageError('exactly one SESSION_ID');
    const speed = values.speed === undefined ? 1 : Number(values.speed);
    if (!Number.isFinite(speed) || speed <= 0) throw new UsageError('--speed: a positive number (2 = twice as fast)');
    const maxIdle = values['max-idle'] === undefined ? Infinity : Number(values['max-idle']);
    if (!(maxIdle >= 0)) throw new UsageError('--max-idle: seconds, >= 0');
    const source = sourceFromFlags(values);
    const events: KubetrailEvent[] = [];
    for await (const e of readEvents({ source, filter: { session: id, type: 'session' } })) events.push(e);
    const rec = gatherRecording(id, events);
    if (!rec.start && !rec.end && rec.chunks.length === 0) {
      process.stderr.write(`kubetrail replay: no session ${id}\n`);
      return 1;
    }
    if (rec.missing.length > 0) {
      process.stderr.write(`kubetrail replay: recording of ${id} is missing chunks ${rec.missing.slice(0, 20).join(', ')}${rec.missing.length > 20 ? ' ...' : ''}\n`);
    }
    if (values.export !== undefined) {
      writeFileSync(values.export, toAsciicast(rec));
      process.stderr.write(`kubetrail replay: wrote ${values.export}\n`);
      return rec.missing.length > 0 ? 1 : 0;
    }
    const out = process.stdout;
    let clock = 0;
    for (const c of rec.chunks) {
      if (c.stream !== 'stdout' && c.stream !== 'stderr') continue;
      const wait = Math.min(Math.max(0, c.t - clock) / 1000, maxIdle) / speed;
      clock = Math.max(clock, c.t);
      if (wait > 0) await sleep(wait * 1000);
      if (!out.write(chunkBytes(c))) await new Promise((r) => out.once('drain', r));
    }
    return rec.missing.length > 0 ? 1 : 0;
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`kubetrail replay: ${err.message}\n${USAGE}`);
      return 2;
    }
    throw err;
  }
}
