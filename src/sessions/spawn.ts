import { createHash } from 'node:crypto';
import type { ChallengeSession } from '../api/session.js';
import { sameOwner, sessionOwner, sessionSchema } from '../api/session.js';
import { classifyError, ignoreNotFound } from '../kube/errors.js';
import { desiredSession } from '../reconcile/desired-session.js';
import { formatExpiry, initialExpiry } from '../reconcile/expiry.js';
import { teamHash, userHash } from '../reconcile/names.js';
import { challengeOf, sessionsOwnedBy, type PlayerDeps } from './deps.js';
import { ownerModeOf, slotName, spawnOwner } from './owner.js';
import { READ_YOUR_WRITES_MS } from './read-your-writes.js';
import { DomainError, type Caller } from './types.js';

/**
 * Spawning arbitrates the per-owner limit through the apiserver: an owner's sessions (a user's,
 * or a team's for a challenge played by teams) are named by slotName(owner, slot) with
 * slot < limit, so at most `limit` can exist at once whatever the number of replicas, and slots
 * are probed in an order derived from the challenge so concurrent spawns of one challenge by one
 * owner (one user, or any members of one team) collide on the same name and the loser returns
 * the winner's session (idempotent spawn). When a stop frees a slot in between, two spawns of one
 * challenge can land in different slots; each creator then reads the owner's sessions exactly as
 * they were at its own create's resourceVersion, and whoever finds an older one of the same
 * challenge there deletes its own and returns the older one.
 */

/** The name of a user's session in `slot`. */
export function sessionName(user: string, slot: number): string {
  return slotName({ mode: 'user', user }, slot);
}

/** The order in which a spawn of `challenge` probes the owner's slots. */
export function slotOrder(challenge: string, slots: number): number[] {
  const start = createHash('sha256').update(challenge).digest().readUInt32BE(0) % slots;
  return Array.from({ length: slots }, (_, i) => (start + i) % slots);
}

/**
 * Slots in the order to try: the challenge's order, slots this replica's cache shows taken last
 * rather than skipped (the cache may lag a stop; the apiserver's answer to the create decides).
 */
export function slotsToTry(challenge: string, slots: number, taken: (slot: number) => boolean): number[] {
  const order = slotOrder(challenge, slots);
  return [...order.filter((s) => !taken(s)), ...order.filter(taken)];
}

export type SpawnOutcome = { created: boolean; session: ChallengeSession };

export async function spawnSession(d: PlayerDeps, maxSessionsPerOwner: number, caller: Caller, challengeName: string): Promise<SpawnOutcome> {
  const challenge = challengeOf(d, challengeName);
  if (!challenge || !challenge.spec.enabled) throw new DomainError('NotFound', `challenge ${challengeName} not found`);
  const owner = spawnOwner(caller, ownerModeOf(challenge, d.instanceOwner));
  const existing = sessionsOwnedBy(d, owner).find((s) => s.spec.challenge === challengeName);
  if (existing) return { created: false, session: existing };

  const ns = d.caches.namespace;
  const requested = d.now();
  const expiresAt = formatExpiry(initialExpiry({ lifetime: challenge.spec.lifetime }, requested));
  const taken = (slot: number) => d.caches.session(slotName(owner, slot)) !== undefined;
  for (const slot of slotsToTry(challengeName, maxSessionsPerOwner, taken)) {
    const name = slotName(owner, slot);
    const body = desiredSession({ name, namespace: ns, challenge: challengeName, user: caller.user, team: caller.team, owner: owner.mode, expiresAt, requestedAt: requested.toISOString() });
    try {
      const session = sessionSchema.parse(await d.writer.createSession(ns, body));
      d.log.info({ session: name, challenge: challengeName, userHash: userHash(caller.user), ...(owner.mode === 'team' ? { teamHash: teamHash(owner.team) } : {}) }, 'Created ChallengeSession');
      return await settleDuplicate(d, session);
    } catch (err) {
      if (classifyError(err).kind !== 'AlreadyExists') throw err;
    }
    const occupant = await d.live.session(name);
    if (occupant && sameOwner(sessionOwner(occupant.spec), owner) && occupant.spec.challenge === challengeName && !occupant.metadata.deletionTimestamp) {
      return { created: false, session: occupant };
    }
  }
  throw new DomainError('LimitReached', `at most ${maxSessionsPerOwner} sessions at a time${owner.mode === 'team' ? ' per team' : ''}; stop one first`);
}

/** After a create: keep it, or give way to an older concurrent spawn of the same challenge. */
async function settleDuplicate(d: PlayerDeps, session: ChallengeSession): Promise<SpawnOutcome> {
  const name = session.metadata.name;
  const older = await olderDuplicate(d, session).catch((err: unknown) => {
    // Rare and harmless to skip: at worst the owner holds two sessions of one challenge.
    d.log.warn({ session: name, err: classifyError(err).message }, 'Could not check for a concurrent duplicate spawn');
    return undefined;
  });
  if (older) {
    await ignoreNotFound(d.writer.deleteSession(d.caches.namespace, name, session.metadata.uid));
    d.log.info({ session: name, kept: older.metadata.name, challenge: session.spec.challenge }, 'Deleted a duplicate from a concurrent spawn');
    await d.waits.until(older.metadata.name, (c) => c !== undefined, READ_YOUR_WRITES_MS, { known: true });
    return { created: false, session: older };
  }
  // Read-your-writes: the caller's next request on this replica must find the session.
  await d.waits.until(name, (c) => c?.metadata.uid === session.metadata.uid, READ_YOUR_WRITES_MS, { known: true });
  return { created: true, session };
}

/**
 * Another live session of the same owner and challenge that existed when `own` was created:
 * a list at exactly the create's resourceVersion holds everything created before it and
 * nothing after, so of two concurrent creators exactly the later one finds the other.
 */
async function olderDuplicate(d: PlayerDeps, own: ChallengeSession): Promise<ChallengeSession | undefined> {
  const rv = own.metadata.resourceVersion;
  if (!rv) return undefined;
  const owner = sessionOwner(own.spec);
  for (const s of await d.live.sessionsAt(owner, own.spec.challenge, rv)) {
    if (s.metadata.uid !== own.metadata.uid && sameOwner(sessionOwner(s.spec), owner) && s.spec.challenge === own.spec.challenge && !s.metadata.deletionTimestamp) return s;
  }
  return undefined;
}
