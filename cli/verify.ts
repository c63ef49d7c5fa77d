/**
 * `kubetrail verify`: checks the hash chain, sequence gaps, ordering and
 * checkpoint signatures of recorded events, per source instance. Exits 0
 * when everything checks out, 1 on any break, 2 on a usage error.
 *
 *   kubetrail verify --public-key F [--config F] [--log-dir D | --brokers B --topic T [--topic T]...]
 *                    [--allow-head-gap] [-o text|json]
 *
 * Only the public key is needed (an SPKI PEM, e.g. dataDir/keys/dev-signing.pub.pem).
 */
import { parseCommandArgs } from './args.ts';
import { loadPublicKey } from '../core/chain/signing.ts';
import { ChainVerifier, type VerifyReport } from '../core/chain/verify.ts';
import { readRecords } from '../core/events/reader.ts';
import { SOURCE_FLAGS, sourceFromFlags, UsageError } from './events.ts';

const USAGE = `usage: kubetrail verify --public-key F [--config F] [--log-dir D | --brokers B --topic T [--topic T]...]
                        [--allow-head-gap] [-o text|json]
`;

function printText(r: VerifyReport, out: NodeJS.WritableStream): void {
  for (const s of r.sources) {
    out.write(
      `${s.source}: ${s.events} events, seq ${s.firstSeq}..${s.lastSeq}, ${s.validCheckpoints}/${s.checkpoints} checkpoints valid, signed through seq ${s.signedThrough}` +
        `${s.unsignedTail > 0 ? `, ${s.unsignedTail} after the last checkpoint` : ''}${s.duplicates > 0 ? `, ${s.duplicates} duplicates (same id and hash)` : ''}\n`,
    );
  }
  for (const i of r.issues) {
    const seq = i.seq === undefined ? '' : i.toSeq !== undefined && i.toSeq !== i.seq ? ` seq ${i.seq}..${i.toSeq}` : ` seq ${i.seq}`;
    const at = i.stream !== undefined ? ` (${i.stream}#${i.position ?? ''})` : '';
    out.write(`${i.kind.toUpperCase()} ${i.source ?? ''}${seq}${at}: ${i.detail}\n`);
  }
  out.write(r.ok ? `OK: ${r.records} records verified\n` : `FAILED: ${r.issues.length} issue(s) in ${r.records} records\n`);
}

/** Runs `kubetrail verify`. */
export async function run(argv: string[]): Promise<number> {
  const parsed = parseCommandArgs('verify', USAGE, argv, {
        ...SOURCE_FLAGS,
        'public-key': { type: 'string' },
        'allow-head-gap': { type: 'boolean' },
        output: { type: 'string', short: 'o' },
        help: { type: 'boolean', short: 'h' },
      });
  if (typeof parsed === 'number') return parsed;
  const { values } = parsed;
  try {
    if (values['public-key'] === undefined) throw new UsageError('--public-key is required');
    const output = values.output ?? 'text';
    if (output !== 'text' && output !== 'json') throw new UsageError('-o: expected text or json');
    let publicKey;
    try {
      publicKey = loadPublicKey(values['public-key']);
    } catch (err) {
      throw new UsageError(`--public-key: ${(err as Error).message}`);
    }
    const source = sourceFromFlags(values);
    const v = new ChainVerifier({ publicKey, allowHeadGap: values['allow-head-gap'] ?? false });
    for await (const r of readRecords({ source })) v.add(r);
    const report = v.finish();
    if (report.records === 0) {
      process.stderr.write('kubetrail verify: no records found\n');
      return 1;
    }
    if (output === 'json') process.stdout.write(JSON.stringify(report) + '\n');
    else printText(report, process.stdout);
    return report.ok ? 0 : 1;
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`kubetrail verify: ${err.message}\n${USAGE}`);
      return 2;
    }
    throw err;
  }
}
