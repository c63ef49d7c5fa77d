/**
 * `kubetrail certs`: creates or renews the CA and the serving certificate in
 * a directory, and prints the caBundle (base64) on stdout so that
 * `CA_BUNDLE=$(kubetrail certs ...)` works. What it did goes to stderr.
 *
 *   kubetrail certs --out DIR --dns NAME[,NAME...] [--ip IP...] [--key-type ecdsa-p256|rsa-2048]
 *                   [--days N] [--ca-days N] [--renew-before-days N] [--ca-renew-before-days N]
 *                   [--rotate-ca] [--drop-old-ca] [--force] [--common-name CN] [-o base64|pem|json]
 *
 * Run it again at any time: it only changes what is due (see certs/rotation.ts).
 */
import { parseArgs } from 'node:util';
import { CertError } from '../certs/errors.ts';
import { CERT_DEFAULTS, ensureCertificates, type CertRequest } from '../certs/rotation.ts';
import { KEY_TYPES, type KeyType } from '../certs/x509.ts';

const USAGE = `usage: kubetrail certs --out DIR --dns NAME[,NAME...] [--ip IP[,IP...]] [flags]

Creates (or renews when due) a CA and a serving certificate in DIR
(ca.crt = CA bundle, ca.key, tls.crt, tls.key) and prints the caBundle.
The API server checks a webhook certificate by its DNS SAN <service>.<namespace>.svc.

flags:
  --out DIR                    output directory (required)
  --dns NAME[,NAME...]         DNS subject alternative names (repeatable)
  --ip IP[,IP...]              IP subject alternative names (repeatable)
  --key-type T                 ecdsa-p256 (default) or rsa-2048
  --common-name CN             subject CN of the serving certificate (default ${CERT_DEFAULTS.commonName})
  --days N                     serving certificate validity (default ${CERT_DEFAULTS.validityDays})
  --ca-days N                  CA validity (default ${CERT_DEFAULTS.caValidityDays})
  --renew-before-days N        renew the serving certificate this long before expiry (default ${CERT_DEFAULTS.renewBeforeDays})
  --ca-renew-before-days N     rotate the CA this long before expiry (default ${CERT_DEFAULTS.caRenewBeforeDays})
  --rotate-ca                  start a new CA now; the old one stays in the bundle
  --drop-old-ca                remove older CAs from the bundle (after a rollover completed)
  --force                      re-issue the serving certificate now
  -o, --output F               what to print on stdout: base64 (default), pem, json
`;

function list(values: readonly string[] | undefined): string[] {
  return (values ?? []).flatMap((v) => v.split(',')).map((s) => s.trim()).filter((s) => s.length > 0);
}

function positiveInt(raw: string | undefined, flag: string, fallback: number): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) throw new CertError('CERT_ERR_ARGS', `${flag} must be a positive whole number of days, not ${JSON.stringify(raw)}`);
  return n;
}

/** Parses argv into a request and an output format; throws CERT_ERR_ARGS with a clear message. */
export function parseCertsArgs(argv: readonly string[], now: Date = new Date()): { out: string; request: CertRequest; output: 'base64' | 'pem' | 'json' } {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: false,
      options: {
        out: { type: 'string' },
        dns: { type: 'string', multiple: true },
        ip: { type: 'string', multiple: true },
        'key-type': { type: 'string' },
        'common-name': { type: 'string' },
        days: { type: 'string' },
        'ca-days': { type: 'string' },
        'renew-before-days': { type: 'string' },
        'ca-renew-before-days': { type: 'string' },
        'rotate-ca': { type: 'boolean', default: false },
        'drop-old-ca': { type: 'boolean', default: false },
        force: { type: 'boolean', default: false },
        output: { type: 'string', short: 'o' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (err) {
    throw new CertError('CERT_ERR_ARGS', (err as Error).message, { cause: err });
  }
  const v = parsed.values;
  if (v.out === undefined || v.out === '') throw new CertError('CERT_ERR_ARGS', '--out DIR is required');
  const dnsNames = list(v.dns);
  const ips = list(v.ip);
  if (dnsNames.length === 0 && ips.length === 0) throw new CertError('CERT_ERR_ARGS', 'give at least one --dns NAME or --ip IP');
  const keyType = (v['key-type'] ?? CERT_DEFAULTS.keyType) as KeyType;
  if (!KEY_TYPES.includes(keyType)) throw new CertError('CERT_ERR_ARGS', `--key-type must be one of ${KEY_TYPES.join(', ')}`);
  const output = v.output ?? 'base64';
  if (output !== 'base64' && output !== 'pem' && output !== 'json') throw new CertError('CERT_ERR_ARGS', '--output must be base64, pem or json');
  return {
    out: v.out,
    output,
    request: {
      dnsNames,
      ips,
      keyType,
      commonName: v['common-name'] ?? CERT_DEFAULTS.commonName,
      validityDays: positiveInt(v.days, '--days', CERT_DEFAULTS.validityDays),
      caValidityDays: positiveInt(v['ca-days'], '--ca-days', CERT_DEFAULTS.caValidityDays),
      renewBeforeDays: positiveInt(v['renew-before-days'], '--renew-before-days', CERT_DEFAULTS.renewBeforeDays),
      caRenewBeforeDays: positiveInt(v['ca-renew-before-days'], '--ca-renew-before-days', CERT_DEFAULTS.caRenewBeforeDays),
      rotateCA: v['rotate-ca'],
      dropOldCAs: v['drop-old-ca'],
      force: v.force,
      now,
    },
  };
}

/** Runs `kubetrail certs`. Exit 0 on success, 2 on bad arguments; other failures throw a CertError (exit 1). */
export async function run(argv: string[]): Promise<number> {
  if (argv.includes('-h') || argv.includes('--help')) {
    process.stdout.write(USAGE);
    return 0;
  }
  let args;
  try {
    args = parseCertsArgs(argv);
  } catch (err) {
    if (err instanceof CertError && err.code === 'CERT_ERR_ARGS') {
      process.stderr.write(`kubetrail certs: ${err.message}\n\n${USAGE}`);
      return 2;
    }
    throw err;
  }
  const result = ensureCertificates(args.out, args.request);
  for (const a of result.actions) process.stderr.write(`kubetrail certs: ${a.action}: ${a.reason}\n`);
  process.stderr.write(result.changed ? `kubetrail certs: wrote ${Object.values(result.files).join(', ')}\n` : 'kubetrail certs: nothing to do\n');
  if (args.output === 'json') {
    process.stdout.write(`${JSON.stringify({ caBundle: result.caBundle, changed: result.changed, actions: result.actions, files: result.files })}\n`);
  } else if (args.output === 'pem') {
    process.stdout.write(result.caBundlePem);
  } else {
    process.stdout.write(`${result.caBundle}\n`);
  }
  return 0;
}
