import { createHash, randomInt } from 'node:crypto';
import type { Challenge } from '../api/challenge.js';
import type { ChallengeSession, Owner, Player } from '../api/session.js';
import { isPoolSession, sameOwner, sessionOwner, sessionSchema } from '../api/session.js';
import { claimPatch, isClaimable, poolSize } from '../reconcile/pool.js';
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
  // One spawn per owner and challenge at a time on this replica; a concurrent one gets its answer.
  const key = `${owner.mode === 'user' ? `u:${owner.user}` : `t:${owner.team}`}\u0000${challengeName}`;
  const inFlight = d.spawning?.get(key) as Promise<SpawnOutcome> | undefined;
  if (inFlight) {
    const first = await inFlight.catch(() => undefined);
    if (first) return { created: false, session: first.session };
  }
  const work = spawnFor(d, maxSessionsPerOwner, caller, challenge, owner);
  if (!d.spawning) return work;
  d.spawning.set(key, work);
  try {
    return await work;
  } finally {
    if (d.spawning.get(key) === work) d.spawning.delete(key);
  }
}

async function spawnFor(d: PlayerDeps, maxSessionsPerOwner: number, caller: Caller, challenge: Challenge, owner: Owner): Promise<SpawnOutcome> {
  const challengeName = challenge.metadata.name;
  const owned = sessionsOwnedBy(d, owner);
  const existing = owned.find((s) => s.spec.challenge === challengeName);
  if (existing) return { created: false, session: existing };
  const limitReached = () => new DomainError('LimitReached', `at most ${maxSessionsPerOwner} sessions at a time${owner.mode === 'team' ? ' per team' : ''}; stop one first`);

  // Claimed pool instances hold no slot: they count against the limit here and in settle().
  const claimedCount = owned.filter(isPoolSession).length;
  if (poolSize(challenge) > 0) {
    if (owned.length >= maxSessionsPerOwner) throw limitReached();
    const claimed = await claimFromPool(d, challenge, { user: caller.user, ...(caller.team !== undefined ? { team: caller.team } : {}), owner });
    if (claimed) return settleClaim(d, claimed);
  }

  const ns = d.caches.namespace;
  const requested = d.now();
  const expiresAt = formatExpiry(initialExpiry({ lifetime: challenge.spec.lifetime }, requested));
  const taken = (slot: number) => d.caches.session(slotName(owner, slot)) !== undefined;
  for (const slot of slotsToTry(challengeName, Math.max(0, maxSessionsPerOwner - claimedCount), taken)) {
    const name = slotName(owner, slot);
    const body = desiredSession({ name, namespace: ns, challenge: challengeName, user: caller.user, team: caller.team, owner: owner.mode, expiresAt, requestedAt: requested.toISOString() });
    try {
      const stored = await d.writer.createSession(ns, body);
      d.caches.assumeSession(stored);
      const session = sessionSchema.parse(stored);
      d.log.info({ session: name, challenge: challengeName, userHash: userHash(caller.user), ...(owner.mode === 'team' ? { teamHash: teamHash(owner.team) } : {}) }, 'Created ChallengeSession');
      return await settle(d, session, maxSessionsPerOwner);
    } catch (err) {
      if (classifyError(err).kind !== 'AlreadyExists') throw err;
    }
    const occupant = await d.live.session(name);
    if (occupant && sameOwner(sessionOwner(occupant), owner) && occupant.spec.challenge === challengeName && !occupant.metadata.deletionTimestamp) {
      return { created: false, session: occupant };
    }
  }
  throw limitReached();
}

/**
 * After a create or a claim: keep it, or give way. A list of the owner's sessions at exactly the
 * write's resourceVersion holds everything written before it and nothing after, so of two
 * concurrent writers exactly the later one sees the other: it gives way to an older session of
 * the same challenge (returning that one), and to older sessions that already fill the owner's
 * limit (refusing). Giving way deletes what it wrote; a claimed pool instance is replaced by the
 * pool's refill.
 */
async function settle(d: PlayerDeps, session: ChallengeSession, limit: number): Promise<SpawnOutcome> {
  const name = session.metadata.name;
  const verdict = await settleVerdict(d, session, limit).catch((err: unknown) => {
    // Rare and harmless to skip: at worst the owner holds one session more than the limit.
    d.log.warn({ session: name, err: classifyError(err).message }, 'Could not check for a concurrent duplicate spawn');
    return undefined;
  });
  if (verdict) {
    await ignoreNotFound(d.writer.deleteSession(d.caches.namespace, name, session.metadata.uid));
    if (verdict.kind === 'over-limit') {
      d.log.info({ session: name, challenge: session.spec.challenge }, 'Deleted a session over the limit from a concurrent spawn');
      throw new DomainError('LimitReached', `at most ${limit} sessions at a time; stop one first`);
    }
    const older = verdict.older;
    d.log.info({ session: name, kept: older.metadata.name, challenge: session.spec.challenge }, 'Deleted a duplicate from a concurrent spawn');
    await d.waits.until(older.metadata.name, (c) => c !== undefined, READ_YOUR_WRITES_MS, { known: true });
    return { created: false, session: older };
  }
  // Read-your-writes: the caller's next request on this replica must find the session as written.
  const written = (c: ChallengeSession | undefined) => c !== undefined && c.metadata.uid === session.metadata.uid && sessionOwner(c) !== undefined;
  await d.waits.until(name, written, READ_YOUR_WRITES_MS, { known: true });
  return { created: true, session };
}

