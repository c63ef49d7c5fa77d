/**
 * Wiring of self-managed TLS for one process (config `selfManaged.tls`):
 * a webhook replica is a candidate in the Lease election and, while it
 * leads, reconciles the Secret and the caBundles every poll interval; every
 * webhook and gateway replica follows the Secret and reloads its listener.
 */
import { hostname } from 'node:os';
import path from 'node:path';
import type { Config } from '../core/config.ts';
import { KubeClient } from '../core/kube-client.ts';
import { LeaderElector } from '../core/lease.ts';
import type { Logger } from '../core/logger.ts';
import { SelfManagedCertificates } from './self-managed.ts';
import { TlsSecretWatcher, type TlsFiles } from './tls-secret-watcher.ts';

/** A running self-managed TLS. */
export interface SelfManagedTls {
  /** Where the serving pair is written (pass certFile/keyFile to the listener). */
  readonly files: TlsFiles;
  readonly elector: LeaderElector | undefined;
  readonly certificates: SelfManagedCertificates | undefined;
  readonly watcher: TlsSecretWatcher;
  /** Starts following the Secret; `reload` is called after each new pair. */
  follow(reload: () => void): void;
  /** Stops reconciling and following; releases the Lease when leading. */
  close(): Promise<void>;
}

/** Whether the config asks for self-managed TLS for a listener whose own tls is `own`. */
export function usesSelfManagedTls(cfg: Config, own: unknown): boolean {
  return own === undefined && cfg.selfManaged?.tls !== undefined;
}

/**
 * Starts the election (webhook only) and waits until the Secret holds a pair,
 * written to `files`. `now` is a test hook (certificate validity and Lease
 * expiry); with `manual`, nothing runs on timers and the caller drives
 * elector.step() and certificates.reconcile().
 */
export async function startSelfManagedTls(opts: { config: Config; log: Logger; role: 'webhook' | 'gateway'; now?: () => Date; manual?: boolean; identity?: string; dir?: string }): Promise<SelfManagedTls> {
  const sm = opts.config.selfManaged;
  const tls = sm?.tls;
  if (!sm || !tls) throw new TypeError('selfManaged.tls is not configured');
  const log = opts.log.child({ component: 'self-managed-tls' });
  const client = new KubeClient({ inCluster: sm.inCluster, ...(sm.kubeconfig ? { kubeconfig: sm.kubeconfig } : {}), ...(sm.context ? { context: sm.context } : {}) });
  const watcher = new TlsSecretWatcher({ client, namespace: sm.namespace, secret: tls.secret, dir: opts.dir ?? path.join(opts.config.dataDir, 'tls', opts.role), pollIntervalMs: tls.pollIntervalSeconds * 1000, log });
  let certificates: SelfManagedCertificates | undefined;
  let elector: LeaderElector | undefined;
  let loop: NodeJS.Timeout | undefined;
  const stopLoop = (): void => {
    if (loop) clearTimeout(loop);
    loop = undefined;
  };
  if (opts.role === 'webhook') {
    const certs = new SelfManagedCertificates({
      client,
      log,
      ...(opts.now ? { now: opts.now } : {}),
      settings: { namespace: sm.namespace, ...tls },
    });
    certificates = certs;
    const reconcileLoop = async (): Promise<void> => {
      try {
        await certs.reconcile();
      } catch (err) {
        log.error({ err }, 'self-managed TLS: reconcile failed; retrying');
      }
      if (elector?.isLeader()) {
        loop = setTimeout(() => void reconcileLoop(), tls.pollIntervalSeconds * 1000);
        loop.unref();
      }
    };
    elector = new LeaderElector({
      client,
      namespace: sm.namespace,
      name: tls.lease,
      identity: opts.identity ?? sm.identity ?? hostname(),
      leaseDurationSeconds: tls.leaseDurationSeconds,
      renewDeadlineMs: tls.renewDeadlineSeconds * 1000,
      retryPeriodMs: tls.retryPeriodSeconds * 1000,
      log,
      ...(opts.now ? { now: opts.now } : {}),
      onStartedLeading: () => {
        if (!opts.manual) void reconcileLoop();
      },
      onStoppedLeading: stopLoop,
    });
    if (!opts.manual) elector.start();
  }
  if (!opts.manual) await watcher.waitForCertificate();
  return {
    files: watcher.files,
    elector,
    certificates,
    watcher,
    follow: (reload) => watcher.start(reload),
    close: async () => {
      watcher.stop();
      stopLoop();
      await elector?.stop();
    },
  };
}
