import type { CoordinationV1Api, V1Lease } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { classifyError, ignoreNotFound } from '../kube/errors.js';

/**
 * Leader election on a coordination.k8s.io Lease, the way client-go does it: the holder renews
 * every `retryMs`; another candidate takes over only after it has seen the same lease record
 * unchanged for `leaseMs` (its own clock, so clock skew between replicas does not matter).
 * Every write carries the resourceVersion read just before, so two candidates can never both
 * win: the apiserver rejects the loser with a conflict.
 */

/**
 * MicroTime fields must carry exactly six fractional digits; client-node serialises a Date with
 * three, which the apiserver refuses. A string passes through its serialiser untouched.
 */
function microTime(d: Date | string | undefined): Date {
  const date = d === undefined ? new Date() : new Date(d);
  return date.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z') as unknown as Date;
}

export interface LeaderOptions {
  coord: CoordinationV1Api;
  namespace: string;
  name: string;
  identity: string;
  leaseMs?: number;
  renewDeadlineMs?: number;
  retryMs?: number;
  log: Logger;
  onStartedLeading: () => void;
  onStoppedLeading: () => void;
}

export class LeaderElector {
  private leading = false;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private observed: { holder: string; renew: string; at: number } | undefined;
  private lastRenew = 0;
  private readonly leaseMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryMs: number;

  constructor(private readonly o: LeaderOptions) {
    this.leaseMs = o.leaseMs ?? 15_000;
    this.renewDeadlineMs = o.renewDeadlineMs ?? 10_000;
    this.retryMs = o.retryMs ?? 2_000;
  }

  isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    this.stopped = false;
    void this.tick();
  }

  /** Stops campaigning; a leader releases the lease so a peer can take over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.leading) {
      this.setLeading(false);
      await this.release().catch((err: unknown) => this.o.log.warn({ err: classifyError(err).message }, 'Could not release the lease'));
    }
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.tick(), this.retryMs);
    this.timer.unref?.();
  }

  private setLeading(value: boolean): void {
    if (value === this.leading) return;
    this.leading = value;
    this.o.log.info({ lease: `${this.o.namespace}/${this.o.name}`, identity: this.o.identity }, value ? 'Became leader' : 'Stopped leading');
    if (value) this.o.onStartedLeading();
    else this.o.onStoppedLeading();
  }

  private async tick(): Promise<void> {
    try {
      const ok = await this.tryAcquireOrRenew();
      if (ok) this.lastRenew = Date.now();
      if (ok && !this.stopped) this.setLeading(true);
      if (!ok && this.leading) this.setLeading(false);
    } catch (err) {
      this.o.log.warn({ err: classifyError(err).message }, 'Lease update failed');
      if (this.leading && Date.now() - this.lastRenew > this.renewDeadlineMs) this.setLeading(false);
    } finally {
      this.schedule();
    }
  }

  private read(): Promise<V1Lease | undefined> {
    return ignoreNotFound(this.o.coord.readNamespacedLease({ name: this.o.name, namespace: this.o.namespace }));
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const now = microTime(undefined);
    const lease = await this.read();
    const leaseSeconds = Math.ceil(this.leaseMs / 1000);
    if (!lease) {
      try {
        await this.o.coord.createNamespacedLease({
          namespace: this.o.namespace,
          body: {
            metadata: { name: this.o.name, namespace: this.o.namespace },
            spec: { holderIdentity: this.o.identity, leaseDurationSeconds: leaseSeconds, acquireTime: now, renewTime: now, leaseTransitions: 0 },
          },
        });
        return true;
      } catch (err) {
        if (['AlreadyExists', 'Conflict'].includes(classifyError(err).kind)) return false;
        throw err;
      }
    }
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity ?? '';
    const renew = spec.renewTime ? new Date(spec.renewTime).toISOString() : '';
    if (!this.observed || this.observed.holder !== holder || this.observed.renew !== renew) {
      this.observed = { holder, renew, at: Date.now() };
    }
    const held = holder !== '' && holder !== this.o.identity;
    const expired = Date.now() > this.observed.at + (spec.leaseDurationSeconds ?? leaseSeconds) * 1000;
    if (held && !expired) return false;
    const takeover = holder !== this.o.identity;
    const body: V1Lease = {
      ...lease,
      spec: {
        ...spec,
        holderIdentity: this.o.identity,
        leaseDurationSeconds: leaseSeconds,
        renewTime: now,
        acquireTime: takeover ? now : microTime(spec.acquireTime),
        leaseTransitions: (spec.leaseTransitions ?? 0) + (takeover && holder !== '' ? 1 : 0),
      },
    };
    try {
      await this.o.coord.replaceNamespacedLease({ name: this.o.name, namespace: this.o.namespace, body });
      return true;
    } catch (err) {
      if (classifyError(err).kind === 'Conflict') return false;
      throw err;
    }
  }

  private async release(): Promise<void> {
    const lease = await this.read();
    if (lease?.spec?.holderIdentity !== this.o.identity) return;
    const now = microTime(undefined);
    await this.o.coord.replaceNamespacedLease({
      name: this.o.name,
      namespace: this.o.namespace,
      body: { ...lease, spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: now, acquireTime: microTime(lease.spec.acquireTime) } },
    });
  }
}
