/**
 * Every replica's side of self-managed TLS (certs/self-managed.ts): reads
 * the serving pair from the Secret every `pollIntervalMs` and, when it
 * changed, writes it to `dir` (tls.crt, tls.key, ca.crt, each replaced by a
 * rename) and calls `onChange`, which reloads the listener
 * (core/tls-reload.ts).
 *
 * Polling rather than a watch: one GET per interval per replica is cheap, a
 * watch needs reconnect handling, and a mounted Secret volume would lag by
 * the kubelet's sync period (a minute or more) with no way to tell when the
 * new pair is served. The rollover grace period of the leader must exceed
 * the poll interval (checked at config load).
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../core/logger.ts';
import type { KubeClient, KubeObject } from '../core/kube-client.ts';
import { decodeTlsSecret } from './self-managed.ts';

/** The files the pair is written to. */
export interface TlsFiles {
  readonly certFile: string;
  readonly keyFile: string;
  readonly caFile: string;
}

/** Follows the serving pair in the Secret. */
export class TlsSecretWatcher {
  readonly files: TlsFiles;
  readonly #client: KubeClient;
  readonly #path: string;
  readonly #log: Logger;
  readonly #pollIntervalMs: number;
  #current = '';
  #timer: NodeJS.Timeout | undefined;
  #onChange: () => void = () => undefined;

  constructor(opts: { client: KubeClient; namespace: string; secret: string; dir: string; pollIntervalMs: number; log: Logger }) {
    this.#client = opts.client;
    this.#path = `/api/v1/namespaces/${encodeURIComponent(opts.namespace)}/secrets/${encodeURIComponent(opts.secret)}`;
    this.#log = opts.log.child({ component: 'tls-secret-watcher', tlsSecret: `${opts.namespace}/${opts.secret}` });
    this.#pollIntervalMs = opts.pollIntervalMs;
    mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
    this.files = { certFile: path.join(opts.dir, 'tls.crt'), keyFile: path.join(opts.dir, 'tls.key'), caFile: path.join(opts.dir, 'ca.crt') };
  }

  /** Reads the Secret once; true when a new usable pair was written. */
  async poll(): Promise<boolean> {
    const secret = await this.#client.get<KubeObject & { data?: Record<string, string> }>(this.#path);
    const m = secret && decodeTlsSecret(secret.data);
    if (!m) return false;
    const id = `${m.serving.certPem}\n${m.bundlePem}`;
    if (id === this.#current) return false;
    try {
      // Checked before writing: a pair that does not load must not replace one that does.
      new X509Certificate(m.serving.certPem);
      createPrivateKey(m.serving.keyPem);
    } catch (err) {
      this.#log.error({ err }, 'the TLS Secret holds an unusable pair; keeping the current one');
      return false;
    }
    // Key before certificate: the reload watches both, and a pair is only taken when they match.
    this.#write(this.files.keyFile, m.serving.keyPem);
    this.#write(this.files.caFile, m.bundlePem);
    this.#write(this.files.certFile, m.serving.certPem);
    this.#current = id;
    this.#log.info({ notAfter: new X509Certificate(m.serving.certPem).validTo }, 'serving certificate taken from the Secret');
    return true;
  }

  #write(file: string, content: string): void {
    const tmp = `${file}.tmp-${process.pid}`;
    writeFileSync(tmp, content, { mode: 0o600 });
    renameSync(tmp, file);
  }

  /** Polls until a pair is there (the leader may still be creating it). */
  async waitForCertificate(signal?: AbortSignal): Promise<TlsFiles> {
    for (;;) {
      signal?.throwIfAborted();
      try {
        if ((await this.poll()) || this.#current !== '') return this.files;
      } catch (err) {
        this.#log.warn({ err }, 'the TLS Secret could not be read; retrying');
      }
      // Not unref'd: while it waits, this timer is what keeps the process alive (nothing listens yet).
      await new Promise((r) => setTimeout(r, Math.min(this.#pollIntervalMs, 1000)));
    }
  }

  /** Polls every interval, calling `onChange` after each new pair. */
  start(onChange: () => void): void {
    this.#onChange = onChange;
    const tick = async (): Promise<void> => {
      try {
        if (await this.poll()) this.#onChange();
      } catch (err) {
        this.#log.warn({ err }, 'the TLS Secret could not be read; serving the current pair');
      }
      this.#timer = setTimeout(() => void tick(), this.#pollIntervalMs);
      this.#timer.unref();
    };
    this.#timer = setTimeout(() => void tick(), this.#pollIntervalMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#onChange = () => undefined;
  }
}
