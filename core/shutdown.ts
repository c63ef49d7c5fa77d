/**
 * Graceful shutdown: on SIGTERM or SIGINT, first the drain period (core/drain.ts:
 * unready, still serving), then the registered closers in reverse order of
 * registration (listeners stop accepting first, sinks flush last), then exit.
 * A second signal, or the deadline, exits at once. The deadline counts from
 * the end of the drain, so a pod's terminationGracePeriodSeconds must cover
 * shutdownDrainSeconds plus this deadline.
 */
import type { Logger } from './logger.ts';

/** Something to close on shutdown. */
export type Closer = () => Promise<void> | void;

/** How long (ms) the closers may take after the drain before the process exits anyway. */
export const SHUTDOWN_DEADLINE_MS = 25000;

/** Collects closers and runs them once on a signal or on demand. */
export class Shutdown {
  readonly #closers: { name: string; close: Closer }[] = [];
  #running: Promise<void> | undefined;
  #drain: (() => Promise<void>) | undefined;
  readonly #log: Logger;
  readonly #deadlineMs: number;

  constructor(log: Logger, deadlineMs = SHUTDOWN_DEADLINE_MS) {
    this.#log = log;
    this.#deadlineMs = deadlineMs;
  }

  /** Registers a closer; closers run last-registered first. */
  add(name: string, close: Closer): void {
    this.#closers.push({ name, close });
  }

  /** Sets the phase run before every closer (the drain), outside the deadline. */
  drainFirst(drain: () => Promise<void>): void {
    this.#drain = drain;
  }

  /** Installs SIGTERM/SIGINT handlers that shut down and exit. */
  installSignalHandlers(exit: (code: number) => void = (c) => process.exit(c)): void {
    const onSignal = (signal: NodeJS.Signals): void => {
      if (this.#running) {
        this.#log.warn({ signal }, 'second signal, exiting now');
        exit(1);
        return;
      }
      this.#log.info({ signal }, 'shutting down');
      const armDeadline = (): void => {
        const timer = setTimeout(() => {
          this.#log.error({ deadlineMs: this.#deadlineMs }, 'shutdown deadline passed, exiting');
          exit(1);
        }, this.#deadlineMs);
        timer.unref();
      };
      this.#start(armDeadline).then(
        () => exit(0),
        () => exit(1),
      );
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  }

  /** Drains, then runs every closer once, in reverse order; errors are logged and the rest still run. */
  run(): Promise<void> {
    return this.#start(() => undefined);
  }

  #start(onDrained: () => void): Promise<void> {
    this.#running ??= (async () => {
      try {
        await this.#drain?.();
      } catch (err) {
        this.#log.error({ err }, 'drain failed; closing now');
      }
      onDrained();
      let failed = false;
      for (const { name, close } of [...this.#closers].reverse()) {
        try {
          await close();
        } catch (err) {
          failed = true;
          this.#log.error({ err, closer: name }, 'closer failed during shutdown');
        }
      }
      if (failed) throw new Error('shutdown incomplete');
    })();
    return this.#running;
  }
}
