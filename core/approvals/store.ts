/**
 * ApprovalRequests in the API server, through @kubernetes/client-node: the
 * only place approval state lives, so every webhook and gateway replica (and
 * the CLI, and the console) agrees. Reads that decide something are
 * consistent list/get calls (no cache that may lag); waiting is a watch from
 * the resourceVersion just read, so a decision made through any replica is
 * seen at once. Status writes carry the resourceVersion read, so of two
 * replicas marking one approval used only one succeeds.
 */
import { ApiException, AuthenticationV1Api, AuthorizationV1Api, CustomObjectsApi, KubeConfig, Watch } from '@kubernetes/client-node';
import { ApprovalError } from './errors.ts';
import { APPROVAL_GROUP, APPROVAL_KIND, APPROVAL_PLURAL, APPROVAL_VERSION, APPROVE_VERB, MATCH_LABEL, type ApprovalRequest, type ApprovalSpec, type ApprovalStatus } from './types.ts';

/** How the store reaches the API server. */
export interface ApprovalStoreOptions {
  /** A loaded KubeConfig, or where to load one from. */
  kubeConfig?: KubeConfig;
  kubeconfig?: string;
  context?: string;
  inCluster?: boolean;
}

/** Loads a KubeConfig as kubectl would: a file, in-cluster, or the default ($KUBECONFIG, ~/.kube/config). */
export function loadKubeConfig(o: ApprovalStoreOptions): KubeConfig {
  if (o.kubeConfig) return o.kubeConfig;
  const kc = new KubeConfig();
  if (o.inCluster) kc.loadFromCluster();
  else if (o.kubeconfig !== undefined) kc.loadFromFile(o.kubeconfig);
  else kc.loadFromDefault();
  if (o.context) kc.setCurrentContext(o.context);
  return kc;
}

const BASE = { group: APPROVAL_GROUP, version: APPROVAL_VERSION, plural: APPROVAL_PLURAL };

function plain<T>(v: unknown): T {
  // client-node returns class instances for some fields; keep plain JSON.
  return JSON.parse(JSON.stringify(v)) as T;
}

function apiError(what: string, err: unknown): ApprovalError {
  if (err instanceof ApiException && err.code === 404) return new ApprovalError('APPROVAL_ERR_NOT_FOUND', `${what}: not found`, { cause: err });
  if (err instanceof ApiException && (err.code === 403 || err.code === 422 || err.code === 400)) {
    // The API server's (or the approvals webhook's) reason is the caller's to read: it is about their own request.
    let reason = '';
    try {
      reason = String((JSON.parse(String(err.body)) as { message?: unknown }).message ?? '');
    } catch {
      reason = '';
    }
    return new ApprovalError(err.code === 403 ? 'APPROVAL_ERR_FORBIDDEN' : 'APPROVAL_ERR_INVALID', `${what}: ${reason || `HTTP ${err.code}`}`, { cause: err });
  }
  return new ApprovalError('APPROVAL_ERR_API', `${what}: the API server could not be reached or failed`, { cause: err });
}

/**
 * Calls the API server, retrying what it says to retry: 429 (e.g. "storage is
 * (re)initializing" right after the CRD was created) and 503, after its
 * Retry-After (at most 2 s), three times. These answers mean the request was
 * not processed, so a retried create cannot make two objects.
 */
async function retrying<T>(call: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      if (!(err instanceof ApiException) || (err.code !== 429 && err.code !== 503) || attempt >= 3) throw err;
      const after = Number((err.headers as Record<string, string> | undefined)?.['retry-after'] ?? 1);
      await new Promise((r) => setTimeout(r, Math.min(Number.isFinite(after) && after > 0 ? after : 1, 2) * 1000));
    }
  }
}

/** Reads and writes ApprovalRequests. */
export class ApprovalStore {
  readonly kc: KubeConfig;
  readonly #api: CustomObjectsApi;
  readonly #authz: AuthorizationV1Api;

  constructor(o: ApprovalStoreOptions) {
    this.kc = loadKubeConfig(o);
    this.#api = this.kc.makeApiClient(CustomObjectsApi);
    this.#authz = this.kc.makeApiClient(AuthorizationV1Api);
  }

