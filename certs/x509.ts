/**
 * X.509 certificates for kubetrail's serving endpoints, with ECDSA P-256 or
 * RSA 2048 keys.
 *
 * Division of labour, and why: node-forge builds the certificate structure
 * (names, validity, extensions, DER), but its `pki` layer only knows RSA keys.
 * So keys and signatures come from `node:crypto` (native, and it has P-256),
 * and this module splices the real SubjectPublicKeyInfo, the signature
 * algorithm and the signature into the TBSCertificate that forge encodes.
 * Reading certificates back uses `crypto.X509Certificate`, which (unlike forge)
 * parses EC certificates.
 *
 * The API server checks a webhook's certificate by its DNS SAN
 * (`<service>.<namespace>.svc`) and ignores the CN, so every serving
 * certificate carries its names as SANs.
 */
import { X509Certificate, createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import forge from 'node-forge';
import { CertError } from './errors.ts';

/** The key algorithms kubetrail issues: ECDSA on P-256 (default) or RSA with a 2048-bit modulus. */
export type KeyType = 'ecdsa-p256' | 'rsa-2048';

/** The key types, in the order `--key-type` lists them. */
export const KEY_TYPES: readonly KeyType[] = ['ecdsa-p256', 'rsa-2048'];

/** A PEM certificate with its PEM (PKCS#8) private key. */
export interface CertKeyPair {
  readonly certPem: string;
  readonly keyPem: string;
}

/** Options for {@link createCertificateAuthority}. */
export interface CAOptions {
  readonly commonName?: string;
  readonly keyType?: KeyType;
  readonly validityDays?: number;
  /** Injectable clock. */
  readonly now?: Date;
}

/** Options for {@link issueServingCertificate}. */
export interface ServingOptions {
  readonly commonName: string;
  readonly dnsNames?: readonly string[];
  readonly ips?: readonly string[];
  readonly keyType?: KeyType;
  readonly validityDays?: number;
  /** serverAuth (default), clientAuth, or both. */
  readonly usages?: readonly ('serverAuth' | 'clientAuth')[];
  readonly now?: Date;
}

// forge's typings omit these two; they exist in node-forge's lib/x509.js and lib/asn1.js.
interface ForgeX509Extras {
  getTBSCertificate(cert: forge.pki.Certificate): forge.asn1.Asn1;
}
type FromDer = (bytes: string, options: { strict?: boolean; decodeBitStrings?: boolean }) => forge.asn1.Asn1;
const pkiExtras = forge.pki as unknown as ForgeX509Extras;
const fromDer = forge.asn1.fromDer as unknown as FromDer;
const { Class, Type } = forge.asn1;

const OID_SHA256_WITH_RSA = '1.2.840.113549.1.1.11';
const OID_ECDSA_WITH_SHA256 = '1.2.840.10045.4.3.2';
const OID_SUBJECT_KEY_IDENTIFIER = '2.5.29.14';
const DAY_MS = 24 * 3600 * 1000;
/** Backdating of notBefore, so a peer whose clock runs a little behind accepts a fresh certificate. */
const CLOCK_SKEW_MS = 5 * 60 * 1000;

/** Generates a private key of the given type. */
function generateKey(type: KeyType): KeyObject {
  return type === 'ecdsa-p256'
    ? generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey
    : generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
}

/** The {@link KeyType} of a key, or undefined for a key kubetrail does not issue (e.g. P-384). */
export function keyTypeOf(key: KeyObject): KeyType | undefined {
  const d = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'ec' && d?.namedCurve === 'prime256v1') return 'ecdsa-p256';
  if (key.asymmetricKeyType === 'rsa' && d?.modulusLength === 2048) return 'rsa-2048';
  return undefined;
}

function toBinary(b: Buffer): string {
  return b.toString('binary');
}

function pem(type: string, der: string): string {
  // forge writes CRLF line ends; files and bundles use LF so they compare byte for byte.
  return forge.pem.encode({ type, body: der }, { maxline: 64 }).replace(/\r\n/g, '\n');
}

function spkiAsn1(publicKey: KeyObject): forge.asn1.Asn1 {
  // decodeBitStrings: false keeps the key bits as raw bytes, re-encoded verbatim.
  return fromDer(toBinary(publicKey.export({ type: 'spki', format: 'der' })), { decodeBitStrings: false });
}

/** RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING (without its unused-bits byte). */
export function subjectKeyIdentifier(publicKey: KeyObject): string {
  const spki = spkiAsn1(publicKey);
  const bits = (spki.value as forge.asn1.Asn1[])[1];
  if (bits === undefined || typeof bits.value !== 'string') throw new TypeError('unexpected SubjectPublicKeyInfo encoding');
  return createHash('sha1').update(Buffer.from(bits.value.slice(1), 'binary')).digest('binary');
}

