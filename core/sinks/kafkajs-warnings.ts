/**
 * kafkajs 2.2.4 passes a large negative delay to setTimeout on every broker
 * connection (RequestQueue.scheduleCheckPendingRequests: `throttledUntil`
 * starts at -1); Node 24 prints a TimeoutNegativeWarning for it and uses 1 ms,
 * as older Node did silently (docs/known-issues.md). The image and the npm
 * scripts start Node with `--disable-warning=TimeoutNegativeWarning`; this does
 * the same for the current thread when Node was started otherwise (the
 * installed `kubetrail` command, the producer thread under any parent): that
 * one warning type is dropped, every other warning still reaches Node's own
 * printer. Idempotent.
 */
const FILTERED = Symbol.for('kubetrail.timeoutNegativeWarningFiltered');

export function silenceKafkajsTimeoutWarning(): void {
  const p = process as NodeJS.Process & { [FILTERED]?: true };
  if (p[FILTERED]) return;
  p[FILTERED] = true;
  const printers = process.listeners('warning');
  process.removeAllListeners('warning');
  process.on('warning', (warning) => {
    if (warning.name === 'TimeoutNegativeWarning') return;
    for (const print of printers) print(warning);
  });
}
