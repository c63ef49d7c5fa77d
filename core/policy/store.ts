/**
 * PolicyStore: loads every YAML document of a directory (multi-document files
 * allowed), validates each envelope, hands each document to the compiler
 * registered for its `kind`, and swaps the whole compiled set atomically.
 *
 * - A known kind with no registered compiler is skipped (the webhook does not
 *   compile ExecPolicy, the gateway may not compile MutationPolicy).
 * - An unknown kind, an invalid document, a CEL error, or two documents of the
 *   same kind with the same name: the whole new set is rejected, the error
 *   (every issue, with file, document index and field path) is logged and
 *   kept in {@link PolicyStore.lastError}, and the previous set stays active.
 * - The directory is watched (fs.watch, debounced). A ConfigMap volume swaps a
 *   `..data` symlink; entries whose names start with `.` are ignored, the
 *   visible `*.yaml` symlinks are followed, and any event in the directory
 *   triggers a reload, so the swap is seen. A reload whose bytes equal the
 *   active set's is a no-op.
 */
import { watch, type FSWatcher } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Logger } from '../logger.ts';
import { PolicyError, type PolicyIssue } from './errors.ts';
import { parseEnvelope, type PolicyDocument, type PolicyKind } from './document.ts';

/** Compiles one document of a kind; throws PolicyError (paths relative to the document) when it is invalid. */
export type PolicyCompiler<T = unknown> = (doc: PolicyDocument) => T;

/** One compiled document with where it came from. */
export interface LoadedPolicy<T = unknown> {
  readonly name: string;
  readonly file: string;
  readonly index: number;
  readonly compiled: T;
}

/** An immutable, compiled set of policies. */
export interface PolicySet {
  /** 0 for the empty initial set; +1 on each successful (changed) load. */
  readonly generation: number;
  readonly loadedAt: string;
  /** Files read (absolute paths), sorted. */
  readonly files: readonly string[];
  /** SHA-256 over the files' names and bytes. */
  readonly digest: string;
  /** Compiled policies of `kind`, in file then document order. */
  of<T>(kind: PolicyKind): readonly T[];
  /** The same with where each came from. */
  entries<T>(kind: PolicyKind): readonly LoadedPolicy<T>[];
}

function makeSet(generation: number, files: string[], digest: string, byKind: Map<PolicyKind, LoadedPolicy[]>): PolicySet {
  const compiled = new Map<PolicyKind, readonly unknown[]>();
  for (const [k, list] of byKind) compiled.set(k, Object.freeze(list.map((l) => l.compiled)));
  return Object.freeze({
    generation,
    loadedAt: new Date().toISOString(),
    files: Object.freeze(files),
    digest,
    of: <T>(kind: PolicyKind) => (compiled.get(kind) ?? []) as readonly T[],
    entries: <T>(kind: PolicyKind) => (byKind.get(kind) ?? []) as readonly LoadedPolicy<T>[],
  });
}

/** Options of a {@link PolicyStore}. */
export interface PolicyStoreOptions {
  dir: string;
  /** Debounce between a change on disk and the reload (config.policies.reloadDebounceMs). */
  debounceMs?: number;
  log?: Logger;
  /** Registers `kubetrail_policy_reloads_total{result}` and `kubetrail_policy_generation`. */
  registry?: Registry;
  compilers?: Partial<Record<PolicyKind, PolicyCompiler>>;
}

const POLICY_FILE = /\.(ya?ml|json)$/i;

/** Loads, compiles, watches and atomically swaps the policies of a directory. */
export class PolicyStore {
  readonly dir: string;
  readonly #debounceMs: number;
  readonly #log: Logger | undefined;
  readonly #compilers = new Map<PolicyKind, PolicyCompiler>();
  readonly #listeners = new Set<(set: PolicySet) => void>();
  #current: PolicySet = makeSet(0, [], '', new Map());
  #lastError: PolicyError | undefined;
  #watcher: FSWatcher | undefined;
  #timer: NodeJS.Timeout | undefined;
  #reloading: Promise<boolean> | undefined;
  #pending = false;
  #closed = false;
  readonly #reloads: Counter | undefined;
  readonly #generationGauge: Gauge | undefined;
  /** Successful and failed (re)loads since start. */
  readonly stats = { loaded: 0, failed: 0 };

