/**
 * How the channel-3 Status decides an exec's recorded outcome (sessionOutcome):
 * a command that ran (Success, NonZeroExitCode) completed; a Failure of any
 * other reason after the upgrade is an error, on v4/v5 where the Status is JSON.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sessionOutcome } from '../../exec-proxy/stream/protocol.ts';

/** The channel-3 Status the API server sends for an exit code (apiserver streamtranslator.go). */
function exitStatus(code: number): Record<string, unknown> {
  if (code === 0) return { metadata: {}, status: 'Success' };
  return { metadata: {}, status: 'Failure', message: `command terminated with non-zero exit code: error executing command [...], exit code ${code}`, reason: 'NonZeroExitCode', details: { causes: [{ reason: 'ExitCode', message: String(code) }] } };
}

const notFound = JSON.stringify({ metadata: {}, status: 'Failure', message: 'Internal error occurred: unable to upgrade connection: container not found ("app")', reason: 'InternalError', code: 500 });

const cases: { name: string; closed: 'completed' | 'client-closed' | 'upstream-closed'; version: 1 | 4 | 5; status: string; want: string }[] = [
  { name: 'Success completes', closed: 'completed', version: 5, status: JSON.stringify(exitStatus(0)), want: 'completed' },
  { name: 'NonZeroExitCode completes (the command ran)', closed: 'completed', version: 5, status: JSON.stringify(exitStatus(3)), want: 'completed' },
  { name: 'a v5 Failure that is not NonZeroExitCode is an error', closed: 'completed', version: 5, status: notFound, want: 'error' },
  { name: 'a v4 Failure that is not NonZeroExitCode is an error', closed: 'completed', version: 4, status: notFound, want: 'error' },
  { name: 'a NonZeroExitCode without an ExitCode cause is an error', closed: 'completed', version: 4, status: JSON.stringify({ status: 'Failure', reason: 'NonZeroExitCode' }), want: 'error' },
  { name: 'no Status at all keeps the close outcome', closed: 'completed', version: 5, status: '', want: 'completed' },
  { name: 'v1 plain text keeps the close outcome', closed: 'completed', version: 1, status: 'command terminated with non-zero exit code: 3', want: 'completed' },
  { name: 'a client close stays a client close', closed: 'client-closed', version: 5, status: notFound, want: 'client-closed' },
  { name: 'an upstream drop stays an upstream drop', closed: 'upstream-closed', version: 5, status: '', want: 'upstream-closed' },
];

for (const c of cases) {
  test(`session outcome: ${c.name}`, () => {
    assert.equal(sessionOutcome(c.closed, c.version, c.status), c.want);
  });
}
