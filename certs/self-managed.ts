/**
 * Self-managed webhook certificates, as Kyverno and Gatekeeper manage theirs:
 * the leader (core/lease.ts) keeps a CA and a serving certificate in one
 * Secret and writes the CA bundle into kubetrail's own webhook
 * configurations; every replica (and the gateway) serves the pair from that
 * Secret (certs/tls-secret-watcher.ts).
 *
 * Renewal never fails a review, because the trust anchor changes in two
 * steps separated by `rolloverGraceSeconds`:
 *   1. the CA nears its end: a next CA is made and added to the bundle
 *      (old + next), the bundle is written to every webhook configuration,
 *      and the time of that write is recorded on the Secret;
 *   2. a grace period later (the API server and every replica have the new
 *      bundle) the next CA becomes the signing CA and a serving certificate
 *      from it replaces the old one.
 * An old CA stays in the bundle until it expires, so a replica still serving
 * the previous certificate keeps being trusted. A serving certificate near
 * its end, or whose names changed, is reissued from the signing CA alone.
 *
 * Secret (type kubernetes.io/tls): tls.crt, tls.key (serving pair), ca.crt
 * (the bundle), ca-signing.crt/.key (the signing CA), ca-next.crt/.key
 * (during a rollover only).
 */
import { X509Certificate } from 'node:crypto';
import type { Logger } from '../core/logger.ts';
import { KubeError, type KubeClient, type KubeObject } from '../core/kube-client.ts';
import { createCertificateAuthority, issueServingCertificate, ipHex, sansOf, splitPemBundle, type CertKeyPair } from './x509.ts';

/** What the certificate manager keeps, and where. */
export interface SelfManagedTlsSettings {
  readonly namespace: string;
  readonly secret: string;
  readonly dnsNames: readonly string[];
  readonly ipAddresses: readonly string[];
  /** kubetrail's own configurations, by name: every webhook in them gets the bundle. */
  readonly validatingWebhookConfigurations: readonly string[];
  readonly mutatingWebhookConfigurations: readonly string[];
  readonly caValidityDays: number;
  readonly certValidityDays: number;
  readonly caRenewBeforeDays: number;
  readonly certRenewBeforeDays: number;
  /** Time between publishing a next CA and serving a certificate from it (s). */
  readonly rolloverGraceSeconds: number;
}

/** Annotation on the Secret: when the bundle holding ca-next was written to every webhook configuration. */
export const PUBLISHED_AT_ANNOTATION = 'kubetrail.io/next-ca-published-at';

const DAY_MS = 24 * 3600 * 1000;

interface SecretObject extends KubeObject {
  type?: string;
  data?: Record<string, string>;
}

interface WebhookConfigurationObject extends KubeObject {
  webhooks?: { name: string; clientConfig?: { caBundle?: string; [k: string]: unknown } }[];
}

/** The Secret's contents, decoded. */
export interface TlsMaterial {
  serving: CertKeyPair;
  bundlePem: string;
  signing: CertKeyPair;
  next?: CertKeyPair;
}

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
const unb64 = (s: string | undefined): string | undefined => (s === undefined ? undefined : Buffer.from(s, 'base64').toString('utf8'));

/** Decodes the Secret's data; undefined when a required key is missing. */
export function decodeTlsSecret(data: Record<string, string> | undefined): TlsMaterial | undefined {
  const get = (k: string): string | undefined => unb64(data?.[k]);
  const [cert, key, bundle, sc, sk] = [get('tls.crt'), get('tls.key'), get('ca.crt'), get('ca-signing.crt'), get('ca-signing.key')];
  if (!cert || !key || !bundle || !sc || !sk) return undefined;
  const nc = get('ca-next.crt');
  const nk = get('ca-next.key');
  return { serving: { certPem: cert, keyPem: key }, bundlePem: bundle, signing: { certPem: sc, keyPem: sk }, ...(nc && nk ? { next: { certPem: nc, keyPem: nk } } : {}) };
}

function encode(m: TlsMaterial): Record<string, string> {
  return {
    'tls.crt': b64(m.serving.certPem),
    'tls.key': b64(m.serving.keyPem),
    'ca.crt': b64(m.bundlePem),
    'ca-signing.crt': b64(m.signing.certPem),
    'ca-signing.key': b64(m.signing.keyPem),
    ...(m.next ? { 'ca-next.crt': b64(m.next.certPem), 'ca-next.key': b64(m.next.keyPem) } : {}),
  };
}

