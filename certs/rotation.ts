/**
 * Keeps a directory of serving material up to date: creates it the first
 * time, renews the serving certificate before it expires (or when the wanted
 * SANs or key type change), and rotates the CA before *it* expires, keeping
 * the previous CA in the bundle so a rollover never breaks trust.
 *
 * The directory holds the layout of a `kubernetes.io/tls` Secret as
 * cert-manager writes it, so it can be turned into one as is:
 *
 * | file     | holds                                                                 |
 * |----------|-----------------------------------------------------------------------|
 * | `ca.crt` | the CA bundle for `caBundle`: the current CA first, then older CAs still valid |
 * | `ca.key` | the current CA's private key (keep it off the cluster)                 |
 * | `tls.crt`| the serving certificate                                               |
 * | `tls.key`| its private key                                                       |
 *
 * Why rotation is safe in one step: a rotation writes a new CA *and* a serving
 * certificate signed by it, with a bundle that trusts both CAs. Applying the
 * result updates the webhook configurations' caBundle through the API (at
 * once) and the Secret reaches the pods through the kubelet (later, within
 * its sync period). In between, pods still serve the old certificate, which
 * the old CA in the bundle still vouches for. Once every pod serves the new
 * certificate, `--drop-old-ca` ends the rollover; an old CA also leaves the
 * bundle by itself when it expires.
 *
 * Decisions are pure ({@link planCertificates}); {@link ensureCertificates}
 * reads and writes the directory around them.
 */
import { X509Certificate, createPublicKey } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CertError } from './errors.ts';
import {
  createCertificateAuthority,
  ipHex,
  issueServingCertificate,
  keyTypeOf,
  privateKeyFromPem,
  sansOf,
  splitPemBundle,
  type CertKeyPair,
  type KeyType,
} from './x509.ts';

/** File names inside the output directory (those of a kubernetes.io/tls Secret). */
export const CERT_FILES = { caBundle: 'ca.crt', caKey: 'ca.key', cert: 'tls.crt', key: 'tls.key' } as const;

/** What the caller wants the directory to hold. */
export interface CertRequest {
  readonly dnsNames: readonly string[];
  readonly ips: readonly string[];
  readonly keyType: KeyType;
  readonly commonName: string;
  /** Serving certificate validity (days). */
  readonly validityDays: number;
  /** CA validity (days). */
  readonly caValidityDays: number;
  /** Renew the serving certificate when it has fewer days left than this. */
  readonly renewBeforeDays: number;
  /** Rotate the CA when it has fewer days left than this. Must exceed the serving validity, so a fresh leaf never outlives its CA by much. */
  readonly caRenewBeforeDays: number;
  /** Rotate the CA now, whatever its age. */
  readonly rotateCA: boolean;
  /** Remove every CA but the current one from the bundle (ends a rollover). */
  readonly dropOldCAs: boolean;
  /** Re-issue the serving certificate now. */
  readonly force: boolean;
  readonly now: Date;
}

/** Defaults of {@link CertRequest}, in one place. */
export const CERT_DEFAULTS = {
  keyType: 'ecdsa-p256',
  commonName: 'kubetrail',
  validityDays: 365,
  caValidityDays: 1825,
  renewBeforeDays: 30,
  caRenewBeforeDays: 400,
} as const satisfies Partial<CertRequest>;

/** What the directory holds now (absent pieces are undefined). */
export interface CertState {
  readonly caBundlePem: string | undefined;
  readonly caKeyPem: string | undefined;
  readonly certPem: string | undefined;
  readonly keyPem: string | undefined;
}

/** One thing a run did, with why. */
export interface CertAction {
  readonly action: 'ca-created' | 'ca-rotated' | 'ca-kept' | 'old-ca-dropped' | 'cert-issued' | 'cert-renewed' | 'cert-kept';
  readonly reason: string;
}

/** The outcome: the new directory contents and what changed. */
export interface CertPlan {
  readonly state: Required<{ [K in keyof CertState]: string }>;
  readonly actions: readonly CertAction[];
  /** True when any file must be written. */
  readonly changed: boolean;
}

const DAY_MS = 24 * 3600 * 1000;

function daysLeft(cert: X509Certificate, now: Date): number {
  return (new Date(cert.validTo).getTime() - now.getTime()) / DAY_MS;
}

function sameKey(certPem: string, keyPem: string): boolean {
  const fromCert = new X509Certificate(certPem).publicKey.export({ type: 'spki', format: 'der' });
  const fromKey = createPublicKey(privateKeyFromPem(keyPem)).export({ type: 'spki', format: 'der' });
  return fromCert.equals(fromKey);
}