  constructor(opts: PolicyStoreOptions) {
    this.dir = path.resolve(opts.dir);
    this.#debounceMs = opts.debounceMs ?? 200;
    this.#log = opts.log;
    for (const [k, c] of Object.entries(opts.compilers ?? {})) if (c) this.#compilers.set(k as PolicyKind, c);
    if (opts.registry) {
      const r = opts.registry;
      this.#reloads =
        (r.getSingleMetric('kubetrail_policy_reloads_total') as Counter | undefined) ??
        new Counter({ name: 'kubetrail_policy_reloads_total', help: 'Policy directory loads by result (ok, failed).', labelNames: ['result'], registers: [r] });
      this.#generationGauge =
        (r.getSingleMetric('kubetrail_policy_generation') as Gauge | undefined) ??
        new Gauge({ name: 'kubetrail_policy_generation', help: 'Generation of the active policy set.', registers: [r] });
    }
  }

  /** Registers the compiler of a kind (before {@link PolicyStore.load}). */
  register<T>(kind: PolicyKind, compiler: PolicyCompiler<T>): this {
    this.#compilers.set(kind, compiler);
    return this;
  }

  /** The active set (empty, generation 0, before the first successful load). */
  current(): PolicySet {
    return this.#current;
  }

  /** The error of the last failed load, cleared by the next successful one (for /readyz and operators). */
  lastError(): PolicyError | undefined {
    return this.#lastError;
  }

  /** Calls `cb` with each newly activated set; returns an unsubscribe function. */
  onChange(cb: (set: PolicySet) => void): () => void {
    this.#listeners.add(cb);
    return () => void this.#listeners.delete(cb);
  }

  /** Loads the directory now; throws the PolicyError when the set is invalid (the previous set stays). */
  async load(): Promise<PolicySet> {
    const ok = await this.reload();
    if (!ok && this.#lastError) throw this.#lastError;
    return this.#current;
  }

  /**
   * Reloads now (serialised with any reload in flight). Resolves true when the
   * directory is valid (whether or not it changed), false when it was rejected.
   */
  reload(): Promise<boolean> {
    if (this.#reloading) {
      this.#pending = true;
      return this.#reloading;
    }
    const run = async (): Promise<boolean> => {
      let ok: boolean;
      do {
        this.#pending = false;
        ok = await this.#reloadOnce();
      } while (this.#pending && !this.#closed);
      return ok;
    };
    this.#reloading = run().finally(() => {
      this.#reloading = undefined;
    });
    return this.#reloading;
  }

