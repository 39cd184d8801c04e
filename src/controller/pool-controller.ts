import type { Logger } from 'pino';
import type { Challenge } from '../api/challenge.js';
import { ANNOTATION_CLAIMED_AT } from '../api/group.js';
import { classifyError } from '../kube/errors.js';
import type { Writer } from '../kube/writes.js';
import type { Metrics } from '../metrics.js';
import type { Caches, Raw } from '../read-model/caches.js';
import { desiredPoolInstance, isClaimable, planPool, poolInstanceName, poolSize } from '../reconcile/pool.js';
import { WorkQueue } from './workqueue.js';

/**
 * Keeps every Challenge's warm pool at spec.pool.size while this replica leads: one key per
 * Challenge, reconciled from the caches alone (planPool) whenever the Challenge or one of its
 * pool instances changes, and on every resync. Level-triggered: a pass that is interrupted
 * leaves the pool short or long, and the next pass creates or deletes the difference. The
 * session controller provisions the instances it creates like any session, behind players' work.
 */

export interface PoolControllerOptions {
  caches: Caches;
  writer: Writer;
  log: Logger;
  metrics: Metrics;
  resyncMs: number;
  /** Instances created per pass and challenge (then the pass looks again at once). */
  maxCreatePerPass?: number;
  /** Refills start once no pool instance of any challenge has been claimed for this long (ms). */
  refillQuietMs?: number;
  /** ...or once a challenge's refill has waited this long (ms): then one batch, and it waits again. */
  refillMaxWaitMs?: number;
}

const DEFAULT_MAX_CREATE = 10;
/**
 * Between two full batches of one challenge: refills go at most maxCreatePerPass per this many
 * ms, so that after a burst of claims they do not take the apiserver from the players' spawns.
 */
const REFILL_PACE_MS = 500;
/**
 * A refill starts once no instance of any challenge has been claimed for this long and every
 * claim is published (status.claimedAt): claims come in bursts (the opening of a CTF), and each
 * refill costs the apiserver a create and the instance's provisioning, which would queue in front
 * of the claims and of their publishing.
 */
const REFILL_QUIET_MS = 1_000;
/**
 * The longest a challenge's refill waits for that pause; then it creates one batch and waits
 * again, so a steady stream of claims slows refills down instead of stopping them.
 */
const REFILL_MAX_WAIT_MS = 10_000;
/** A claim older than this no longer holds refills back, published or not. */
const PUBLISH_HOLD_MS = 30_000;

/** How long a created instance counts as pending while the cache does not show it. */
const EXPECTATION_MS = 30_000;

export class PoolController {
  private queue: WorkQueue | undefined;
  /**
   * Instances created but not yet seen in the cache, per challenge, with a deadline: without them
   * a pass that runs before the watch delivers its own creates would create them again (the
   * expectations of client-go's ReplicaSet controller). Only an optimisation: a surplus is
   * deleted by the next pass, and a restart starts from the cluster alone.
   */
  private readonly pending = new Map<string, Map<string, number>>();
  /** When the last claim of any challenge was seen: refills hold back while claims keep coming. */
  private lastClaim = 0;
  /** Since when each challenge's refill has been held back by claims. */
  private readonly heldSince = new Map<string, number>();
  /** Claimed instances the controller has not published yet (status.claimedAt), with their claim time. */
  private readonly unpublished = new Map<string, number>();
  private resync: NodeJS.Timeout | undefined;

  constructor(private readonly o: PoolControllerOptions) {
    const challengeOf = (obj: { spec?: { challenge?: unknown; pool?: unknown } }) => {
      if (obj.spec?.pool === true && typeof obj.spec.challenge === 'string') this.queue?.add(obj.spec.challenge);
    };
    type Seen = { metadata?: { name?: string; annotations?: Record<string, string> }; status?: { claimedAt?: unknown } };
    const claimAt = (s: unknown) => (s as Seen | undefined)?.metadata?.annotations?.[ANNOTATION_CLAIMED_AT];
    // Claims the controller has yet to publish: refills wait for them too (see REFILL_QUIET_MS).
    const track = (obj: Raw) => {
      const name = obj.metadata?.name;
      const at = claimAt(obj);
      if (!name || obj.spec?.pool !== true) return;
      if (at !== undefined && (obj as Seen).status?.claimedAt !== at) this.unpublished.set(name, Date.parse(at) || Date.now());
      else this.unpublished.delete(name);
    };
    o.caches.sessions.on('add', (obj) => {
      track(obj);
      challengeOf(obj);
    });
    o.caches.sessions.on('update', (obj, old) => {
      // A claim: every refill waits until claims pause and are published (see REFILL_QUIET_MS).
      if (obj.spec?.pool === true && typeof obj.spec.challenge === 'string' && claimAt(obj) !== undefined && claimAt(old) === undefined) this.lastClaim = Date.now();
      track(obj);
      challengeOf(obj);
    });
    o.caches.sessions.on('delete', (obj) => {
      if (obj.metadata?.name) this.unpublished.delete(obj.metadata.name);
      challengeOf(obj);
    });
    const byName = (obj: { metadata?: { name?: string } }) => {
      if (obj.metadata?.name) this.queue?.add(obj.metadata.name);
    };
    o.caches.challenges.on('add', byName);
    o.caches.challenges.on('update', byName);
    o.caches.challenges.on('delete', byName);
    o.metrics.setPoolSource(() => this.sizes());
  }

