/**
 * Self-managed checkpoint signing key (config `selfManaged.signingKey`): an
 * Ed25519 key created once in a Secret, with its public key published in a
 * ConfigMap for `kubetrail verify --public-key-from-cluster`.
 *
 * Created only when absent, never over an existing key: every replica races
 * to create the Secret, the API server admits exactly one create, and the
 * losers (409) read the winner's key. Replacing the signing key would make
 * every checkpoint signed so far unverifiable with the published key, so an
 * unusable Secret stops the process (fail closed) rather than being replaced.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { KubetrailError } from './errors.ts';
import type { Config } from './config.ts';
import { KubeClient, KubeError, type KubeObject } from './kube-client.ts';
import type { Logger } from './logger.ts';

/** Secret key of the PKCS#8 PEM private key. */
export const SIGNING_KEY_SECRET_KEY = 'signing.pem';
/** ConfigMap key of the SPKI PEM public key. */
export const SIGNING_KEY_CONFIGMAP_KEY = 'signing.pub.pem';

/** Codes of signing key errors. */
export type SigningKeyErrorCode =
  /** The Secret exists but holds no usable Ed25519 key: never replaced (its checkpoints would no longer verify). */
  | 'SIGNKEY_ERR_UNUSABLE'
  /** The ConfigMap has no public key. */
  | 'SIGNKEY_ERR_NOT_PUBLISHED';

/** A signing key in the cluster could not be used. */
export class SigningKeyError extends KubetrailError<SigningKeyErrorCode> {
  constructor(code: SigningKeyErrorCode, message: string, options: { cause?: unknown } = {}) {
    super(code, message, { status: 500, ...options });
  }
}

interface DataObject extends KubeObject {
  type?: string;
  data?: Record<string, string>;
}

/** Where the key lives. */
export interface SigningKeyLocation {
  namespace: string;
  secret: string;
  configMap: string;
}

function publicPemOf(privatePem: string, where: string): string {
  let key;
  try {
    key = createPrivateKey(privatePem);
  } catch (err) {
    throw new SigningKeyError('SIGNKEY_ERR_UNUSABLE', `${where} does not hold a PEM private key in ${SIGNING_KEY_SECRET_KEY}`, { cause: err });
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new SigningKeyError('SIGNKEY_ERR_UNUSABLE', `${where} holds a ${String(key.asymmetricKeyType)} key; checkpoints are signed with Ed25519`);
  return createPublicKey(key).export({ type: 'spki', format: 'pem' }).toString();
}

/**
 * Returns the cluster's signing key (creating it when absent) and makes sure
 * the ConfigMap publishes its public key. The private key never leaves this
 * function except as its return value.
 */
export async function ensureSigningKey(client: KubeClient, loc: SigningKeyLocation, log: Logger): Promise<{ privatePem: string; publicPem: string }> {
  const where = `Secret ${loc.namespace}/${loc.secret}`;
  const secrets = `/api/v1/namespaces/${encodeURIComponent(loc.namespace)}/secrets`;
  let secret = await client.get<DataObject>(`${secrets}/${encodeURIComponent(loc.secret)}`);
  if (secret === undefined) {
    const { privateKey } = generateKeyPairSync('ed25519');
    const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    try {
      secret = await client.create<DataObject>(secrets, {
        apiVersion: 'v1',
        kind: 'Secret',
        type: 'Opaque',
        metadata: { name: loc.secret, namespace: loc.namespace, labels: { 'app.kubernetes.io/managed-by': 'kubetrail' } },
        data: { [SIGNING_KEY_SECRET_KEY]: Buffer.from(pem).toString('base64') },
      });
      log.info({ signingKeySecret: `${loc.namespace}/${loc.secret}` }, 'signing key created');
    } catch (err) {
      if (!(err instanceof KubeError && err.code === 'KUBE_ERR_CONFLICT')) throw err;
      // Another replica created it first: use that one.
      secret = await client.get<DataObject>(`${secrets}/${encodeURIComponent(loc.secret)}`);
    }
  }
  const b64 = secret?.data?.[SIGNING_KEY_SECRET_KEY];
  if (b64 === undefined) throw new SigningKeyError('SIGNKEY_ERR_UNUSABLE', `${where} has no ${SIGNING_KEY_SECRET_KEY}`);
  const privatePem = Buffer.from(b64, 'base64').toString('utf8');
  const publicPem = publicPemOf(privatePem, where);
  await publish(client, loc, publicPem, log);
  return { privatePem, publicPem };
}

async function publish(client: KubeClient, loc: SigningKeyLocation, publicPem: string, log: Logger): Promise<void> {
  const maps = `/api/v1/namespaces/${encodeURIComponent(loc.namespace)}/configmaps`;
  const itemPath = `${maps}/${encodeURIComponent(loc.configMap)}`;
  for (let attempt = 0; attempt < 5; attempt++) {
    const cm = await client.get<DataObject>(itemPath);
    if (cm?.data?.[SIGNING_KEY_CONFIGMAP_KEY] === publicPem) return;
    try {
      if (cm === undefined) {
        await client.create(maps, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: loc.configMap, namespace: loc.namespace, labels: { 'app.kubernetes.io/managed-by': 'kubetrail' } }, data: { [SIGNING_KEY_CONFIGMAP_KEY]: publicPem } });
      } else {
        // The Secret is the truth: a ConfigMap that disagrees is corrected.
        await client.replace(itemPath, { ...cm, data: { ...cm.data, [SIGNING_KEY_CONFIGMAP_KEY]: publicPem } });
      }
      log.info({ configMap: `${loc.namespace}/${loc.configMap}` }, 'signing public key published');
      return;
    } catch (err) {
      if (!(err instanceof KubeError && err.code === 'KUBE_ERR_CONFLICT')) throw err;
    }
  }
}