function signatureAlgorithm(signingKey: KeyObject): forge.asn1.Asn1 {
  if (signingKey.asymmetricKeyType === 'ec') {
    // RFC 5758 §3.2: ecdsa-with-SHA256 has no parameters at all (not even NULL).
    return forge.asn1.create(Class.UNIVERSAL, Type.SEQUENCE, true, [
      forge.asn1.create(Class.UNIVERSAL, Type.OID, false, forge.asn1.oidToDer(OID_ECDSA_WITH_SHA256).getBytes()),
    ]);
  }
  if (signingKey.asymmetricKeyType === 'rsa') {
    return forge.asn1.create(Class.UNIVERSAL, Type.SEQUENCE, true, [
      forge.asn1.create(Class.UNIVERSAL, Type.OID, false, forge.asn1.oidToDer(OID_SHA256_WITH_RSA).getBytes()),
      forge.asn1.create(Class.UNIVERSAL, Type.NULL, false, ''),
    ]);
  }
  throw new TypeError(`unsupported signing key type ${String(signingKey.asymmetricKeyType)}`);
}

function serialHex(): string {
  // Positive 128-bit serial: the top bit cleared so DER does not read it as negative (Go rejects those).
  const b = randomBytes(16);
  b[0] = ((b[0] as number) & 0x7f) | 0x01;
  return b.toString('hex');
}

interface BuildParams {
  readonly subject: forge.pki.CertificateField[];
  /** The issuer's Name as DER-decoded ASN.1 (copied byte for byte), or undefined for self-signed. */
  readonly issuerName: forge.asn1.Asn1 | undefined;
  readonly publicKey: KeyObject;
  readonly signingKey: KeyObject;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly extensions: object[];
}

function buildCertificate(p: BuildParams): string {
  const cert = forge.pki.createCertificate();
  // A placeholder RSA key lets forge encode the TBSCertificate; the real SPKI replaces it below.
  cert.publicKey = forge.pki.setRsaPublicKey(new forge.jsbn.BigInteger('3', 10), new forge.jsbn.BigInteger('65537', 10));
  cert.serialNumber = serialHex();
  cert.validity.notBefore = p.notBefore;
  cert.validity.notAfter = p.notAfter;
  cert.setSubject(p.subject);
  cert.setIssuer(p.subject);
  cert.siginfo.algorithmOid = OID_SHA256_WITH_RSA;
  cert.setExtensions([
    ...p.extensions,
    // forge would derive the key identifier from the placeholder key: pass the real one as a raw value.
    { id: OID_SUBJECT_KEY_IDENTIFIER, critical: false, value: forge.asn1.create(Class.UNIVERSAL, Type.OCTETSTRING, false, subjectKeyIdentifier(p.publicKey)) },
  ]);
  const tbs = pkiExtras.getTBSCertificate(cert);
  const fields = tbs.value as forge.asn1.Asn1[];
  // TBSCertificate: [0] version, [1] serial, [2] signature, [3] issuer, [4] validity, [5] subject, [6] SPKI, [7] extensions.
  const algorithm = signatureAlgorithm(p.signingKey);
  fields[2] = algorithm;
  if (p.issuerName !== undefined) fields[3] = p.issuerName;
  fields[6] = spkiAsn1(p.publicKey);
  const tbsDer = forge.asn1.toDer(tbs).getBytes();
  // node:crypto signs with PKCS#1 v1.5 for RSA and DER-encoded (r, s) for ECDSA, as X.509 wants.
  const signature = sign('sha256', Buffer.from(tbsDer, 'binary'), p.signingKey);
  const certificate = forge.asn1.create(Class.UNIVERSAL, Type.SEQUENCE, true, [
    tbs,
    signatureAlgorithm(p.signingKey),
    forge.asn1.create(Class.UNIVERSAL, Type.BITSTRING, false, `\u0000${toBinary(signature)}`),
  ]);
  return pem('CERTIFICATE', forge.asn1.toDer(certificate).getBytes());
}

function keyPemOf(key: KeyObject): string {
  return key.export({ type: 'pkcs8', format: 'pem' }).toString();
}

function days(n: number | undefined, fallback: number, what: string): number {
  const v = n ?? fallback;
  if (!Number.isFinite(v) || v <= 0) throw new CertError('CERT_ERR_ARGS', `${what} must be a positive number of days`);
  return v;
}

