/**
 * Ed25519 keys for signed checkpoints (node:crypto only).
 *
 * A checkpoint signs the UTF-8 bytes of `${instance}\n${seq}\n${hash}` where
 * seq/hash are the link of the last event before the checkpoint. Because each
 * hash covers the previous one, one valid signature vouches for every earlier
 * event of that chain. `kubetrail verify` needs only the public key.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { GapBody } from '../events/model.ts';
import type { Logger } from '../logger.ts';
import { canonicalJson } from './canonical.ts';
import { SinkError } from '../sinks/errors.ts';

/** A loaded signing key. */
export interface SigningKey {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  /** First 16 hex digits of SHA-256 over the raw 32-byte public key. */
  readonly keyId: string;
  /** Where it came from, for logs (never the key itself). */
  readonly origin: 'keyFile' | 'dev';
  /** Path of the public key PEM (written beside a dev key so verify can use it). */
  readonly publicKeyFile: string | undefined;
}

/** Key id of an Ed25519 public key. */
export function keyIdOf(publicKey: KeyObject): string {
  const raw = rawPublicKey(publicKey);
  return createHash('sha256').update(raw).digest('hex').slice(0, 16);
}

function rawPublicKey(publicKey: KeyObject): Buffer {
  const jwk = publicKey.export({ format: 'jwk' });
  if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string') throw new TypeError('not an Ed25519 public key');
  return Buffer.from(jwk.x, 'base64url');
}

/** The exact bytes a checkpoint signature covers. */
function checkpointMessage(instance: string, seq: number, hash: string): Buffer {
  return Buffer.from(`${instance}\n${seq}\n${hash}`, 'utf8');
}

/** Signs a checkpoint; base64 signature. */
export function signCheckpoint(key: SigningKey, instance: string, seq: number, hash: string): string {
  return sign(null, checkpointMessage(instance, seq, hash), key.privateKey).toString('base64');
}

/** True when `signature` is a valid Ed25519 signature of the checkpoint by `publicKey`. */
export function verifyCheckpoint(publicKey: KeyObject, instance: string, seq: number, hash: string, signature: string): boolean {
  try {
    return verify(null, checkpointMessage(instance, seq, hash), publicKey, Buffer.from(signature, 'base64'));
  } catch {
    return false;
  }
}

/**
 * The exact bytes a gap declaration's signature covers: a domain prefix (so
 * a gap signature can never pass as a checkpoint's), the instance, and the
 * canonical JSON of every other member of the body.
 */
export function gapMessage(instance: string, body: Omit<GapBody, 'signature'>): Buffer {
  const { signature: _ignored, ...rest } = body as GapBody;
  return Buffer.from(`kubetrail.io/v1 chain.gap\n${instance}\n${canonicalJson(rest)}`, 'utf8');
}

/** Signs a gap declaration; base64 signature. */
export function signGap(key: SigningKey, instance: string, body: Omit<GapBody, 'signature'>): string {
  return sign(null, gapMessage(instance, body), key.privateKey).toString('base64');
}

/** True when the gap declaration's signature verifies with `publicKey`. */
export function verifyGap(publicKey: KeyObject, instance: string, body: GapBody): boolean {
  try {
    return verify(null, gapMessage(instance, body), publicKey, Buffer.from(body.signature, 'base64'));
  } catch {
    return false;
  }
}

/**
 * Reads a key set: a directory (every `*.pem` in it) or one file holding one
 * or more PEM blocks (public keys, or private keys whose public half is used).
 * Throws TypeError naming the file at fault.
 */
