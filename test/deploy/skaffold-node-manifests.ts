/**
 * The render hook of skaffold's `node` profile (skaffold.yaml; docs/testing.md,
 * "skaffold on the harness node"): writes test/.harness/skaffold/manifests, the
 * one-command install as a user edits it (test/deploy/in-cluster-support.ts),
 * with the image named `kubetrail` so that skaffold puts in the tag it built,
 * and Kafka pointed at the harness broker; and creates the local volumes of the
 * spool claims that do not exist yet (never emptying one a running dev loop
 * uses; a volume released by an earlier `skaffold delete` is made anew).
 * Run by skaffold before each render, with the repository's Node 24:
 * `node_modules/.bin/node test/deploy/skaffold-node-manifests.ts`.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { adminTry, createLocalPvs, writeUserManifests } from './in-cluster-support.ts';
import { REPO } from './support.ts';

const NS = 'kubetrail';
const REPLICAS = ['webhook-0', 'webhook-1', 'proxy-0', 'proxy-1'];

/** Makes `dst` hold what `src` holds, writing only files whose bytes differ: skaffold dev watches `dst`, and a rewrite of unchanged files would redeploy in a loop. */
function sync(src: string, dst: string): void {
  mkdirSync(dst, { recursive: true });
  const want = new Set(readdirSync(src));
  for (const n of readdirSync(dst)) if (!want.has(n)) rmSync(path.join(dst, n), { recursive: true, force: true });
  for (const n of want) {
    const s = path.join(src, n);
    const d = path.join(dst, n);
    if (statSync(s).isDirectory()) sync(s, d);
    else {
      const bytes = readFileSync(s);
      let same = false;
      try {
        same = readFileSync(d).equals(bytes);
      } catch {
        /* not there yet */
      }
      if (!same) writeFileSync(d, bytes);
    }
  }
}

const scratch = mkdtempSync(path.join(tmpdir(), 'kt-skaffold-'));
try {
  writeUserManifests(path.join(scratch, 'manifests'), { name: 'kubetrail', tag: 'dev' }, { events: 'kt-skaffold.events', sessions: 'kt-skaffold.sessions' });
  sync(path.join(scratch, 'manifests'), path.join(REPO, 'test', '.harness', 'skaffold', 'manifests'));
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
const got = await adminTry(['get', 'pv', '-l', 'kubetrail.test/local-pv=true', '-o', 'jsonpath={range .items[*]}{.metadata.name}={.status.phase}{"\\n"}{end}']);
const phase = new Map(got.stdout.split('\n').filter(Boolean).map((l) => l.split('=', 2) as [string, string]));
for (const r of REPLICAS) {
  if (phase.get(`kt-${r}`) === 'Released') await adminTry(['delete', 'pv', `kt-${r}`, '--wait=true']);
}
const missing = REPLICAS.filter((r) => phase.get(`kt-${r}`) === undefined || phase.get(`kt-${r}`) === 'Released');
if (missing.length > 0) await createLocalPvs(NS, missing);
process.stderr.write(`skaffold-node-manifests: wrote test/.harness/skaffold/manifests; local volumes created: ${missing.join(', ') || 'none (all exist)'}\n`);
