/**
 * Certificate reload for an HTTPS listener, shared by the webhook and the
 * gateway: the directories of the cert and key files are watched (a Secret
 * volume swaps a `..data` symlink; cert-manager or an editor renames files
 * into place) and each change, debounced, loads the pair again and hands it
 * to `setSecureContext`, used by every new connection (open ones keep
 * theirs). A pair that does not load (half-written, mismatched) is logged and
 * the previous one stays.
 */
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { createSecureContext, type SecureContextOptions, type Server } from 'node:tls';
import type { Logger } from './logger.ts';

/** A running certificate watch. */
export interface CertificateReloader {
  /** Loads the pair now; false, with the previous pair kept, when it does not load. */
  reload(): boolean;
  /** Stops watching. */
  stop(): void;
}

/** Watches `files` and reloads `server`'s certificate when they change. `what` names the listener in logs. */
export function watchServerCertificate(
  server: Server,
  files: { certFile: string; keyFile: string },
  opts: { log: Logger; what: string; debounceMs: number; contextOptions?: SecureContextOptions },
): CertificateReloader {
  const { certFile, keyFile } = files;
  const { log, what } = opts;
  const reload = (): boolean => {
    try {
      const ctx = { ...opts.contextOptions, cert: readFileSync(certFile), key: readFileSync(keyFile) };
      createSecureContext(ctx); // throws when the pair is unusable (mismatch, half-written)
      server.setSecureContext(ctx);
      log.info({ certFile }, `${what} certificate reloaded`);
      return true;
    } catch (err) {
      log.error({ err, certFile, keyFile }, `${what} certificate reload failed; keeping the previous one`);
      return false;
    }
  };
  const watchers: FSWatcher[] = [];
  let timer: NodeJS.Timeout | undefined;
  for (const dir of new Set([path.dirname(certFile), path.dirname(keyFile)])) {
    try {
      const w = watch(dir, { persistent: false }, () => {
        if (timer) clearTimeout(timer);
        timer = setTimeout(() => void reload(), opts.debounceMs);
        timer.unref();
      });
      w.on('error', (err) => log.error({ err, dir }, 'certificate directory watch failed'));
      watchers.push(w);
    } catch (err) {
      log.error({ err, dir }, `cannot watch the certificate directory; the ${what} certificate will not reload`);
    }
  }
  return {
    reload,
    stop: () => {
      if (timer) clearTimeout(timer);
      for (const w of watchers) w.close();
    },
  };
}
