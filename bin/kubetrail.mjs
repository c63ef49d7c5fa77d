#!/usr/bin/env node
// Launcher for the `kubetrail` command. kubetrail's sources are TypeScript run
// directly by Node 24's type stripping, so this refuses older Node with a clear
// message instead of a syntax error.
const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  process.stderr.write(`kubetrail needs Node.js 24 or newer (this is ${process.version}); run it through npm (npm run kubetrail -- ...), which uses the pinned Node 24.\n`);
  process.exit(1);
}
// kafkajs 2.2.4 passes a negative delay to setTimeout on every broker connection (RequestQueue's throttledUntil starts at
// -1) and Node 24 prints a TimeoutNegativeWarning for it (docs/known-issues.md). The image and the npm scripts start
// Node with --disable-warning=TimeoutNegativeWarning; the installed command does the same by replacing this process
// with one that has the flag (same pid, stdio and signals; POSIX only: elsewhere the warning is printed).
const { fileURLToPath } = await import('node:url');
const FLAG = '--disable-warning=TimeoutNegativeWarning';
if (!process.execArgv.includes(FLAG) && typeof process.execve === 'function') {
  process.execve(process.execPath, [process.execPath, FLAG, ...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)]);
}
await import('../cli/main.ts');
