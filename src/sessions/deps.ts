import type { Logger } from 'pino';
import type { Challenge } from '../api/challenge.js';
import type { ChallengeSession } from '../api/session.js';
import type { LiveReads } from '../kube/live-reads.js';
import type { EventRecorder } from '../kube/recorder.js';
import type { Writer } from '../kube/writes.js';
import type { Metrics } from '../metrics.js';
import type { Caches } from '../read-model/caches.js';
import { DomainError, type Caller } from './types.js';
import type { SessionWaits } from './read-your-writes.js';

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
  now: () => Date;
}

export function challengeOf(d: Pick<PlayerDeps, 'caches'>, name: string): Challenge | undefined {
  const c = d.caches.challenge(name);
  return c?.ok ? c.value : undefined;
}

/** The caller's live sessions, from the cache's by-user index. */
export function ownSessions(d: Pick<PlayerDeps, 'caches'>, caller: Caller): ChallengeSession[] {
  return d.caches.sessionsOfUser(caller.user).filter((s) => !s.metadata.deletionTimestamp);
}

/** The session if the caller may see it; NotFound otherwise, so ids cannot be probed. */
export function visibleSession(d: Pick<PlayerDeps, 'caches'>, caller: Caller, id: string): ChallengeSession {
  const p = d.caches.session(id);
  if (!p?.ok || (!caller.admin && p.value.spec.user !== caller.user) || p.value.metadata.deletionTimestamp) {
    throw new DomainError('NotFound', `session ${id} not found`);
  }
  return p.value;
}

