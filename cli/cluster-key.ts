/**
 * `kubetrail verify --public-key-from-cluster NAMESPACE/NAME`: the signing
 * public key that kubetrail published in a ConfigMap (core/signing-key-secret.ts),
 * read with the kubeconfig (`--kubeconfig`, `--context`, else the default).
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { KubeClient } from '../core/kube-client.ts';
import { readPublishedPublicKey } from '../core/signing-key-secret.ts';

/** The default ConfigMap, as the manifests create it. */
export const DEFAULT_PUBLIC_KEY_CONFIGMAP = 'kubetrail/kubetrail-signing-public-key';

/** Reads each `namespace/name` ConfigMap's public key; throws with the reference at fault. */
export async function publicKeysFromCluster(refs: readonly string[], opts: { kubeconfig?: string; context?: string }): Promise<KeyObject[]> {
  if (refs.length === 0) return [];
  const client = new KubeClient({ ...(opts.kubeconfig ? { kubeconfig: opts.kubeconfig } : {}), ...(opts.context ? { context: opts.context } : {}) });
  const keys: KeyObject[] = [];
  for (const ref of refs) {
    const m = /^([a-z0-9-]{1,63})\/([a-z0-9.-]{1,253})$/.exec(ref === '' ? DEFAULT_PUBLIC_KEY_CONFIGMAP : ref);
    if (!m) throw new TypeError(`expected NAMESPACE/NAME, e.g. ${DEFAULT_PUBLIC_KEY_CONFIGMAP}; got ${JSON.stringify(ref)}`);
    const key = createPublicKey(await readPublishedPublicKey(client, m[1] as string, m[2] as string));
    if (key.asymmetricKeyType !== 'ed25519') throw new TypeError(`${ref}: not an Ed25519 public key`);
    keys.push(key);
  }
  return keys;
}