  start(): void {
    if (this.queue) return;
    this.queue = new WorkQueue((key) => this.reconcile(key), {
      concurrency: 2,
      onError: (key, err, retryInMs) => this.o.log.warn({ challenge: key, err: classifyError(err).message, retryInMs }, 'Pool reconcile failed; will retry'),
    });
    this.enqueueAll();
    this.resync = setInterval(() => this.enqueueAll(), this.o.resyncMs);
    this.resync.unref();
  }

  async stop(): Promise<void> {
    if (this.resync) clearInterval(this.resync);
    this.resync = undefined;
    const q = this.queue;
    this.queue = undefined;
    await q?.shutdown();
  }

  /** Resolves when no pool pass is queued or running (tests and benchmarks). */
  async idle(): Promise<void> {
    await this.queue?.drained();
  }

  /** Challenges that ask for a pool. */
  private pooledChallenges(): Set<string> {
    const names = new Set<string>();
    for (const c of this.o.caches.allChallenges()) if (poolSize(c) > 0) names.add(c.metadata.name);
    return names;
  }

  private enqueueAll(): void {
    // Also those that no longer ask for one but still have instances to remove.
    const names = this.pooledChallenges();
    for (const s of this.o.caches.allSessions()) if (s.spec.pool === true) names.add(s.spec.challenge);
    for (const n of names) this.queue?.add(n);
  }

  private challenge(name: string): Challenge | undefined {
    const c = this.o.caches.challenge(name);
    return c?.ok ? c.value : undefined;
  }

  private async reconcile(name: string): Promise<{ requeueAfterMs?: number }> {
    const { caches, writer, log } = this.o;
    const challenge = this.challenge(name);
    // An invalid Challenge is left alone (its instances report the problem); a deleted one loses its pool.
    if (!challenge && caches.challenge(name)) return {};
    const max = this.o.maxCreatePerPass ?? DEFAULT_MAX_CREATE;
    const plan = planPool(challenge, caches.unclaimedPool(name), max, this.pendingCreates(name));
    for (const s of plan.remove) {
      try {
        await writer.deleteSession(caches.namespace, s.metadata.name, s.metadata.uid, s.metadata.resourceVersion);
        log.info({ session: s.metadata.name, challenge: name }, 'Deleted a pool instance (stale or surplus)');
      } catch (err) {
        // Claimed meanwhile (a Conflict: the claim moved its resourceVersion), or already gone.
        const kind = classifyError(err).kind;
        if (kind !== 'Conflict' && kind !== 'NotFound') throw err;
      }
    }
    // During a burst of claims the refill waits: its writes would queue in front of the players'.
    if (plan.create === 0) this.heldSince.delete(name);
    else {
      const now = Date.now();
      const quietMs = this.o.refillQuietMs ?? REFILL_QUIET_MS;
      const sinceClaim = now - this.lastClaim;
      const held = this.heldSince.get(name) ?? now;
      const publishing = this.publishing(now);
      if ((sinceClaim < quietMs || publishing) && now - held < (this.o.refillMaxWaitMs ?? REFILL_MAX_WAIT_MS)) {
        this.heldSince.set(name, held);
        return { requeueAfterMs: Math.max(100, quietMs - sinceClaim) };
      }
      this.heldSince.delete(name);
    }
    await Promise.all(Array.from({ length: plan.create }, () => this.createInstance(name)));
    if (plan.create > 0) log.info({ challenge: name, created: plan.create }, 'Created pool instances');
    // Created ones show in the cache (and re-queue this key) as their watch events arrive; a
    // full batch may not be the end of the shortfall.
    return plan.create === max ? { requeueAfterMs: REFILL_PACE_MS } : {};
  }

  /** Whether claims made lately still wait to be published (older ones, e.g. of a broken instance, do not hold refills). */
  private publishing(now: number): boolean {
    for (const [name, at] of this.unpublished) {
      if (now - at < PUBLISH_HOLD_MS) return true;
      this.unpublished.delete(name);
    }
    return false;
  }

  /** Created instances of `challenge` the cache does not show yet (expired expectations dropped). */
  private pendingCreates(challenge: string): number {
    const mine = this.pending.get(challenge);
    if (!mine) return 0;
    const now = Date.now();
    for (const [name, deadline] of mine) if (deadline < now || this.o.caches.session(name) !== undefined) mine.delete(name);
    if (mine.size === 0) this.pending.delete(challenge);
    return mine.size;
  }

  private async createInstance(challenge: string): Promise<void> {
    const ns = this.o.caches.namespace;
    for (let attempt = 0; attempt < 3; attempt++) {
      const name = poolInstanceName(challenge);
      try {
        await this.o.writer.createSession(ns, desiredPoolInstance(name, ns, challenge));
        let mine = this.pending.get(challenge);
        if (!mine) this.pending.set(challenge, (mine = new Map<string, number>()));
        if (this.o.caches.session(name) === undefined) mine.set(name, Date.now() + EXPECTATION_MS);
        return;
      } catch (err) {
        // 60 random bits: a taken name is next to impossible, but costs nothing to retry.
        if (classifyError(err).kind !== 'AlreadyExists') throw err;
      }
    }
  }

  /** Per challenge with a pool or pool instances: target size, ready (claimable) and starting instances. */
  private *sizes(): Iterable<{ challenge: string; size: number; ready: number; starting: number }> {
    for (const name of this.pooledChallenges()) {
      const challenge = this.challenge(name);
      const pool = this.o.caches.unclaimedPool(name).filter((s) => !s.metadata.deletionTimestamp);
      const ready = challenge ? pool.filter((s) => isClaimable(s, challenge)).length : 0;
      yield { challenge: name, size: poolSize(challenge), ready, starting: pool.length - ready };
    }
  }
}
