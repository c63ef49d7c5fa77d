/**
 * `kubetrail verify`: checks the hash chain, sequence gaps, ordering, replays
 * and the signatures of checkpoints, gap declarations and signed heads, per
 * source instance. Exits 0 when everything checks out (declared gaps are
 * listed, not failures), 1 on any break, 2 on a usage error.
 *
 *   kubetrail verify (--public-key F)... [--key-set F|D]... [--signed-heads F|D]...
 *                    [--config F] [--log-dir D | --brokers B --topic T [--topic T]...]
 *                    [--allow-head-gap] [-o text|json]
 *
 * Only public keys are needed (SPKI PEMs, e.g. dataDir/keys/dev-signing.pub.pem
 * of every component instance). `--signed-heads` is `signing.headDir` (or one
 * file in it): without it, a log whose newest events were cut off after its
 * last checkpoint still verifies.
 */
import type { KeyObject } from 'node:crypto';
import { parseCommandArgs } from './args.ts';
import { publicKeysFromCluster } from './cluster-key.ts';
import { loadPublicKey, loadPublicKeySet } from '../core/chain/signing.ts';
import { readSignedHeads, type SignedHead } from '../core/chain/signed-head.ts';
import { ChainVerifier, type VerifyReport } from '../core/chain/verify.ts';
import { readRecords } from '../core/events/reader.ts';
import { SOURCE_FLAGS, sourceFromFlags, UsageError } from './events.ts';

const USAGE = `usage: kubetrail verify (--public-key F)... [--key-set F|DIR]... [--signed-heads F|DIR]...
                        [--config F] [--log-dir D | --brokers B --topic T [--topic T]...]
                        [--allow-head-gap] [-o text|json]

  --public-key F      an Ed25519 public key (PEM); repeat for every signing key (each instance's dev key)
  --key-set F|DIR     a file of PEM blocks, or a directory of *.pem files
  --public-key-from-cluster NS/NAME  the key kubetrail published in that ConfigMap
                      (kubetrail/kubetrail-signing-public-key), read with --kubeconfig F [--context C]
  --signed-heads F|DIR  signed heads kept outside the log (signing.headDir): detects a cut-off tail
`;

function printText(r: VerifyReport, out: NodeJS.WritableStream): void {
  for (const s of r.sources) {
    out.write(
      `${s.source}: ${s.events} events, seq ${s.firstSeq}..${s.lastSeq}, ${s.validCheckpoints}/${s.checkpoints} checkpoints valid, signed through seq ${s.signedThrough}` +
        `${s.unsignedTail > 0 ? `, ${s.unsignedTail} after the last checkpoint` : ''}${s.duplicates > 0 ? `, ${s.duplicates} duplicates (re-sent, same id and hash)` : ''}` +
        `${s.signedHead !== undefined ? `, signed head seq ${s.signedHead}` : ''}\n`,
    );
    for (const g of s.declaredGaps) {
      const seq = g.toSeq > g.fromSeq ? `${g.fromSeq}..${g.toSeq}` : `${g.fromSeq}`;
      out.write(
        `DECLARED GAP ${s.source} seq ${seq}: ${g.events} event(s) could not be recorded (${g.reason}${g.errno !== undefined ? ` ${g.errno}` : ''}) from ${g.since} to ${g.until}; ${g.refused} refused while unready; signed at seq ${g.seq}\n`,
      );
    }
  }
  for (const i of r.issues) {
    const seq = i.seq === undefined ? '' : i.toSeq !== undefined && i.toSeq !== i.seq ? ` seq ${i.seq}..${i.toSeq}` : ` seq ${i.seq}`;
    const at = i.stream !== undefined ? ` (${i.stream}#${i.position ?? ''})` : '';
    out.write(`${i.kind.toUpperCase()} ${i.source ?? ''}${seq}${at}: ${i.detail}\n`);
  }
  if (r.signedHeads === 0) out.write('note: no --signed-heads given: events cut off after the last checkpoint cannot be detected\n');
  out.write(r.ok ? `OK: ${r.records} records verified\n` : `FAILED: ${r.issues.length} issue(s) in ${r.records} records\n`);
}

/** Runs `kubetrail verify`. */
export async function run(argv: string[]): Promise<number> {
  const parsed = parseCommandArgs('verify', USAGE, argv, {
    ...SOURCE_FLAGS,
    'public-key': { type: 'string', multiple: true },
    'key-set': { type: 'string', multiple: true },
    'public-key-from-cluster': { type: 'string', multiple: true },
    kubeconfig: { type: 'string' },
    context: { type: 'string' },
    'signed-heads': { type: 'string', multiple: true },
    'allow-head-gap': { type: 'boolean' },
    output: { type: 'string', short: 'o' },
    help: { type: 'boolean', short: 'h' },
  });
  if (typeof parsed === 'number') return parsed;
  const { values } = parsed;
  try {
    const keyFiles = values['public-key'] ?? [];
    const keySets = values['key-set'] ?? [];
    const clusterKeys = values['public-key-from-cluster'] ?? [];
    if (keyFiles.length === 0 && keySets.length === 0 && clusterKeys.length === 0) throw new UsageError('--public-key, --key-set or --public-key-from-cluster is required');
    const output = values.output ?? 'text';
    if (output !== 'text' && output !== 'json') throw new UsageError('-o: expected text or json');
    const publicKeys: KeyObject[] = [];
    try {
      for (const f of keyFiles) publicKeys.push(loadPublicKey(f));
    } catch (err) {
      throw new UsageError(`--public-key: ${(err as Error).message}`);
    }
    try {
      for (const f of keySets) publicKeys.push(...loadPublicKeySet(f));
    } catch (err) {
      throw new UsageError(`--key-set: ${(err as Error).message}`);
    }
    try {
      publicKeys.push(...(await publicKeysFromCluster(clusterKeys, { ...(values.kubeconfig ? { kubeconfig: values.kubeconfig } : {}), ...(values.context ? { context: values.context } : {}) })));
    } catch (err) {
      throw new UsageError(`--public-key-from-cluster: ${(err as Error).message}`);
    }
    const signedHeads: SignedHead[] = [];
    try {
      for (const f of values['signed-heads'] ?? []) signedHeads.push(...readSignedHeads(f));
    } catch (err) {
      throw new UsageError(`--signed-heads: ${(err as Error).message}`);
    }
    const source = sourceFromFlags(values);
    const v = new ChainVerifier({ publicKeys, signedHeads, allowHeadGap: values['allow-head-gap'] ?? false });
    for await (const r of readRecords({ source })) v.add(r);
    const report = v.finish();
    if (report.records === 0 && signedHeads.length === 0) {
      process.stderr.write('kubetrail verify: no records found\n');
      return 1;
    }
    // Set before printing: a reader that closes the pipe early (main.ts exits
    // quietly on EPIPE with process.exitCode) must not turn a failure into 0.
    process.exitCode = report.ok ? 0 : 1;
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