  /** Creates an ApprovalRequest named `name` in `namespace` and initialises its status to Pending. */
  async create(namespace: string, name: string, matchLabel: string, spec: ApprovalSpec): Promise<ApprovalRequest> {
    const body = { apiVersion: `${APPROVAL_GROUP}/${APPROVAL_VERSION}`, kind: APPROVAL_KIND, metadata: { name, namespace, labels: { [MATCH_LABEL]: matchLabel } }, spec };
    let created: ApprovalRequest;
    try {
      created = plain<ApprovalRequest>(await retrying(() => this.#api.createNamespacedCustomObject({ ...BASE, namespace, body })));
    } catch (err) {
      throw apiError(`creating ApprovalRequest ${namespace}/${name}`, err);
    }
    const updated = await this.replaceStatus(created, { phase: 'Pending', decisions: [] });
    return updated ?? created;
  }

  /** The ApprovalRequests of a match label in `namespace`, oldest first (a consistent read). */
  async findByMatch(namespace: string, matchLabel: string): Promise<ApprovalRequest[]> {
    try {
      const list = plain<{ items: ApprovalRequest[] }>(await retrying(() => this.#api.listNamespacedCustomObject({ ...BASE, namespace, labelSelector: `${MATCH_LABEL}=${matchLabel}` })));
      return list.items.sort((a, b) => (a.metadata.creationTimestamp ?? '').localeCompare(b.metadata.creationTimestamp ?? '') || a.metadata.name.localeCompare(b.metadata.name));
    } catch (err) {
      throw apiError(`listing ApprovalRequests in ${namespace}`, err);
    }
  }

  /** One ApprovalRequest. */
  async get(namespace: string, name: string): Promise<ApprovalRequest> {
    try {
      return plain<ApprovalRequest>(await retrying(() => this.#api.getNamespacedCustomObject({ ...BASE, namespace, name })));
    } catch (err) {
      throw apiError(`reading ApprovalRequest ${namespace}/${name}`, err);
    }
  }

  /** Every ApprovalRequest in `namespace`, or in all namespaces. */
  async list(namespace?: string, fieldSelector?: string): Promise<ApprovalRequest[]> {
    try {
      const list =
        namespace === undefined
          ? await retrying(() => this.#api.listClusterCustomObject({ ...BASE, ...(fieldSelector ? { fieldSelector } : {}) }))
          : await retrying(() => this.#api.listNamespacedCustomObject({ ...BASE, namespace, ...(fieldSelector ? { fieldSelector } : {}) }));
      return plain<{ items: ApprovalRequest[] }>(list).items;
    } catch (err) {
      throw apiError(`listing ApprovalRequests${namespace === undefined ? '' : ` in ${namespace}`}`, err);
    }
  }

  /** Finds an ApprovalRequest by name: in `namespace` when given, else in whichever namespace holds it. */
  async find(name: string, namespace?: string): Promise<ApprovalRequest> {
    if (namespace !== undefined) return this.get(namespace, name);
    const found = await this.list(undefined, `metadata.name=${name}`);
    if (found.length === 0) throw new ApprovalError('APPROVAL_ERR_NOT_FOUND', `ApprovalRequest ${name}: not found in any namespace`);
    if (found.length > 1) throw new ApprovalError('APPROVAL_ERR_INVALID', `ApprovalRequest ${name} exists in several namespaces (${found.map((a) => a.metadata.namespace).join(', ')}): name one with -n`);
    return found[0] as ApprovalRequest;
  }

  /**
   * Replaces the status, conditional on the resourceVersion `ar` was read
   * at. Resolves the updated object, or undefined when someone else wrote it
   * first (409): the caller re-reads and decides again.
   */
  async replaceStatus(ar: ApprovalRequest, status: ApprovalStatus): Promise<ApprovalRequest | undefined> {
    const body = { ...ar, status };
    try {
      return plain<ApprovalRequest>(await this.#api.replaceNamespacedCustomObjectStatus({ ...BASE, namespace: ar.metadata.namespace, name: ar.metadata.name, body }));
    } catch (err) {
      if (err instanceof ApiException && err.code === 409) return undefined;
      throw apiError(`updating the status of ApprovalRequest ${ar.metadata.namespace}/${ar.metadata.name}`, err);
    }
  }

  /**
   * Waits until `done(ar)` holds for the named ApprovalRequest, or
   * `timeoutMs` passes, or `signal` aborts; resolves the last state seen. A
   * watch from the resourceVersion of a fresh read: nothing between the read
   * and the watch is missed.
   */
  async waitFor(namespace: string, name: string, done: (ar: ApprovalRequest) => boolean, opts: { timeoutMs: number; signal?: AbortSignal }): Promise<ApprovalRequest> {
    let last = await this.get(namespace, name);
    if (done(last) || opts.signal?.aborted) return last;
    const watch = new Watch(this.kc);
    return new Promise<ApprovalRequest>((resolve, reject) => {
      let ctl: AbortController | undefined;
      let settled = false;
      const finish = (err?: unknown): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        ctl?.abort();
        if (err !== undefined) reject(err);
        else resolve(last);
      };
      const onAbort = (): void => finish();
      const timer = setTimeout(() => finish(), opts.timeoutMs);
      opts.signal?.addEventListener('abort', onAbort);
      const start = (rv: string | undefined): void => {
        watch
          .watch(
            `/apis/${APPROVAL_GROUP}/${APPROVAL_VERSION}/namespaces/${encodeURIComponent(namespace)}/${APPROVAL_PLURAL}`,
            { fieldSelector: `metadata.name=${name}`, ...(rv ? { resourceVersion: rv } : {}), allowWatchBookmarks: false },
            (type, obj) => {
              if (type === 'ADDED' || type === 'MODIFIED') {
                last = plain<ApprovalRequest>(obj);
                if (done(last)) finish();
              } else if (type === 'DELETED') {
                finish(new ApprovalError('APPROVAL_ERR_NOT_FOUND', `ApprovalRequest ${namespace}/${name} was deleted`));
              }
            },
            () => {
              // The watch ended (server timeout, network): re-read and watch again while time is left.
              if (settled) return;
              this.get(namespace, name).then(
                (ar) => {
                  last = ar;
                  if (done(ar)) finish();
                  else if (!settled) setTimeout(() => !settled && start(ar.metadata.resourceVersion), 200);
                },
                (err: unknown) => finish(err),
              );
            },
          )
          .then(
            (c) => {
              ctl = c;
              if (settled) c.abort();
            },
            (err: unknown) => finish(apiError(`watching ApprovalRequest ${namespace}/${name}`, err)),
          );
      };
      start(last.metadata.resourceVersion);
    });
  }

  /** Who the API server says this store's credentials are (a SelfSubjectReview). */
  async whoAmI(): Promise<{ username: string; uid?: string; groups: string[] }> {
    try {
      const r = await this.kc.makeApiClient(AuthenticationV1Api).createSelfSubjectReview({ body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' } });
      const u = r.status?.userInfo;
      if (!u?.username) throw new Error('no userInfo in the SelfSubjectReview');
      return { username: u.username, ...(u.uid ? { uid: u.uid } : {}), groups: u.groups ?? [] };
    } catch (err) {
      throw apiError('finding out who these credentials are (SelfSubjectReview)', err);
    }
  }

  /** Whether `user` may `approve` the named ApprovalRequest (a SubjectAccessReview). */
  async canApprove(user: { username: string; uid?: string; groups: readonly string[]; extra?: Record<string, readonly string[]> }, namespace: string, name: string): Promise<boolean> {
    try {
      const r = await this.#authz.createSubjectAccessReview({
        body: {
          apiVersion: 'authorization.k8s.io/v1',
          kind: 'SubjectAccessReview',
          spec: {
            user: user.username,
            groups: [...user.groups],
            ...(user.uid ? { uid: user.uid } : {}),
            ...(user.extra ? { extra: Object.fromEntries(Object.entries(user.extra).map(([k, v]) => [k, [...v]])) } : {}),
            resourceAttributes: { group: APPROVAL_GROUP, resource: APPROVAL_PLURAL, verb: APPROVE_VERB, namespace, name },
          },
        },
      });
      return r.status?.allowed === true && r.status.denied !== true;
    } catch (err) {
      throw apiError('checking the approve permission (SubjectAccessReview)', err);
    }
  }
}
