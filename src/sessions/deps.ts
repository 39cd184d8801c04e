import type { Logger } from 'pino';
import type { Challenge } from '../api/challenge.js';
import type { OwnerMode } from '../api/common.js';
import { sessionOwner, type ChallengeSession, type Owner } from '../api/session.js';
import type { LiveReads } from '../kube/live-reads.js';
import type { EventRecorder } from '../kube/recorder.js';
import type { Writer } from '../kube/writes.js';
import type { Metrics } from '../metrics.js';
import type { Caches } from '../read-model/caches.js';
import { DomainError, type Caller } from './types.js';
import type { SessionWaits } from './read-your-writes.js';
import { isTeamSlotName, ownersOf, owns, TEAM_REQUIRED } from './owner.js';

/** What every part of the player domain works with: reads from the caches, writes through Writer. */
export interface PlayerDeps {
  live: LiveReads;
  caches: Caches;
  writer: Writer;
  events: EventRecorder;
  waits: SessionWaits;
  log: Logger;
  metrics: Metrics;
  flagKey: Buffer;
  /** Who owns the instances of a Challenge that does not say (spec.owner). */
  instanceOwner: OwnerMode;
  /**
   * Pool instances this replica is claiming or has just claimed, with when to forget them: its
   * concurrent spawns then try different instances instead of colliding on one (the apiserver
   * still decides every claim; this only saves the losing round trips).
   */
  claiming?: Map<string, number>;
  /** Spawns in flight on this replica by owner and challenge: a second one waits for the first and returns its session. */
  spawning?: Map<string, Promise<unknown>>;
  /** Solve events go to the webhook outbox (src/webhooks/outbox.ts). */
  webhooks?: boolean;
  now: () => Date;
}

export function challengeOf(d: Pick<PlayerDeps, 'caches'>, name: string): Challenge | undefined {
  const c = d.caches.challenge(name);
  return c?.ok ? c.value : undefined;
}

/** The owner's live sessions, from the cache's by-user or by-team index. */
export function sessionsOwnedBy(d: Pick<PlayerDeps, 'caches'>, owner: Owner): ChallengeSession[] {
  const sessions = owner.mode === 'user' ? d.caches.sessionsOfUser(owner.user) : d.caches.sessionsOfTeam(owner.team);
  return sessions.filter((s) => !s.metadata.deletionTimestamp);
}

/** The caller's live sessions: their own and their team's. */
export function ownSessions(d: Pick<PlayerDeps, 'caches'>, caller: Caller): ChallengeSession[] {
  return ownersOf(caller).flatMap((o) => sessionsOwnedBy(d, o));
}

/**
 * The session if the caller may see it; NotFound otherwise, so ids cannot be probed. A caller
 * without a team is told that a team's instance needs one (TeamRequired), for every id of a
 * team's slot name whether it exists or not, so that answer tells nothing about which exist.
 */
export function visibleSession(d: Pick<PlayerDeps, 'caches'>, caller: Caller, id: string): ChallengeSession {
  const p = d.caches.session(id);
  const s = p?.ok && !p.value.metadata.deletionTimestamp ? p.value : undefined;
  if (s && (caller.admin || owns(caller, s))) return s;
  if (!caller.admin && caller.team === undefined && ((s && sessionOwner(s)?.mode === 'team') || isTeamSlotName(id))) {
    throw new DomainError('TeamRequired', TEAM_REQUIRED);
  }
  throw new DomainError('NotFound', `session ${id} not found`);
}
