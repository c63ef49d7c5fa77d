/**
 * Flag parsing shared by the `kubetrail` subcommands: node:util parseArgs with
 * strict checking, `-h/--help` printing the usage, and a usage error printed
 * with the usage and exit code 2 — the same behaviour for every command.
 */
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';

/** The parsed flags, or the exit code when the command should stop (help: 0, bad flags: 2). */
export type ParsedArgs<O extends ParseArgsOptionsConfig> =
  | { values: ReturnType<typeof parseArgs<{ options: O; strict: true; allowPositionals: true }>>['values']; positionals: string[] }
  | number;

/** Parses `argv` for `command`; `options` must include a boolean `help`. Positional arguments are refused unless `positionals`. */
export function parseCommandArgs<O extends ParseArgsOptionsConfig>(command: string, usage: string, argv: string[], options: O, positionals = false): ParsedArgs<O> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: true });
    if (!positionals && parsed.positionals.length > 0) throw new TypeError(`unexpected argument '${parsed.positionals[0]}'`);
  } catch (err) {
    process.stderr.write(`kubetrail ${command}: ${(err as Error).message}\n${usage}`);
    return 2;
  }
  if ((parsed.values as { help?: boolean }).help) {
    process.stdout.write(usage);
    return 0;
  }
  return { values: parsed.values, positionals: parsed.positionals };
}