/** Creates a self-signed CA: basicConstraints CA with pathLen 0 (it signs serving certificates only), SHA-256. */
export function createCertificateAuthority(opts: CAOptions = {}): CertKeyPair {
  const now = opts.now ?? new Date();
  const key = generateKey(opts.keyType ?? 'ecdsa-p256');
  const certPem = buildCertificate({
    subject: [
      { name: 'commonName', value: opts.commonName ?? 'kubetrail-ca' },
      // A per-CA serial number in the name keeps two generations of the CA distinguishable in a bundle.
      { name: 'serialNumber', value: randomBytes(8).toString('hex') },
    ],
    issuerName: undefined,
    publicKey: createPublicKey(key),
    signingKey: key,
    notBefore: new Date(now.getTime() - CLOCK_SKEW_MS),
    notAfter: new Date(now.getTime() + days(opts.validityDays, 1825, 'CA validity') * DAY_MS),
    extensions: [
      { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    ],
  });
  return { certPem, keyPem: keyPemOf(key) };
}

/** The DER-decoded subject Name of a certificate, to become the issuer of the certificates it signs. */
function subjectName(cert: X509Certificate): forge.asn1.Asn1 {
  const asn = fromDer(toBinary(cert.raw), { decodeBitStrings: false });
  const tbs = (asn.value as forge.asn1.Asn1[])[0];
  const subject = tbs && (tbs.value as forge.asn1.Asn1[])[5];
  if (subject === undefined) throw new CertError('CERT_ERR_STATE', 'the CA certificate is not a valid X.509 certificate');
  return subject;
}

/**
 * Issues a serving certificate signed by `ca`, with DNS and IP SANs. Its
 * notAfter never passes the CA's, so the chain never outlives its anchor.
 */
export function issueServingCertificate(ca: CertKeyPair, opts: ServingOptions): CertKeyPair {
  const now = opts.now ?? new Date();
  const caCert = new X509Certificate(ca.certPem);
  const caKey = privateKeyFromPem(ca.keyPem);
  const keyType = opts.keyType ?? 'ecdsa-p256';
  const key = generateKey(keyType);
  const altNames: { type: number; value?: string; ip?: string }[] = [];
  for (const d of opts.dnsNames ?? []) {
    if (!isDnsName(d)) throw new CertError('CERT_ERR_ARGS', `not a DNS name: ${JSON.stringify(d)}`);
    altNames.push({ type: 2, value: d });
  }
  for (const ip of opts.ips ?? []) {
    if (isIP(ip) === 0) throw new CertError('CERT_ERR_ARGS', `not an IP address: ${JSON.stringify(ip)}`);
    altNames.push({ type: 7, ip });
  }
  if (altNames.length === 0) throw new CertError('CERT_ERR_ARGS', 'a serving certificate needs at least one DNS name or IP address');
  const usages = opts.usages ?? ['serverAuth'];
  const caNotAfter = new Date(caCert.validTo);
  const wanted = new Date(now.getTime() + days(opts.validityDays, 365, 'certificate validity') * DAY_MS);
  const certPem = buildCertificate({
    subject: [{ name: 'commonName', value: opts.commonName }],
    issuerName: subjectName(caCert),
    publicKey: createPublicKey(key),
    signingKey: caKey,
    notBefore: new Date(now.getTime() - CLOCK_SKEW_MS),
    notAfter: wanted > caNotAfter ? caNotAfter : wanted,
    extensions: [
      { name: 'basicConstraints', cA: false, critical: true },
      // keyEncipherment only means something for RSA key transport; an ECDSA key only signs.
      keyType === 'rsa-2048'
        ? { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true }
        : { name: 'keyUsage', digitalSignature: true, critical: true },
      { name: 'extKeyUsage', serverAuth: usages.includes('serverAuth'), clientAuth: usages.includes('clientAuth') },
      { name: 'authorityKeyIdentifier', keyIdentifier: subjectKeyIdentifier(caCert.publicKey) },
      { name: 'subjectAltName', altNames },
    ],
  });
  return { certPem, keyPem: keyPemOf(key) };
}

/** Parses a PEM private key (PKCS#8, PKCS#1 or SEC1), turning failure into a {@link CertError}. */
export function privateKeyFromPem(keyPem: string): KeyObject {
  try {
    return createPrivateKey({ key: keyPem, format: 'pem' });
  } catch (err) {
    throw new CertError('CERT_ERR_STATE', 'not a PEM private key', { cause: err });
  }
}

/** A DNS name as a SAN: labels of letters, digits and hyphens, optionally a leading `*.` wildcard. */
function isDnsName(s: string): boolean {
  return s.length > 0 && s.length <= 253 && /^(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/.test(s);
}

/** Splits a PEM bundle into its certificates (PEM each), ignoring anything between them. */
export function splitPemBundle(bundle: string): string[] {
  return bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)?.map((c) => `${c}\n`) ?? [];
}

/** The SANs of a certificate: DNS names as written, IP addresses as lower-case hex of their bytes (so ::1 and 0:0:…:1 compare equal). */
export function sansOf(cert: X509Certificate): { dns: string[]; ips: string[] } {
  const dns: string[] = [];
  const ips: string[] = [];
  // Node prints "DNS:a, IP Address:1.2.3.4"; DNS names cannot contain ", ".
  for (const part of (cert.subjectAltName ?? '').split(', ')) {
    if (part.startsWith('DNS:')) dns.push(part.slice(4));
    else if (part.startsWith('IP Address:')) ips.push(ipHex(part.slice('IP Address:'.length)));
  }
  return { dns, ips };
}

/** An IP address as lower-case hex of its bytes. */
export function ipHex(ip: string): string {
  // bytesFromIP exists in node-forge's lib/util.js but not in its typings.
  const bytes = (forge.util as unknown as { bytesFromIP(ip: string): string | null }).bytesFromIP(ip);
  if (bytes === null || bytes === undefined) throw new CertError('CERT_ERR_ARGS', `not an IP address: ${JSON.stringify(ip)}`);
  return forge.util.bytesToHex(bytes);
}
