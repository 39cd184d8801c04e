import type { V1Pod } from '@kubernetes/client-node';
import { LABEL_SESSION } from '../api/group.js';
import type { ChallengeSession } from '../api/session.js';
import type { Caches, Raw } from '../read-model/caches.js';
import { decideAdmission, isAdmittedRecord, isWaiting, queueTime, type Admission } from '../reconcile/admission.js';
import { childNames } from '../reconcile/names.js';
import type { ChildCaches, Owned } from './owned-kinds.js';

/**
 * The leader's view of the queue: decideAdmission over the caches, recomputed only when they
 * changed, plus what only the leader knows: sessions it decided to admit whose admittedAt has
 * not reached the cache yet (so concurrent reconciles never admit past a cap), children that
 * show a session was admitted before its status says so (a crash between the two), and Pods the
 * scheduler cannot place. When capacity may have freed, it re-queues the queued sessions whose
 * decision changed, since a queued session has nothing else that would wake it.
 */

/** Coalesces bursts of cache events into one look at the queue. */
const PASS_DELAY_MS = 20;

/**
 * Bounds of the settle time (see settleMs): at least this, at most that however slow the
 * apiserver gets, and how long an observed delivery time counts.
 */
const SETTLE_MIN_MS = 250;
const SETTLE_MAX_MS = 3_000;
const SETTLE_MEMORY_MS = 60_000;

export interface AdmissionTrackerOptions {
  caches: Caches;
  /** CTF_MAX_INSTANCES; undefined: unlimited. */
  maxInstances: number | undefined;
}

export class AdmissionTracker {
  private version = 0;
  private memo: { version: number; decisions: Map<string, Admission> } | undefined;
  /** Admitted by this leader, not yet recorded in the cached session: name -> admittedAt. */
  private readonly admittingNow = new Map<string, string>();
  /** Sessions whose Pod is Pending with PodScheduled=False, Unschedulable. */
  private readonly unschedulable = new Set<string>();
  /** Sessions whose stored phase is Queued: the ones a pass may have to wake. */
  private readonly queued = new Set<string>();
  private children: ChildCaches | undefined;
  private enqueue: ((name: string) => void) | undefined;
  private pass: NodeJS.Timeout | undefined;
  /** Recent times from a spawn's request to its arrival in this cache: [seen at, ms]. */
  private readonly arrivals: [number, number][] = [];

  constructor(private readonly o: AdmissionTrackerOptions) {
    const onSession = (raw: Raw) => {
      const name = raw.metadata?.name;
      if (!name) return;
      const r = raw as { metadata?: { deletionTimestamp?: unknown }; status?: { phase?: unknown } };
      if (r.status?.phase === 'Queued' && !r.metadata?.deletionTimestamp) this.queued.add(name);
      else this.queued.delete(name);
      if (isAdmittedRecord(raw as ChallengeSession)) this.admittingNow.delete(name);
      this.changed();
    };
    o.caches.sessions.on('add', (raw) => {
      this.observeArrival(raw);
      onSession(raw);
    });
    o.caches.sessions.on('update', onSession);
    o.caches.sessions.on('delete', (raw) => {
      const name = raw.metadata?.name;
      if (name) {
        this.queued.delete(name);
        this.admittingNow.delete(name);
      }
      this.changed();
    });
    for (const ev of ['add', 'update', 'delete'] as const) o.caches.challenges.on(ev, () => this.changed());
  }

  /** While leading: the child caches to read and how to re-queue a session. */
  start(children: ChildCaches, enqueue: (name: string) => void): void {
    this.children = children;
    this.enqueue = enqueue;
    this.admittingNow.clear();
    this.changed();
  }

  stop(): void {
    this.children = undefined;
    this.enqueue = undefined;
    if (this.pass) clearTimeout(this.pass);
    this.pass = undefined;
  }

  /**
   * How long after its request a contended session is admitted at the earliest: concurrent
   * creates reach this cache in any order, and one requested earlier may still be on its way.
   * The longest request-to-cache time seen in the last minute (plus a margin), within bounds,
   * so a slow apiserver widens the wait and an idle one keeps it short.
   */
  settleMs(): number {
    const since = Date.now() - SETTLE_MEMORY_MS;
    while (this.arrivals.length > 0 && (this.arrivals[0]?.[0] ?? 0) < since) this.arrivals.shift();
    const worst = this.arrivals.reduce((m, [, ms]) => Math.max(m, ms), 0);
    return Math.min(SETTLE_MAX_MS, Math.max(SETTLE_MIN_MS, worst + 100));
  }

  private observeArrival(raw: Raw): void {
    const r = raw as ChallengeSession;
    // Only fresh spawns: a session with a status, or a relist's old ones, say nothing of the delivery time.
    if (r.status !== undefined || !r.metadata.annotations) return;
    const ms = Date.now() - queueTime(r);
    if (ms < 0 || ms > SETTLE_MAX_MS * 3) return;
    this.arrivals.push([Date.now(), ms]);
    if (this.arrivals.length > 256) this.arrivals.shift();
  }

  /** A Pod event of the pod informer (the leader's). */
  observePod(pod: V1Pod, deleted = false): void {
    const session = pod.metadata?.labels?.[LABEL_SESSION];
    if (!session) return;
    const was = this.unschedulable.has(session);
    const now = !deleted && podUnschedulable(pod);
    if (was === now) return;
    if (now) this.unschedulable.add(session);
    else this.unschedulable.delete(session);
    this.changed();
  }

