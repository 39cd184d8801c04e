import { ANNOTATION_REQUESTED_AT } from '../api/group.js';
import type { ChallengeSession } from '../api/session.js';
import { creationTime, parseTimestamp } from './expiry.js';

/**
 * Admission of sessions when capacity is capped: which waiting sessions may get Pods now and
 * where the others stand in the first-come queue. Pure: the controller (which alone admits, so
 * no two replicas race) and every replica's API (which shows positions) call it with what their
 * caches hold. An admission is recorded in the cluster (status.admittedAt, or children and a
 * runtime snapshot for sessions from before the queue), so it is never revoked or re-ordered.
 */

/** Why a session waits. Part of the API (condition reasons and the view's `queue.reason`). */
export const QueueReason = {
  /** CTF_MAX_INSTANCES instances run engine-wide. */
  EngineCap: 'EngineCapacity',
  /** The Challenge's spec.maxInstances instances run. */
  ChallengeCap: 'ChallengeCapacity',
  /** An admitted session's Pod cannot be scheduled: the cluster is full. */
  Unschedulable: 'ClusterFull',
} as const;
export type QueueReason = (typeof QueueReason)[keyof typeof QueueReason];

export type Admission = { admitted: true } | { admitted: false; position: number; ahead: number; reason: QueueReason };

export interface Caps {
  /** Instances engine-wide; undefined: unlimited. */
  engine?: number;
  /** Instances of one challenge (its spec.maxInstances); undefined: unlimited. */
  challenge: (name: string) => number | undefined;
}

export interface AdmissionInput {
  sessions: Iterable<ChallengeSession>;
  caps: Caps;
  /** Names of admitted sessions whose Pod the scheduler cannot place. */
  unschedulable: ReadonlySet<string>;
  /**
   * Admitted by what only the caller knows: children in the controller's caches, or an admission
   * decided but not yet visible in the session cache.
   */
  admittedElsewhere?: (session: ChallengeSession) => boolean;
}

const CLAIMED_USER = 'ctf.challenge-engine.io/claimed-user';
const CLAIMED_AT = 'ctf.challenge-engine.io/claimed-at';

/**
 * A warm pool instance nobody has claimed: spec.pool true and no claimed-user annotation. Read
 * from the raw spec so this compiles before spec.pool is part of the session schema.
 */
export function isUnclaimedPool(session: Pick<ChallengeSession, 'spec' | 'metadata'>): boolean {
  return (session.spec as Record<string, unknown>).pool === true && session.metadata.annotations?.[CLAIMED_USER] === undefined;
}

/** Admitted as recorded in the session itself: admittedAt, or (from before the queue) a runtime snapshot. */
export function isAdmittedRecord(session: Pick<ChallengeSession, 'status'>): boolean {
  const s = session.status as Record<string, unknown> | undefined;
  return typeof s?.admittedAt === 'string' || (s?.provisionedFrom !== undefined && s.provisionedFrom !== null);
}

/**
 * Whether the session is in the queue: not admitted, not being deleted, not ended. A Failed one
 * (its queue time ran out, or its Challenge is unusable) waits for nothing and takes no place.
 */
export function isWaiting(session: ChallengeSession, admittedElsewhere?: (s: ChallengeSession) => boolean): boolean {
  if (session.metadata.deletionTimestamp || isAdmittedRecord(session) || admittedElsewhere?.(session)) return false;
  const phase = session.status?.phase;
  return phase !== 'Failed' && phase !== 'Expired';
}

/**
 * When the session joined the queue, in ms: the API's requested-at stamp (ms precision), else
 * the creation timestamp (1 s); a claimed pool instance joins when it was claimed.
 */
export function queueTime(session: Pick<ChallengeSession, 'metadata'>): number {
  const a = session.metadata.annotations;
  for (const text of [a?.[CLAIMED_AT], a?.[ANNOTATION_REQUESTED_AT]]) {
    const t = text === undefined ? undefined : parseTimestamp(text);
    if (t) return t.getTime();
  }
  return creationTime(session)?.getTime() ?? Number.MAX_SAFE_INTEGER;
}

