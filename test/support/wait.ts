/**
 * The one polling helper of the tests: wait for a condition instead of
 * sleeping a fixed time before an assertion. (The harness keeps its own: it
 * also watches the child process it waits for.)
 */
import { setTimeout as sleep } from 'node:timers/promises';

/** Options of {@link waitFor}. */
export interface WaitOptions {
  /** Give up after this long (ms); default 15 s: long enough for a loaded machine, short enough to fail a test that will never pass. */
  timeoutMs?: number;
  /** Pause between checks (ms); default 20. */
  intervalMs?: number;
}

/**
 * Calls `check` until it returns a truthy value (or a promise of one) and
 * returns that value; throws `timed out waiting for <what>` when the time is
 * up. A check that throws fails the wait at once.
 */
export async function waitFor<T>(check: () => T | Promise<T>, what: string, opts: WaitOptions = {}): Promise<NonNullable<T>> {
  const timeoutMs = opts.timeoutMs ?? 15_000;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(opts.intervalMs ?? 20);
  }
}