/**
 * After a claim: read-your-writes only. The list at an exact resourceVersion that settles a
 * create waits for the apiserver's watch cache to reach that version, which under a burst costs
 * more than the claim itself (and answers 504 when the cache lags seconds behind); a claim is
 * meant to be instant. The one race it would catch, two claims of one challenge by one owner at
 * the same moment on two replicas (each replica serialises its own through the cache), is
 * settled by the leader instead: reconcileSession deletes the later of two such claims.
 */
async function settleClaim(d: PlayerDeps, session: ChallengeSession): Promise<SpawnOutcome> {
  const name = session.metadata.name;
  await d.waits.until(name, (c) => c !== undefined && c.metadata.uid === session.metadata.uid && sessionOwner(c) !== undefined, READ_YOUR_WRITES_MS, { known: true });
  return { created: true, session };
}

type Verdict = { kind: 'older'; older: ChallengeSession } | { kind: 'over-limit' };

async function settleVerdict(d: PlayerDeps, own: ChallengeSession, limit: number): Promise<Verdict | undefined> {
  const rv = own.metadata.resourceVersion;
  const owner = sessionOwner(own);
  if (!rv || !owner) return undefined;
  const others: ChallengeSession[] = [];
  for (const s of await d.live.sessionsAt(owner, undefined, rv)) {
    if (s.metadata.uid !== own.metadata.uid && sameOwner(sessionOwner(s), owner) && !s.metadata.deletionTimestamp) others.push(s);
  }
  const older = others.find((s) => s.spec.challenge === own.spec.challenge);
  if (older) return { kind: 'older', older };
  // Slots bound spawned sessions by name; claimed instances only by this count.
  if (isPoolSession(own) && others.length >= limit) return { kind: 'over-limit' };
  return undefined;
}

/**
 * Claims a ready instance of the challenge's pool for `player`: one metadata patch over the
 * resourceVersion this replica's cache holds, which the apiserver refuses (Conflict) if anyone
 * changed the instance since, so no instance ever gets two players. Instances are tried from a
 * random start so replicas spread over the pool instead of colliding; undefined when none is
 * ready (or every try lost a race): the spawn then starts a fresh instance.
 */
async function claimFromPool(d: PlayerDeps, challenge: Challenge, player: Player): Promise<ChallengeSession | undefined> {
  const name = challenge.metadata.name;
  const claiming = d.claiming;
  const clock = Date.now();
  if (claiming) for (const [n, until] of claiming) if (until < clock) claiming.delete(n);
  // From a random start, the first few claimable instances: a claim looks at a handful, not the whole pool.
  const pool = d.caches.unclaimedPool(name);
  const start = pool.length > 0 ? randomInt(pool.length) : 0;
  let tries = 0;
  for (let i = 0; i < pool.length && tries < CLAIM_TRIES; i++) {
    const candidate = pool[(start + i) % pool.length];
    if (!candidate || claiming?.has(candidate.metadata.name) || !isClaimable(candidate, challenge)) continue;
    tries++;
    // Until this replica's cache shows the claim (won or lost), its other spawns leave it alone.
    claiming?.set(candidate.metadata.name, clock + CLAIM_MEMORY_MS);
    const now = d.now();
    const expiresAt = formatExpiry(initialExpiry({ lifetime: challenge.spec.lifetime }, now));
    try {
      const stored = await d.writer.patchSessionMetadata(d.caches.namespace, candidate.metadata.name, claimPatch(player, now, expiresAt), candidate.metadata.resourceVersion);
      d.caches.assumeSession(stored);
      d.metrics.poolClaims.inc({ challenge: name, result: 'claimed' });
      d.log.info({ session: candidate.metadata.name, challenge: name, userHash: userHash(player.user), ...(player.owner.mode === 'team' ? { teamHash: teamHash(player.owner.team) } : {}) }, 'Claimed a pool instance');
      const parsed = sessionSchema.safeParse(stored);
      return parsed.success ? parsed.data : candidate;
    } catch (err) {
      const kind = classifyError(err).kind;
      if (kind !== 'Conflict' && kind !== 'NotFound') throw err;
      d.metrics.poolClaims.inc({ challenge: name, result: 'conflict' });
    }
  }
  d.metrics.poolClaims.inc({ challenge: name, result: 'miss' });
  return undefined;
}

/** Instances one spawn tries to claim before it starts a fresh one instead. */
const CLAIM_TRIES = 3;
/** How long this replica leaves an instance it tried to claim to itself (its cache shows the claim well before). */
const CLAIM_MEMORY_MS = 10_000;