  /** Admitted in the cluster: its status records it, or it has children (an admission cut short). */
  isAdmitted(session: ChallengeSession): boolean {
    return isAdmittedRecord(session) || this.hasChildren(session);
  }

  /** Whether the session waits in the queue (never admitted, not ended). */
  isWaiting(session: ChallengeSession): boolean {
    return isWaiting(session, (s) => this.hasChildren(s));
  }

  /**
   * The decision for a waiting session. `force`-free: a session whose stored phase still says
   * Failed (a problem of its Challenge, since fixed) is decided as if it had none.
   */
  decide(session: ChallengeSession): Admission {
    const name = session.metadata.name;
    if (this.admittingNow.has(name)) return { admitted: true };
    if (!this.contended(session)) return { admitted: true };
    const d = this.decisions().get(name);
    if (d) return d;
    const { phase: _stale, ...status } = session.status ?? {};
    return this.decideOver(this.sessions().map((s) => (s.metadata.name === name ? { ...s, status } : s))).get(name) ?? { admitted: true };
  }

  /** Remembers an admission at once, so the next decision (of any session) counts it. */
  markAdmitted(name: string, admittedAt: string): void {
    this.admittingNow.set(name, admittedAt);
    this.changed();
  }

  /** The admittedAt this leader decided, while the cache does not show it yet. */
  admittedAtOf(name: string): string | undefined {
    return this.admittingNow.get(name);
  }

  /** Whether anything limits the session's admission: a cap, or an unschedulable Pod. */
  contended(session: ChallengeSession): boolean {
    return this.o.maxInstances !== undefined || this.challengeCap(session.spec.challenge) !== undefined || this.anyUnschedulable();
  }

  /** Admitted by this leader and not yet recorded in the cached session. */
  admitting(name: string): boolean {
    return this.admittingNow.has(name);
  }

  /** The cap of a challenge (spec.maxInstances); undefined: none or unknown. */
  challengeCap(challenge: string): number | undefined {
    const c = this.o.caches.challenge(challenge);
    return c?.ok ? c.value.spec.maxInstances : undefined;
  }

  get maxInstances(): number | undefined {
    return this.o.maxInstances;
  }

  private decisions(): Map<string, Admission> {
    if (this.memo?.version === this.version) return this.memo.decisions;
    for (const name of this.admittingNow.keys()) {
      const p = this.o.caches.session(name);
      if (!p?.ok || p.value.metadata.deletionTimestamp || isAdmittedRecord(p.value)) this.admittingNow.delete(name);
    }
    const decisions = this.decideOver(this.sessions());
    this.memo = { version: this.version, decisions };
    return decisions;
  }

  private decideOver(sessions: ChallengeSession[]): Map<string, Admission> {
    return decideAdmission({
      sessions,
      caps: { engine: this.o.maxInstances, challenge: (c) => this.challengeCap(c) },
      unschedulable: this.unschedulable,
      admittedElsewhere: (s) => this.admittingNow.has(s.metadata.name) || this.hasChildren(s),
    });
  }

  private sessions(): ChallengeSession[] {
    return this.o.caches.allSessions();
  }

  private anyUnschedulable(): boolean {
    for (const name of this.unschedulable) {
      const p = this.o.caches.session(name);
      if (p?.ok && !p.value.metadata.deletionTimestamp) return true;
    }
    return false;
  }

  private hasChildren(session: ChallengeSession): boolean {
    const c = this.children;
    if (!c) return false;
    const ns = this.o.caches.namespace;
    const names = childNames(session.metadata.name);
    const mine = (o: Owned | undefined) => o?.metadata?.ownerReferences?.some((r) => r.controller && r.uid === session.metadata.uid) === true;
    return mine(c.pods?.get(`${ns}/${names.pod}`)) || mine(c.secrets?.get(`${ns}/${names.secret}`));
  }

  private changed(): void {
    this.version++;
    if (!this.enqueue || this.pass || this.queued.size === 0) return;
    this.pass = setTimeout(() => {
      this.pass = undefined;
      this.wake();
    }, PASS_DELAY_MS);
    this.pass.unref();
  }

  /** Re-queues queued sessions that may now be admitted, or whose reason to wait changed. */
  private wake(): void {
    const enqueue = this.enqueue;
    if (!enqueue) return;
    const decisions = this.decisions();
    for (const name of this.queued) {
      const d = decisions.get(name);
      if (!d) continue;
      if (d.admitted) {
        enqueue(name);
        continue;
      }
      const p = this.o.caches.session(name);
      const stored = p?.ok ? p.value.status?.conditions?.find((c) => c.type === 'Ready')?.reason : undefined;
      if (stored !== d.reason) enqueue(name);
    }
  }
}

/** Pending and refused by the scheduler: no node can run it now. */
export function podUnschedulable(pod: V1Pod): boolean {
  if (pod.metadata?.deletionTimestamp || pod.status?.phase !== 'Pending') return false;
  const c = pod.status.conditions?.find((x) => x.type === 'PodScheduled');
  return c?.status === 'False' && c.reason === 'Unschedulable';
}