export function loadPublicKeySet(file: string): KeyObject[] {
  let files: string[];
  try {
    files = statSync(file).isDirectory()
      ? readdirSync(file)
          .filter((n) => n.endsWith('.pem'))
          .sort()
          .map((n) => path.join(file, n))
      : [file];
  } catch (err) {
    throw new TypeError(`${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
  }
  const keys: KeyObject[] = [];
  for (const f of files) {
    const blocks = readFileSync(f, 'utf8').match(/-----BEGIN [A-Z ]+-----[\s\S]*?-----END [A-Z ]+-----/g) ?? [];
    if (blocks.length === 0) throw new TypeError(`${f}: no PEM block`);
    for (const pem of blocks) keys.push(publicKeyOfPem(pem, f));
  }
  if (keys.length === 0) throw new TypeError(`${file}: no *.pem key in the directory`);
  return keys;
}

function publicKeyOfPem(pem: string, file: string): KeyObject {
  let key: KeyObject;
  try {
    key = pem.includes('PRIVATE KEY') ? createPublicKey(createPrivateKey(pem)) : createPublicKey(pem);
  } catch (err) {
    throw new TypeError(`${file}: not a PEM public or private key`, { cause: err });
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new TypeError(`${file}: not an Ed25519 key (${key.asymmetricKeyType ?? 'unknown'})`);
  return key;
}

/**
 * Reads a public key for verification: an SPKI PEM, or a PKCS#8 private key
 * PEM (its public half is used). Throws TypeError naming the file when it is
 * not Ed25519.
 */
export function loadPublicKey(file: string): KeyObject {
  return publicKeyOfPem(readFileSync(file, 'utf8'), file);
}

/** Generates a new Ed25519 key pair as PEM (used by tests and the dev key). */
function generateSigningKeyPem(): { privatePem: string; publicPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privatePem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    publicPem: publicKey.export({ format: 'pem', type: 'spki' }).toString(),
  };
}

/**
 * Loads `signing.keyFile`, or, when it is unset, the dev key under
 * `dataDir/keys/` (generated on first use, with a loud warning each start:
 * anyone who can read the data dir can forge checkpoints with it).
 */
export function loadSigningKey(opts: { keyFile: string | undefined; dataDir: string; log: Logger }): SigningKey {
  if (opts.keyFile !== undefined) {
    let privateKey: KeyObject;
    try {
      privateKey = createPrivateKey(readFileSync(opts.keyFile, 'utf8'));
    } catch (err) {
      throw new SinkError('SINK_ERR_SIGNING_KEY', `signing.keyFile: cannot read a PEM private key from ${opts.keyFile}`, { setting: 'signing.keyFile', cause: err });
    }
    if (privateKey.asymmetricKeyType !== 'ed25519') {
      throw new SinkError('SINK_ERR_SIGNING_KEY', `signing.keyFile: ${opts.keyFile} is a ${privateKey.asymmetricKeyType ?? 'unknown'} key; an Ed25519 key is required`, {
        setting: 'signing.keyFile',
      });
    }
    const publicKey = createPublicKey(privateKey);
    return { privateKey, publicKey, keyId: keyIdOf(publicKey), origin: 'keyFile', publicKeyFile: undefined };
  }
  const dir = path.join(opts.dataDir, 'keys');
  const priv = path.join(dir, 'dev-signing.pem');
  const pub = path.join(dir, 'dev-signing.pub.pem');
  try {
    if (!existsSync(priv)) {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      const pair = generateSigningKeyPem();
      writeFileSync(priv, pair.privatePem, { mode: 0o600, flag: 'wx' });
      writeFileSync(pub, pair.publicPem, { mode: 0o644 });
    }
    const privateKey = createPrivateKey(readFileSync(priv, 'utf8'));
    const publicKey = createPublicKey(privateKey);
    if (!existsSync(pub)) writeFileSync(pub, publicKey.export({ format: 'pem', type: 'spki' }).toString());
    const keyId = keyIdOf(publicKey);
    opts.log.warn(
      { keyId, publicKeyFile: pub, setting: 'signing.keyFile' },
      'SIGNING WITH A GENERATED DEV KEY: signing.keyFile is unset, so checkpoints are signed with a key stored in the data dir; anyone who can read it can forge checkpoints. Set signing.keyFile (an Ed25519 PKCS#8 PEM, e.g. from a Secret) in production.',
    );
    return { privateKey, publicKey, keyId, origin: 'dev', publicKeyFile: pub };
  } catch (err) {
    throw new SinkError('SINK_ERR_DATA_DIR', `dataDir: cannot create or read the dev signing key under ${dir}`, { setting: 'dataDir', cause: err });
  }
}
