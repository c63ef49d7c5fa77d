/**
 * The drain period after SIGTERM, shared by the webhook and the gateway: the
 * server reports not ready (`/readyz` answers `not ready: shutting-down`),
 * keeps serving for `shutdownDrainSeconds`, and answers every request in
 * that window with `Connection: close`; only then does the ordinary shutdown
 * (core/shutdown.ts) stop the listener.
 *
 * Why: a terminating pod leaves its Service's endpoints at once, but the
 * routing that follows them (kube-proxy, the API server's own webhook
 * client) lags, and the API server keeps reusing kept-alive connections to
 * the old pod. Closing the listener right away made it write a review into a
 * closed connection: `failed calling webhook "validate.kubetrail.io": ...
 * write tcp ...` (docs/known-issues.md had it). `Connection: close` moves each
 * client off the old pod after its next answer, with that answer delivered;
 * the Kubernetes API server drains the same way
 * (https://github.com/kubernetes/kubernetes/blob/master/staging/src/k8s.io/apiserver/pkg/server/filters/goaway.go
 * for HTTP/2; HTTP/1.1 clients get `Connection: close`).
 */
import type { Server as HttpServer } from 'node:http';
import type { Logger } from './logger.ts';

/** The readiness check's name, as `/readyz` prints it while draining. */
export const DRAIN_CHECK = 'shutting-down';

/** Waits `ms`; injectable so tests end the drain when they choose. */
export type DrainWait = (ms: number) => Promise<void>;

const realWait: DrainWait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** One server process's drain state. */
export class Drain {
  readonly #ms: number;
  readonly #log: Logger;
  readonly #wait: DrainWait;
  #draining = false;
  #run: Promise<void> | undefined;

  /** `seconds` 0 disables the drain: {@link run} returns at once. */
  constructor(opts: { seconds: number; log: Logger; wait?: DrainWait }) {
    this.#ms = opts.seconds * 1000;
    this.#log = opts.log;
    this.#wait = opts.wait ?? realWait;
  }

  /** True from the start of {@link run} on. */
  get draining(): boolean {
    return this.#draining;
  }

  /** The readiness check to add as {@link DRAIN_CHECK}: false once draining. */
  readonly ready = (): boolean => !this.#draining;

  /**
   * Makes `server` answer with `Connection: close` while draining. Runs before
   * the server's own request handler (express included), so the header is set
   * before any answer is written; Node then closes the connection once that
   * answer is sent.
   */
  attach(server: HttpServer): void {
    server.prependListener('request', (_req, res) => {
      if (this.#draining && !res.headersSent) res.setHeader('connection', 'close');
    });
  }

  /** Starts draining and resolves when the drain period is over (once; later calls share it). */
  run(): Promise<void> {
    this.#run ??= (async () => {
      this.#draining = true;
      if (this.#ms === 0) return;
      this.#log.info({ drainSeconds: this.#ms / 1000 }, 'draining: not ready, still serving with connection: close');
      await this.#wait(this.#ms);
      this.#log.info('drain period over');
    })();
    return this.#run;
  }
}