function sameCert(a: string, b: string): boolean {
  return new X509Certificate(a).fingerprint256 === new X509Certificate(b).fingerprint256;
}

/** The leader's reconciler: one {@link reconcile} per tick. */
export class SelfManagedCertificates {
  readonly #client: KubeClient;
  readonly #s: SelfManagedTlsSettings;
  readonly #log: Logger;
  readonly #now: () => Date;
  readonly #secretPath: string;

  constructor(opts: { client: KubeClient; settings: SelfManagedTlsSettings; log: Logger; now?: () => Date }) {
    const s = opts.settings;
    if (s.dnsNames.length + s.ipAddresses.length === 0) throw new TypeError('self-managed TLS needs at least one DNS name or IP address');
    if (s.caRenewBeforeDays >= s.caValidityDays || s.certRenewBeforeDays >= s.certValidityDays) throw new TypeError('renewBefore must be shorter than the validity');
    this.#client = opts.client;
    this.#s = s;
    // `secret` is a redacted log key (core/logger.ts): the object's name goes under another.
    this.#log = opts.log.child({ tlsSecret: `${s.namespace}/${s.secret}` });
    this.#now = opts.now ?? (() => new Date());
    this.#secretPath = `/api/v1/namespaces/${encodeURIComponent(s.namespace)}/secrets`;
  }

  #newCa(now: Date): CertKeyPair {
    return createCertificateAuthority({ commonName: 'kubetrail-webhook-ca', validityDays: this.#s.caValidityDays, now });
  }

  #issue(ca: CertKeyPair, now: Date): CertKeyPair {
    const s = this.#s;
    return issueServingCertificate(ca, { commonName: s.dnsNames[0] ?? s.ipAddresses[0] ?? 'kubetrail', dnsNames: s.dnsNames, ips: s.ipAddresses, validityDays: s.certValidityDays, now });
  }