/** The published public key (SPKI PEM), for `kubetrail verify --public-key-from-cluster`. */
export async function readPublishedPublicKey(client: KubeClient, namespace: string, configMap: string): Promise<string> {
  const cm = await client.get<DataObject>(`/api/v1/namespaces/${encodeURIComponent(namespace)}/configmaps/${encodeURIComponent(configMap)}`);
  const pem = cm?.data?.[SIGNING_KEY_CONFIGMAP_KEY];
  if (pem === undefined) throw new SigningKeyError('SIGNKEY_ERR_NOT_PUBLISHED', `ConfigMap ${namespace}/${configMap} has no ${SIGNING_KEY_CONFIGMAP_KEY}${cm === undefined ? ' (it does not exist)' : ''}`);
  return pem;
}

/** Writes the private key where signing.keyFile points the pipeline (owner-only, replaced by a rename). */
export function writeSigningKeyFile(dir: string, privatePem: string): string {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = path.join(dir, 'cluster-signing.pem');
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, privatePem, { mode: 0o600 });
  renameSync(tmp, file);
  return file;
}

/**
 * The configuration the event pipeline should use: unchanged when
 * signing.keyFile is set or selfManaged.signingKey is not; otherwise with
 * signing.keyFile pointing at the cluster's key, written under dataDir/keys.
 */
export async function withClusterSigningKey(cfg: Config, log: Logger): Promise<Config> {
  const sm = cfg.selfManaged;
  if (cfg.signing.keyFile !== undefined || !sm?.signingKey) return cfg;
  const client = new KubeClient({ inCluster: sm.inCluster, ...(sm.kubeconfig ? { kubeconfig: sm.kubeconfig } : {}), ...(sm.context ? { context: sm.context } : {}) });
  const { privatePem } = await ensureSigningKey(client, { namespace: sm.namespace, secret: sm.signingKey.secret, configMap: sm.signingKey.configMap }, log);
  const keyFile = writeSigningKeyFile(path.join(cfg.dataDir, 'keys'), privatePem);
  return { ...cfg, signing: { ...cfg.signing, keyFile } };
}
