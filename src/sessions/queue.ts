import type { ChallengeSession } from '../api/session.js';
import type { Caches, Raw } from '../read-model/caches.js';
import { decideAdmission, isAdmittedRecord, isWaiting, type Admission } from '../reconcile/admission.js';
import { Reason } from '../reconcile/reasons.js';

/**
 * Where a waiting session stands in the queue, as this replica's cache shows it: the same
 * decideAdmission the leader admits with, so every replica answers with the same position the
 * leader works through. The leader alone admits; this only reads. Recomputed when the caches
 * change, and not at all while nothing is capped and no Pod is unschedulable.
 */

export interface QueuePlace {
  position: number;
  ahead: number;
  reason: string;
}

export class QueuePositions {
  private version = 0;
  private memo: { version: number; decisions: Map<string, Admission> } | undefined;
  /** Admitted sessions whose status says their Pod cannot be scheduled. */
  private readonly unschedulable = new Set<string>();

  constructor(
    private readonly caches: Caches,
    private readonly maxInstances: number | undefined,
  ) {
    const onSession = (raw: Raw) => {
      const name = raw.metadata?.name;
      if (!name) return;
      const r = raw as { metadata?: { deletionTimestamp?: unknown }; status?: { conditions?: { type?: unknown; reason?: unknown }[] } };
      const ready = Array.isArray(r.status?.conditions) ? r.status.conditions.find((c) => c.type === 'Ready') : undefined;
      if (ready?.reason === Reason.Unschedulable && !r.metadata?.deletionTimestamp) this.unschedulable.add(name);
      else this.unschedulable.delete(name);
      this.version++;
    };
    caches.sessions.on('add', onSession);
    caches.sessions.on('update', onSession);
    caches.sessions.on('delete', (raw) => {
      if (raw.metadata?.name) this.unschedulable.delete(raw.metadata.name);
      this.version++;
    });
    for (const ev of ['add', 'update', 'delete'] as const) caches.challenges.on(ev, () => this.version++);
  }

  /** The session's place in the queue; undefined when it is admitted, ended, or would be admitted now. */
  place(session: ChallengeSession): QueuePlace | undefined {
    if (isAdmittedRecord(session)) return undefined;
    const stored = session.status?.phase === 'Queued' ? session.status.conditions?.find((c) => c.type === 'Ready')?.reason : undefined;
    // The leader has not admitted it yet though this cache sees room: it is next.
    const next = stored ? { position: 1, ahead: 0, reason: stored } : undefined;
    if (!isWaiting(session)) return undefined;
    if (!this.limits(session.spec.challenge)) return next;
    const d = this.decisions().get(session.metadata.name);
    if (!d || d.admitted) return next;
    return { position: d.position, ahead: d.ahead, reason: d.reason };
  }

  /** Whether spawns of `challenge` can queue at all: a cap applies, or a Pod cannot be scheduled. */
  limits(challenge: string): boolean {
    return this.maxInstances !== undefined || this.cap(challenge) !== undefined || this.unschedulable.size > 0;
  }

  private cap(challenge: string): number | undefined {
    const c = this.caches.challenge(challenge);
    return c?.ok ? c.value.spec.maxInstances : undefined;
  }

  private decisions(): Map<string, Admission> {
    if (this.memo?.version === this.version) return this.memo.decisions;
    const decisions = decideAdmission({
      sessions: this.caches.allSessions(),
      caps: { engine: this.maxInstances, challenge: (c) => this.cap(c) },
      unschedulable: this.unschedulable,
    });
    this.memo = { version: this.version, decisions };
    return decisions;
  }
}