function parseCert(pem: string, what: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (err) {
    throw new CertError('CERT_ERR_STATE', `${what} is not a valid PEM certificate`, { cause: err });
  }
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  const sa = new Set(a);
  return sa.size === new Set(b).size && b.every((x) => sa.has(x));
}

/**
 * Decides what the directory must hold for `req`, given what it holds. Pure:
 * no I/O, the clock comes in `req.now`. Throws {@link CertError}
 * CERT_ERR_STATE when the existing material does not fit together.
 */
export function planCertificates(current: CertState, req: CertRequest): CertPlan {
  if (req.caRenewBeforeDays <= req.renewBeforeDays) {
    throw new CertError('CERT_ERR_ARGS', 'the CA renewal window must be longer than the certificate renewal window');
  }
  const actions: CertAction[] = [];
  const now = req.now;
  const bundle = current.caBundlePem === undefined ? [] : splitPemBundle(current.caBundlePem);
  if (current.caBundlePem !== undefined && bundle.length === 0) {
    throw new CertError('CERT_ERR_STATE', `${CERT_FILES.caBundle} holds no certificate`);
  }
  const bundleCerts = bundle.map((p, i) => ({ pem: p, x: parseCert(p, `${CERT_FILES.caBundle} certificate #${i + 1}`) }));

  let ca: CertKeyPair | undefined;
  const currentCA = bundleCerts[0];
  if (currentCA !== undefined && current.caKeyPem === undefined && !req.rotateCA) {
    throw new CertError('CERT_ERR_STATE', `${CERT_FILES.caBundle} exists but ${CERT_FILES.caKey} does not: restore the CA key, or pass --rotate-ca to start a new CA (the old one stays in the bundle)`);
  }
  if (currentCA === undefined && current.caKeyPem !== undefined) {
    throw new CertError('CERT_ERR_STATE', `${CERT_FILES.caKey} exists but ${CERT_FILES.caBundle} does not`);
  }
  if (currentCA !== undefined && current.caKeyPem !== undefined && !sameKey(currentCA.pem, current.caKeyPem)) {
    throw new CertError('CERT_ERR_STATE', `${CERT_FILES.caKey} is not the key of the first certificate in ${CERT_FILES.caBundle}`);
  }

  let rotated = false;
  const newCA = (): CertKeyPair => createCertificateAuthority({ keyType: req.keyType, validityDays: req.caValidityDays, now, commonName: `${req.commonName}-ca` });
  if (currentCA === undefined) {
    ca = newCA();
    actions.push({ action: 'ca-created', reason: 'no CA yet' });
  } else if (req.rotateCA) {
    ca = newCA();
    rotated = true;
    actions.push({ action: 'ca-rotated', reason: 'rotation requested' });
  } else if (daysLeft(currentCA.x, now) < req.caRenewBeforeDays) {
    ca = newCA();
    rotated = true;
    actions.push({ action: 'ca-rotated', reason: `the CA expires ${currentCA.x.validTo}, within ${req.caRenewBeforeDays} days` });
  } else {
    ca = { certPem: currentCA.pem, keyPem: current.caKeyPem as string };
    actions.push({ action: 'ca-kept', reason: `valid until ${currentCA.x.validTo}` });
  }

  // The bundle: current CA first, then older CAs that are still valid (deduplicated), unless dropped.
  const caX = new X509Certificate(ca.certPem);
  const older = bundleCerts.filter((c) => c.x.fingerprint256 !== caX.fingerprint256);
  const keptOlder: string[] = [];
  for (const c of older) {
    if (req.dropOldCAs) actions.push({ action: 'old-ca-dropped', reason: `dropped on request (${c.x.subject.replace(/\n/g, ', ')}, until ${c.x.validTo})` });
    else if (daysLeft(c.x, now) <= 0) actions.push({ action: 'old-ca-dropped', reason: `expired ${c.x.validTo}` });
    else keptOlder.push(c.pem);
  }
  const caBundlePem = [ca.certPem, ...keptOlder].join('');

  // The serving certificate.
  let reissue: CertAction | undefined;
  if (current.certPem === undefined || current.keyPem === undefined) {
    reissue = { action: 'cert-issued', reason: 'no serving certificate yet' };
  } else {
    const leaf = parseCert(current.certPem, CERT_FILES.cert);
    const sans = sansOf(leaf);
    const wantedIps = req.ips.map(ipHex);
    const leafKeyType = keyTypeOf(leaf.publicKey);
    if (!sameKey(current.certPem, current.keyPem)) reissue = { action: 'cert-renewed', reason: `${CERT_FILES.key} is not the key of ${CERT_FILES.cert}` };
    else if (rotated) reissue = { action: 'cert-renewed', reason: 'the CA was rotated' };
    else if (req.force) reissue = { action: 'cert-renewed', reason: 'renewal forced' };
    else if (!leaf.checkIssued(caX) || !leaf.verify(caX.publicKey)) reissue = { action: 'cert-renewed', reason: 'not signed by the current CA' };
    else if (daysLeft(leaf, now) < req.renewBeforeDays) reissue = { action: 'cert-renewed', reason: `expires ${leaf.validTo}, within ${req.renewBeforeDays} days` };
    else if (!sameSet(sans.dns, req.dnsNames) || !sameSet(sans.ips, wantedIps)) reissue = { action: 'cert-renewed', reason: 'the wanted DNS names or IP addresses changed' };
    else if (leafKeyType !== req.keyType) reissue = { action: 'cert-renewed', reason: `the key type changed to ${req.keyType}` };
  }
  let cert: CertKeyPair;
  if (reissue !== undefined) {
    cert = issueServingCertificate(ca, { commonName: req.commonName, dnsNames: req.dnsNames, ips: req.ips, keyType: req.keyType, validityDays: req.validityDays, now });
    actions.push(reissue);
  } else {
    cert = { certPem: current.certPem as string, keyPem: current.keyPem as string };
    actions.push({ action: 'cert-kept', reason: `valid until ${new X509Certificate(cert.certPem).validTo}` });
  }

  const state = { caBundlePem, caKeyPem: ca.keyPem, certPem: cert.certPem, keyPem: cert.keyPem };
  const changed =
    state.caBundlePem !== current.caBundlePem || state.caKeyPem !== current.caKeyPem || state.certPem !== current.certPem || state.keyPem !== current.keyPem;
  return { state, actions, changed };
}

