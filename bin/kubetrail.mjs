#!/usr/bin/env node
// Launcher for the `kubetrail` command. kubetrail's sources are TypeScript run
// directly by Node 24's type stripping, so this refuses older Node with a clear
// message instead of a syntax error.
const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  process.stderr.write(`kubetrail needs Node.js 24 or newer (this is ${process.version}); run it through npm (npm run kubetrail -- ...), which uses the pinned Node 24.\n`);
  process.exit(1);
}
await import('../cli/main.ts');
