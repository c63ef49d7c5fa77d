/**
 * The `kubetrail` command: parses the subcommand and hands over to its module.
 * Only wiring lives here.
 */
import { KubetrailError } from '../core/errors.ts';

/** A subcommand: takes its argv (after the subcommand word) and returns an exit code. */
export type Command = (argv: string[]) => Promise<number>;

const commands: Record<string, { summary: string; load: () => Promise<Command> }> = {
  events: { summary: 'list recorded events (local log or Kafka); -o json for NDJSON, --follow to tail', load: async () => (await import('./events.ts')).run },
  sessions: { summary: 'list recorded exec/attach/port-forward sessions; -o json for NDJSON', load: async () => (await import('./sessions.ts')).run },
  replay: { summary: 'play a recorded session back (--speed N) or export it as asciicast v2 (--export F.cast)', load: async () => (await import('./replay.ts')).run },
  verify: { summary: 'check hash chain, gaps, ordering, replays, a cut tail (--signed-heads) and signatures (several keys); non-zero exit on any break', load: async () => (await import('./verify.ts')).run },
  approvals: { summary: 'list, show, approve, deny or wait for ApprovalRequests (kubectl credentials)', load: async () => (await import('./approvals.ts')).run },
  start: { summary: 'run the webhook and the gateway locally (dev certificates, local log)', load: async () => (await import('./start.ts')).run },
  webhook: { summary: 'run the admission webhook (/validate, /mutate) with guardrails, mutation stamp and capture', load: async () => (await import('./webhook.ts')).run },
  proxy: { summary: 'run the API gateway: authenticate callers (OIDC, TokenReview), forward with impersonation, record every request', load: async () => (await import('./proxy.ts')).run },
  kubeconfig: { summary: 'write a kubeconfig that routes a caller through the gateway (token file or exec plugin)', load: async () => (await import('./kubeconfig.ts')).run },
  certs: { summary: 'create or renew the CA and serving certificate; prints the caBundle', load: async () => (await import('./certs.ts')).run },
};

function usage(): string {
  const lines = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(12)} ${c.summary}`);
  return `usage: kubetrail <command> [flags]\n\ncommands:\n${lines.join('\n')}\n`;
}

/** Commands that serve until stopped: a reader closing their stdout must not stop them. */
const SERVERS: ReadonlySet<string> = new Set(['start', 'webhook', 'proxy']);

/**
 * `kubetrail sessions -o json | head` closes the pipe early: that ends the
 * output, it is not an error. A listing command exits quietly with the code
 * it set so far (verify sets its verdict before printing, so a cut report
 * never turns a failure into 0); a server keeps serving (its logs go through
 * pino, which stops writing on EPIPE by itself). Any other stream error is
 * still thrown.
 */
function quietOnClosedPipe(server: boolean): (err: NodeJS.ErrnoException) => void {
  return (err) => {
    if (err.code !== 'EPIPE' && err.code !== 'ERR_STREAM_DESTROYED') throw err;
    if (!server) process.exit(typeof process.exitCode === 'number' ? process.exitCode : 0);
  };
}

const [name, ...rest] = process.argv.slice(2);
process.stdout.on('error', quietOnClosedPipe(SERVERS.has(name ?? '')));
process.stderr.on('error', quietOnClosedPipe(SERVERS.has(name ?? '')));
if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
  process.stdout.write(usage());
} else {
  const cmd = commands[name];
  if (!cmd) {
    process.stderr.write(`kubetrail: unknown command "${name}"\n\n${usage()}`);
    process.exitCode = 2;
  } else {
    try {
      process.exitCode = await (await cmd.load())(rest);
    } catch (err) {
      if (err instanceof KubetrailError) {
        process.stderr.write(`kubetrail ${name}: ${err.message}\n`);
        process.exitCode = 1;
      } else {
        throw err;
      }
    }
  }
}
