import { createHash, randomBytes } from 'node:crypto';
import { ANNOTATION_CLAIMED_AT, ANNOTATION_CLAIMED_OWNER, ANNOTATION_CLAIMED_TEAM, ANNOTATION_CLAIMED_USER, ANNOTATION_EXPIRES_AT, API_VERSION, SESSION_KIND } from '../api/group.js';
import type { Challenge } from '../api/challenge.js';
import { isUnclaimedPool, type ChallengeSession, type Player } from '../api/session.js';
import { canonicalJson } from './canonical.js';
import type { SessionBody } from './desired-session.js';
import { sessionLabels, playerLabels } from './labels.js';
import { provisionedFromOf, runtimeOf } from './runtime.js';

/**
 * Warm pools, the pure part: what a pool instance looks like, which one a spawn may claim, what a
 * claim writes, and what the controller must create or delete to keep a Challenge's pool at
 * spec.pool.size. A pool instance is a ChallengeSession with spec.pool and no player; claiming it
 * is one metadata patch over the resourceVersion the claimer read, so of two claims of one
 * instance (any replicas) the apiserver accepts exactly one.
 */

/** The pool size a Challenge asks for: 0 when it has none or is disabled. */
export function poolSize(challenge: Challenge | undefined): number {
  if (!challenge || !challenge.spec.enabled) return 0;
  return challenge.spec.pool?.size ?? 0;
}

/** The prefix of the names of a challenge's pool instances: p-<challenge hash>-. */
export function poolPrefix(challenge: string): string {
  return `p-${createHash('sha256').update(challenge).digest('hex').slice(0, 8)}-`;
}

/** A fresh pool instance name: the prefix and 60 random bits (base32), 23 characters. */
export function poolInstanceName(challenge: string, random: () => Buffer = () => randomBytes(12)): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  let suffix = '';
  for (const byte of random().subarray(0, 12)) suffix += alphabet[byte & 31];
  return `${poolPrefix(challenge)}${suffix}`;
}

const POOL_NAME = /^p-[0-9a-f]{8}-[a-z2-7]{1,12}$/;

/** Whether `id` has the form of a pool instance's name. */
export function isPoolName(id: string): boolean {
  return POOL_NAME.test(id);
}

/** The ChallengeSession of a new pool instance: no player, no expiry, the pool label. */
export function desiredPoolInstance(name: string, namespace: string | undefined, challenge: string): SessionBody {
  const spec = { challenge, pool: true };
  return {
    apiVersion: API_VERSION,
    kind: SESSION_KIND,
    metadata: { name, ...(namespace ? { namespace } : {}), labels: sessionLabels({ metadata: { name }, spec }), annotations: {} },
    spec,
  };
}

const challengeFingerprints = new WeakMap<object, string>();
const snapshotFingerprints = new WeakMap<object, string>();

/** The Challenge's runtime as canonical JSON (memoized per cached object): what an instance runs. */
export function challengeFingerprint(challenge: Challenge): string {
  let hit = challengeFingerprints.get(challenge);
  if (hit === undefined) {
    hit = canonicalJson(runtimeOf(challenge.spec));
    challengeFingerprints.set(challenge, hit);
  }
  return hit;
}

/** The runtime a session was provisioned from as canonical JSON; undefined before it is provisioned. */
export function instanceFingerprint(session: Pick<ChallengeSession, 'status'>): string | undefined {
  const snapshot = provisionedFromOf(session);
  if (!snapshot) return undefined;
  let hit = snapshotFingerprints.get(snapshot);
  if (hit === undefined) {
    hit = canonicalJson(snapshot.runtime);
    snapshotFingerprints.set(snapshot, hit);
  }
  return hit;
}

/**
 * Whether an unclaimed instance was built from what the Challenge runs now. One not provisioned
 * yet will be built from the current Challenge, so it is current too. Editing only the
 * catalogue (title, points) or the pool size leaves instances current.
 */
export function isCurrent(session: ChallengeSession, challenge: Challenge): boolean {
  const own = instanceFingerprint(session);
  return own === undefined || own === challengeFingerprint(challenge);
}

/** Whether a spawn may claim `session` now: an unclaimed, current, live instance that is Running and ready. */
export function isClaimable(session: ChallengeSession, challenge: Challenge): boolean {
  if (!isUnclaimedPool(session) || session.metadata.deletionTimestamp) return false;
  if (session.status?.phase !== 'Running' || instanceFingerprint(session) === undefined) return false;
  const ready = session.status.conditions?.find((c) => c.type === 'Ready');
  return ready?.status === 'True' && isCurrent(session, challenge);
}

/**
 * The one write of a claim: the player's labels (so label-selected reads find the session among
 * theirs) and the claim annotations, with the expiry counted from the claim. `claimedAt` keeps
 * its milliseconds: it also seeds the instance's public hosts.
 */
export function claimPatch(player: Player, claimedAt: Date, expiresAt: string): { metadata: { labels: Record<string, string>; annotations: Record<string, string> } } {
  return {
    metadata: {
      labels: playerLabels(player),
      annotations: {
        [ANNOTATION_CLAIMED_USER]: player.user,
        ...(player.team !== undefined ? { [ANNOTATION_CLAIMED_TEAM]: player.team } : {}),
        [ANNOTATION_CLAIMED_OWNER]: player.owner.mode,
        [ANNOTATION_CLAIMED_AT]: claimedAt.toISOString(),
        [ANNOTATION_EXPIRES_AT]: expiresAt,
      },
    },
  };
}

export interface PoolPlan {
  /** How many instances to create. */
  create: number;
  /** Unclaimed instances to delete: stale ones (the Challenge changed), then surplus ones. */
  remove: ChallengeSession[];
}

/**
 * What keeps a pool at its size: every unclaimed instance that is not current goes (claimed ones
 * are the players' and are never touched); then current ones beyond the size go, those not ready
 * first and the newest first; and the shortfall is created, at most `maxCreate` at a time so a
 * refill never floods the apiserver ahead of the players' own writes. `pendingCreates`: instances
 * this controller created that its cache does not show yet (they count as current).
 */
export function planPool(challenge: Challenge | undefined, unclaimed: ChallengeSession[], maxCreate: number, pendingCreates = 0): PoolPlan {
  const size = Math.max(0, poolSize(challenge) - pendingCreates);
  const live = unclaimed.filter((s) => !s.metadata.deletionTimestamp);
  const stale = challenge ? live.filter((s) => !isCurrent(s, challenge)) : live;
  const current = challenge ? live.filter((s) => isCurrent(s, challenge)) : [];
  const surplus = Math.max(0, current.length - size);
  const readyFirst = [...current].sort((a, b) => rank(a) - rank(b) || String(a.metadata.creationTimestamp ?? '').localeCompare(String(b.metadata.creationTimestamp ?? '')) || a.metadata.name.localeCompare(b.metadata.name));
  const remove = [...stale, ...readyFirst.slice(readyFirst.length - surplus)];
  return { create: Math.min(Math.max(0, size - current.length), maxCreate), remove };
}

/** 0 for a ready instance, 1 otherwise: surplus is trimmed from the end, so not-ready ones go first. */
function rank(s: ChallengeSession): number {
  return s.status?.phase === 'Running' ? 0 : 1;
}