function readIfExists(file: string): string | undefined {
  if (!existsSync(file)) return undefined;
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new CertError('CERT_ERR_IO', `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, { cause: err });
  }
}

/** Reads what `dir` holds. */
function readCertState(dir: string): CertState {
  return {
    caBundlePem: readIfExists(path.join(dir, CERT_FILES.caBundle)),
    caKeyPem: readIfExists(path.join(dir, CERT_FILES.caKey)),
    certPem: readIfExists(path.join(dir, CERT_FILES.cert)),
    keyPem: readIfExists(path.join(dir, CERT_FILES.key)),
  };
}

function writeAtomic(file: string, content: string, mode: number): void {
  // Write-then-rename, so a reader (a server reloading its certificate) never sees half a file.
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    writeFileSync(tmp, content, { mode });
    renameSync(tmp, file);
  } catch (err) {
    throw new CertError('CERT_ERR_IO', `cannot write ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, { cause: err });
  }
}

/** The result of {@link ensureCertificates}. */
export interface CertResult {
  readonly actions: readonly CertAction[];
  readonly changed: boolean;
  /** The CA bundle (PEM) to trust, as written to `ca.crt`. */
  readonly caBundlePem: string;
  /** The same, base64-encoded: the value of a webhook's `clientConfig.caBundle`. */
  readonly caBundle: string;
  readonly files: { readonly [K in keyof typeof CERT_FILES]: string };
}

/**
 * Brings `dir` up to date for `req` and returns what happened. Keys are
 * written with mode 0600, each file atomically. A run interrupted between two
 * files can leave them mismatched: the next run re-issues a serving pair
 * whose key does not fit, and refuses (CERT_ERR_STATE) a CA key that does not
 * fit the bundle rather than guess which one is right.
 */
export function ensureCertificates(dir: string, req: CertRequest): CertResult {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new CertError('CERT_ERR_IO', `cannot create ${dir}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, { cause: err });
  }
  const plan = planCertificates(readCertState(dir), req);
  const files = {
    caBundle: path.join(dir, CERT_FILES.caBundle),
    caKey: path.join(dir, CERT_FILES.caKey),
    cert: path.join(dir, CERT_FILES.cert),
    key: path.join(dir, CERT_FILES.key),
  };
  if (plan.changed) {
    writeAtomic(files.key, plan.state.keyPem, 0o600);
    writeAtomic(files.cert, plan.state.certPem, 0o644);
    writeAtomic(files.caBundle, plan.state.caBundlePem, 0o644);
    writeAtomic(files.caKey, plan.state.caKeyPem, 0o600);
  }
  return {
    actions: plan.actions,
    changed: plan.changed,
    caBundlePem: plan.state.caBundlePem,
    caBundle: Buffer.from(plan.state.caBundlePem).toString('base64'),
    files,
  };
}