  async #reloadOnce(): Promise<boolean> {
    try {
      const { files, digest, byKind } = await this.#compileDir();
      this.#lastError = undefined;
      this.stats.loaded++;
      this.#reloads?.inc({ result: 'ok' });
      if (digest === this.#current.digest && this.#current.generation > 0) return true;
      const set = makeSet(this.#current.generation + 1, files, digest, byKind);
      this.#current = set;
      this.#generationGauge?.set(set.generation);
      const counts = Object.fromEntries([...byKind].map(([k, v]) => [k, v.length]));
      this.#log?.info({ dir: this.dir, generation: set.generation, files: files.length, policies: counts }, 'policies loaded');
      for (const cb of this.#listeners) {
        try {
          cb(set);
        } catch (err) {
          this.#log?.error({ err }, 'policy change listener failed');
        }
      }
      return true;
    } catch (err) {
      const perr = err instanceof PolicyError ? err : new PolicyError('POLICY_ERR_IO', [{ path: '', message: `cannot load ${this.dir}: ${(err as NodeJS.ErrnoException).code ?? String(err)}` }], { cause: err });
      this.#lastError = perr;
      this.stats.failed++;
      this.#reloads?.inc({ result: 'failed' });
      this.#log?.error(
        { dir: this.dir, code: perr.code, issues: perr.issues, activeGeneration: this.#current.generation },
        'policy set rejected; the previous set stays active',
      );
      return false;
    }
  }

  async #compileDir(): Promise<{ files: string[]; digest: string; byKind: Map<PolicyKind, LoadedPolicy[]> }> {
    const names = (await readdir(this.dir)).filter((n) => !n.startsWith('.') && POLICY_FILE.test(n)).sort();
    const files: string[] = [];
    const hash = createHash('sha256');
    const issues: PolicyIssue[] = [];
    const byKind = new Map<PolicyKind, LoadedPolicy[]>();
    const seen = new Map<string, string>();
    for (const name of names) {
      const file = path.join(this.dir, name);
      let text: string;
      try {
        if (!(await stat(file)).isFile()) continue;
        text = await readFile(file, 'utf8');
      } catch (err) {
        // A ConfigMap swap can remove a file between readdir and read; the watcher triggers another reload.
        issues.push({ file, path: '', message: `cannot read: ${(err as NodeJS.ErrnoException).code ?? 'error'}` });
        continue;
      }
      files.push(file);
      hash.update(name).update('\0').update(text).update('\0');
      const docs = parseAllDocuments(text, { prettyErrors: false });
      const list = Array.isArray(docs) ? docs : [docs];
      for (const [index, d] of list.entries()) {
        if (d.errors.length > 0) {
          for (const e of d.errors) issues.push({ file, index, path: '', message: `not valid YAML: ${e.message.split('\n')[0] ?? ''}` });
          continue;
        }
        const value: unknown = d.toJS({ maxAliasCount: 100 });
        if (value === null || value === undefined) continue; // an empty document (e.g. a trailing ---)
        try {
          const doc = parseEnvelope(value);
          const key = `${doc.kind}/${doc.metadata.name}`;
          const prior = seen.get(key);
          if (prior !== undefined) {
            issues.push({ file, index, path: 'metadata.name', message: `duplicate ${doc.kind} "${doc.metadata.name}" (also in ${prior})` });
            continue;
          }
          seen.set(key, `${file}#${index}`);
          const compiler = this.#compilers.get(doc.kind);
          if (compiler === undefined) continue;
          const compiled = compiler(doc);
          const arr = byKind.get(doc.kind) ?? [];
          arr.push({ name: doc.metadata.name, file, index, compiled });
          byKind.set(doc.kind, arr);
        } catch (err) {
          if (err instanceof PolicyError) issues.push(...err.locate(file, index).issues);
          else issues.push({ file, index, path: '', message: `compiler failed: ${err instanceof Error ? err.message : String(err)}` });
        }
      }
    }
    if (issues.length > 0) throw new PolicyError('POLICY_ERR_INVALID', issues);
    return { files, digest: hash.digest('hex'), byKind };
  }

  /** Starts watching the directory; each change reloads after the debounce. */
  watch(): void {
    if (this.#watcher || this.#closed) return;
    try {
      this.#watcher = watch(this.dir, { persistent: false }, () => this.#schedule());
      this.#watcher.on('error', (err) => this.#log?.error({ err, dir: this.dir }, 'policy directory watch failed'));
    } catch (err) {
      this.#log?.error({ err, dir: this.dir }, 'cannot watch the policy directory; policies will not reload');
    }
  }

  #schedule(): void {
    if (this.#closed) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.reload();
    }, this.#debounceMs);
    this.#timer.unref();
  }

  /** Stops watching; the active set stays readable. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#watcher?.close();
    this.#watcher = undefined;
    await this.#reloading;
  }
}