/** Queue order: player sessions before unclaimed pool instances, then first come, then name. */
export function queueOrder(a: ChallengeSession, b: ChallengeSession): number {
  return Number(isUnclaimedPool(a)) - Number(isUnclaimedPool(b)) || queueTime(a) - queueTime(b) || (a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0);
}

/**
 * The decision for every waiting session (admitted sessions are not in the map). Waiting sessions
 * are taken in queue order; each is admitted while no admitted Pod of its challenge is
 * unschedulable (one challenge whose Pods cannot be placed, e.g. requests no node can hold, must
 * not stop every other challenge) and both the engine's and its challenge's caps have room, counting every live admitted session and every
 * session admitted before it in this pass. One held back by its challenge's cap does not hold
 * back sessions of other challenges (the capacity it waits for is not theirs).
 *
 * Position: 1 + `ahead`, the sessions before it in its line: for the engine's cap every
 * waiting session before it; for its challenge's cap or unschedulable Pods those of the same
 * challenge.
 */
export function decideAdmission(input: AdmissionInput): Map<string, Admission> {
  const { caps } = input;
  let running = 0;
  const perChallenge = new Map<string, number>();
  const blocked = new Set<string>();
  const waiting: ChallengeSession[] = [];
  for (const s of input.sessions) {
    if (s.metadata.deletionTimestamp) continue;
    if (isWaiting(s, input.admittedElsewhere)) {
      waiting.push(s);
      continue;
    }
    // Ended without ever being admitted (timed out, unusable Challenge): holds nothing.
    if (!isAdmittedRecord(s) && !input.admittedElsewhere?.(s)) continue;
    running++;
    perChallenge.set(s.spec.challenge, (perChallenge.get(s.spec.challenge) ?? 0) + 1);
    if (input.unschedulable.has(s.metadata.name)) blocked.add(s.spec.challenge);
  }
  waiting.sort(queueOrder);
  const out = new Map<string, Admission>();
  let queued = 0;
  const queuedOf = new Map<string, number>();
  for (const s of waiting) {
    const challenge = s.spec.challenge;
    const mine = perChallenge.get(challenge) ?? 0;
    const chalCap = caps.challenge(challenge);
    let reason: QueueReason | undefined;
    if (blocked.has(challenge)) reason = QueueReason.Unschedulable;
    else if (caps.engine !== undefined && running >= caps.engine) reason = QueueReason.EngineCap;
    else if (chalCap !== undefined && mine >= chalCap) reason = QueueReason.ChallengeCap;
    if (reason === undefined) {
      out.set(s.metadata.name, { admitted: true });
      running++;
      perChallenge.set(challenge, mine + 1);
      continue;
    }
    const sameChallenge = queuedOf.get(challenge) ?? 0;
    const ahead = reason === QueueReason.EngineCap ? queued : sameChallenge;
    out.set(s.metadata.name, { admitted: false, position: ahead + 1, ahead, reason });
    queued++;
    queuedOf.set(challenge, sameChallenge + 1);
  }
  return out;
}

/** What a queued session's status says about why it waits. */
export function queueMessage(d: Extract<Admission, { admitted: false }>, caps: { engine?: number; challenge?: number }, challenge: string): string {
  const why =
    d.reason === QueueReason.EngineCap
      ? `all ${caps.engine ?? ''} instances the engine allows are in use (CTF_MAX_INSTANCES)`
      : d.reason === QueueReason.ChallengeCap
        ? `all ${caps.challenge ?? ''} instances of challenge ${challenge} are in use (spec.maxInstances)`
        : `the cluster has no room for challenge ${challenge}: a Pod of one of its sessions cannot be scheduled`;
  return `queued: ${why}; starts when capacity frees`;
}
