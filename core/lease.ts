/**
 * Leader election on a coordination.k8s.io/v1 Lease, as client-go's
 * leaderelection package does it (tools/leaderelection/leaderelection.go):
 * a candidate takes the Lease when it is absent, released (no holder) or not
 * renewed for leaseDurationSeconds, and the leader renews it every
 * retryPeriod. Every write is a compare-and-swap on resourceVersion, so two
 * candidates can never both win one term.
 *
 * Expiry is judged on this process's clock from when it last saw the Lease
 * change (client-go's observedTime), never from the holder's renewTime, so
 * clock skew between replicas cannot make a live leader look expired.
 */
import type { Logger } from './logger.ts';
import { KubeError, type KubeClient, type KubeObject } from './kube-client.ts';

/** What {@link LeaderElector} needs. */
export interface LeaderElectionOptions {
  client: KubeClient;
  namespace: string;
  /** Name of the Lease. */
  name: string;
  /** This candidate's identity (the pod name, unique per replica). */
  identity: string;
  /** A holder that has not renewed for this long has lost the Lease. */
  leaseDurationSeconds: number;
  /** How often the leader renews and a candidate retries (ms). */
  retryPeriodMs: number;
  /** A leader that could not renew for this long steps down (ms, below the lease duration). */
  renewDeadlineMs: number;
  log: Logger;
  onStartedLeading: () => void;
  onStoppedLeading: () => void;
  /** Injectable clock. */
  now?: () => Date;
}

interface LeaseObject extends KubeObject {
  spec?: { holderIdentity?: string; leaseDurationSeconds?: number; acquireTime?: string; renewTime?: string; leaseTransitions?: number };
}

/** The API server's MicroTime format: RFC 3339 with exactly six fractional digits. */
export function microTime(d: Date): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

/** One candidate in a Lease election. */
export class LeaderElector {
  readonly #o: LeaderElectionOptions;
  readonly #now: () => Date;
  readonly #path: string;
  #leader = false;
  #lastRenew = 0;
  /** The holder/renewTime last seen, and when (on this clock). */
  #observed: { key: string; at: number } | undefined;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #running: Promise<void> | undefined;

  constructor(opts: LeaderElectionOptions) {
    if (opts.renewDeadlineMs >= opts.leaseDurationSeconds * 1000) throw new TypeError('renewDeadlineMs must be below leaseDurationSeconds');
    this.#o = opts;
    this.#now = opts.now ?? (() => new Date());
    this.#path = `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(opts.namespace)}/leases`;
  }

  /** Whether this candidate holds the Lease (as of its last successful renewal). */
  isLeader(): boolean {
    return this.#leader;
  }

  /** Starts trying every retryPeriod. */
  start(): void {
    const tick = (): void => {
      this.#running = this.step().finally(() => {
        if (!this.#stopped) {
          this.#timer = setTimeout(tick, this.#o.retryPeriodMs);
          this.#timer.unref();
        }
      });
    };
    tick();
  }

  /** One attempt to acquire or renew; exposed so tests drive the election with an injected clock. */
  async step(): Promise<void> {
    let held: boolean;
    try {
      held = await this.#tryAcquireOrRenew();
    } catch (err) {
      this.#o.log.warn({ err, lease: this.#o.name }, 'leader election: the Lease could not be read or written');
      // A leader that cannot reach the API server keeps leading only until its renew deadline.
      held = this.#leader && this.#now().getTime() - this.#lastRenew < this.#o.renewDeadlineMs;
    }
    this.#set(held);
  }

  /** Stops; a leader releases the Lease so another candidate takes over at once. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    await this.#running;
    if (this.#leader) {
      try {
        const lease = await this.#o.client.get<LeaseObject>(`${this.#path}/${encodeURIComponent(this.#o.name)}`);
        if (lease?.spec?.holderIdentity === this.#o.identity) {
          // client-go's ReleaseOnCancel: an empty holder with a 1 s duration.
          const spec = { ...lease.spec, leaseDurationSeconds: 1, renewTime: microTime(this.#now()) };
          delete spec.holderIdentity;
          await this.#o.client.replace(`${this.#path}/${encodeURIComponent(this.#o.name)}`, { ...lease, spec });
        }
      } catch (err) {
        this.#o.log.warn({ err, lease: this.#o.name }, 'leader election: releasing the Lease failed; another replica takes over when it expires');
      }
    }
    this.#set(false);
  }

  #set(held: boolean): void {
    if (held === this.#leader) return;
    this.#leader = held;
    this.#o.log.info({ lease: this.#o.name, identity: this.#o.identity, leader: held }, held ? 'leader election: started leading' : 'leader election: stopped leading');
    if (held) this.#o.onStartedLeading();
    else this.#o.onStoppedLeading();
  }

  async #tryAcquireOrRenew(): Promise<boolean> {
    const { client, identity, leaseDurationSeconds } = this.#o;
    const now = this.#now();
    const itemPath = `${this.#path}/${encodeURIComponent(this.#o.name)}`;
    const existing = await client.get<LeaseObject>(itemPath);
    const mine = { holderIdentity: identity, leaseDurationSeconds, renewTime: microTime(now) };
    if (existing === undefined) {
      try {
        await client.create(this.#path, {
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: { name: this.#o.name, namespace: this.#o.namespace },
          spec: { ...mine, acquireTime: microTime(now), leaseTransitions: 0 },
        });
      } catch (err) {
        if (err instanceof KubeError && err.code === 'KUBE_ERR_CONFLICT') return false; // another candidate created it first
        throw err;
      }
      this.#lastRenew = now.getTime();
      return true;
    }
    const spec = existing.spec ?? {};
    const key = `${spec.holderIdentity ?? ''} ${spec.renewTime ?? ''}`;
    if (this.#observed?.key !== key) this.#observed = { key, at: now.getTime() };
    const holder = spec.holderIdentity ?? '';
    const duration = (spec.leaseDurationSeconds ?? leaseDurationSeconds) * 1000;
    const expired = this.#observed.at + duration <= now.getTime();
    if (holder !== '' && holder !== identity && !expired) return false;
    const takingOver = holder !== identity;
    try {
      await client.replace(itemPath, {
        ...existing,
        spec: {
          ...spec,
          ...mine,
          acquireTime: takingOver ? microTime(now) : (spec.acquireTime ?? microTime(now)),
          leaseTransitions: (spec.leaseTransitions ?? 0) + (takingOver ? 1 : 0),
        },
      });
    } catch (err) {
      if (err instanceof KubeError && err.code === 'KUBE_ERR_CONFLICT') return false; // someone wrote it since we read it
      throw err;
    }
    this.#lastRenew = now.getTime();
    return true;
  }
}