  /** Whether the serving certificate must be reissued from the signing CA. */
  #servingStale(m: TlsMaterial, now: Date): boolean {
    const cert = new X509Certificate(m.serving.certPem);
    const ca = new X509Certificate(m.signing.certPem);
    if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) return true;
    if (new Date(cert.validTo).getTime() - now.getTime() < this.#s.certRenewBeforeDays * DAY_MS) return true;
    const sans = sansOf(cert);
    const want = { dns: [...this.#s.dnsNames].sort(), ips: this.#s.ipAddresses.map(ipHex).sort() };
    return JSON.stringify({ dns: sans.dns.sort(), ips: sans.ips.sort() }) !== JSON.stringify(want);
  }

  /**
   * Brings the Secret and the webhook configurations one step closer to the
   * desired state. Idempotent; a conflict (another writer) ends the tick and
   * the next one starts from what is stored.
   */
  async reconcile(): Promise<void> {
    const now = this.#now();
    const itemPath = `${this.#secretPath}/${encodeURIComponent(this.#s.secret)}`;
    let secret = await this.#client.get<SecretObject>(itemPath);
    let material = secret && this.#decodeValid(secret);
    if (material === undefined) {
      const ca = this.#newCa(now);
      material = { signing: ca, bundlePem: ca.certPem, serving: this.#issue(ca, now) };
      const body: SecretObject = { apiVersion: 'v1', kind: 'Secret', type: 'kubernetes.io/tls', metadata: { name: this.#s.secret, namespace: this.#s.namespace, labels: { 'app.kubernetes.io/managed-by': 'kubetrail' } }, data: encode(material) };
      try {
        secret = secret ? await this.#client.replace<SecretObject>(itemPath, { ...body, metadata: { ...secret.metadata, ...body.metadata } }) : await this.#client.create<SecretObject>(this.#secretPath, body);
        this.#log.info({}, 'self-managed TLS: created the CA and serving certificate');
      } catch (err) {
        if (err instanceof KubeError && err.code === 'KUBE_ERR_CONFLICT') return; // written by someone else: next tick reads it
        throw err;
      }
    }
    const before = JSON.stringify(encode(material));
    const annotations = { ...(secret?.metadata.annotations ?? {}) };
    const m: TlsMaterial = { ...material };

    // Expired CAs leave the bundle (never the signing or next one).
    const keep = splitPemBundle(m.bundlePem).filter((c) => new Date(new X509Certificate(c).validTo) > now || sameCert(c, m.signing.certPem) || (m.next && sameCert(c, m.next.certPem)));
    m.bundlePem = keep.join('');

    const caEnd = new Date(new X509Certificate(m.signing.certPem).validTo).getTime();
    if (m.next === undefined && caEnd - now.getTime() < this.#s.caRenewBeforeDays * DAY_MS) {
      m.next = this.#newCa(now);
      m.bundlePem = `${m.bundlePem}${m.next.certPem}`;
      delete annotations[PUBLISHED_AT_ANNOTATION];
      this.#log.info({}, 'self-managed TLS: CA rollover started; the next CA is added to the bundle');
    } else if (m.next !== undefined && annotations[PUBLISHED_AT_ANNOTATION] !== undefined) {
      const publishedAt = Date.parse(annotations[PUBLISHED_AT_ANNOTATION]);
      if (Number.isFinite(publishedAt) && now.getTime() - publishedAt >= this.#s.rolloverGraceSeconds * 1000) {
        m.signing = m.next;
        delete m.next;
        delete annotations[PUBLISHED_AT_ANNOTATION];
        this.#log.info({}, 'self-managed TLS: the next CA now signs the serving certificate');
      }
    }
    if (this.#servingStale(m, now)) {
      m.serving = this.#issue(m.signing, now);
      this.#log.info({}, 'self-managed TLS: serving certificate issued');
    }

    if (JSON.stringify(encode(m)) !== before || JSON.stringify(annotations) !== JSON.stringify(secret?.metadata.annotations ?? {})) {
      secret = await this.#writeSecret(itemPath, secret, m, annotations);
      if (secret === undefined) return;
    }
    const published = await this.#publish(m.bundlePem);
    if (published && m.next !== undefined && annotations[PUBLISHED_AT_ANNOTATION] === undefined && secret) {
      annotations[PUBLISHED_AT_ANNOTATION] = now.toISOString();
      await this.#writeSecret(itemPath, secret, m, annotations);
    }
  }

  #decodeValid(secret: SecretObject): TlsMaterial | undefined {
    const m = decodeTlsSecret(secret.data);
    try {
      if (m) {
        new X509Certificate(m.serving.certPem);
        new X509Certificate(m.signing.certPem);
        if (splitPemBundle(m.bundlePem).length === 0) return undefined;
      }
    } catch {
      this.#log.error({}, 'self-managed TLS: the Secret does not hold valid certificates; replacing it');
      return undefined;
    }
    return m;
  }

  async #writeSecret(itemPath: string, secret: SecretObject | undefined, m: TlsMaterial, annotations: Record<string, string>): Promise<SecretObject | undefined> {
    if (!secret) return undefined;
    try {
      return await this.#client.replace<SecretObject>(itemPath, { ...secret, metadata: { ...secret.metadata, annotations }, data: encode(m) });
    } catch (err) {
      if (err instanceof KubeError && err.code === 'KUBE_ERR_CONFLICT') return undefined;
      throw err;
    }
  }

  /** Writes the bundle into every webhook of the named configurations; true when all of them hold it. */
  async #publish(bundlePem: string): Promise<boolean> {
    const caBundle = b64(bundlePem);
    let all = true;
    const targets = [
      ...this.#s.validatingWebhookConfigurations.map((n) => `/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/${encodeURIComponent(n)}`),
      ...this.#s.mutatingWebhookConfigurations.map((n) => `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${encodeURIComponent(n)}`),
    ];
    for (const p of targets) {
      const cfg = await this.#client.get<WebhookConfigurationObject>(p);
      if (cfg === undefined) {
        this.#log.warn({ path: p }, 'self-managed TLS: webhook configuration not found; the bundle is written when it appears');
        all = false;
        continue;
      }
      const webhooks = cfg.webhooks ?? [];
      if (webhooks.every((w) => w.clientConfig?.caBundle === caBundle)) continue;
      try {
        await this.#client.replace(p, { ...cfg, webhooks: webhooks.map((w) => ({ ...w, clientConfig: { ...w.clientConfig, caBundle } })) });
        this.#log.info({ path: p }, 'self-managed TLS: caBundle written');
      } catch (err) {
        if (!(err instanceof KubeError && err.code === 'KUBE_ERR_CONFLICT')) throw err;
        all = false; // changed meanwhile (e.g. a kubectl apply): next tick
      }
    }
    return all;
  }
}
