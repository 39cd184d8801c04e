import { parseDuration } from '../api/duration.js';
import type { Challenge } from '../api/challenge.js';
import type { OwnerMode } from '../api/common.js';
import { claimedAt, sessionPlayer, type ChallengeSession } from '../api/session.js';
import { effectiveRuntime } from '../reconcile/runtime.js';
import { effectiveExpiry, formatExpiry } from '../reconcile/expiry.js';
import { ownerModeOf } from './owner.js';
import type { CatalogueEntry, SessionView } from './types.js';

/** What players see of challenges and sessions: pure functions of the cached objects. */

/** `instanceOwner`: the owner of instances of Challenges that do not name one. */
export function catalogueEntries(challenges: Challenge[], instanceOwner: OwnerMode): CatalogueEntry[] {
  return challenges
    .filter((c) => c.spec.enabled)
    .map((c) => ({
      name: c.metadata.name,
      title: c.spec.title,
      description: c.spec.description,
      category: c.spec.category,
      points: c.spec.points,
      tags: c.spec.tags,
      protocols: [...new Set(c.spec.expose.map((e) => e.protocol))],
      lifetimeSeconds: (parseDuration(c.spec.lifetime.default) ?? 0) / 1000,
      maxLifetimeSeconds: (parseDuration(c.spec.lifetime.max) ?? 0) / 1000,
      owner: ownerModeOf(c, instanceOwner),
    }))
    .sort((a, b) => a.category.localeCompare(b.category) || a.points - b.points || a.name.localeCompare(b.name));
}

/**
 * Whether a session is done starting: ready (Running), failed or expired. What both long polls
 * (one session, the list) wait for; Pending and Provisioning are still starting.
 */
export function hasSettled(view: Pick<SessionView, 'phase'>): boolean {
  return view.phase === 'Running' || view.phase === 'Failed' || view.phase === 'Expired';
}

/** `queue`: the session's place in the queue while it waits (QueuePositions.place). */
export function sessionView(s: ChallengeSession, challenge: Challenge | undefined, now: Date, queue?: SessionView['queue']): SessionView {
  const ready = s.status?.conditions?.find((c) => c.type === 'Ready');
  const claim = claimedAt(s);
  const view: SessionView = {
    id: s.metadata.name,
    challenge: s.spec.challenge,
    ...playerFields(s),
    phase: queue ? 'Queued' : (s.status?.phase ?? 'Pending'),
    ready: s.status?.phase === 'Running',
    reason: ready?.reason,
    message: ready?.message,
    // A claimed pool instance was created before its player asked: it is theirs from the claim.
    createdAt: claim ?? String(s.metadata.creationTimestamp ?? ''),
    expiresAt: formatExpiry(effectiveExpiry(s, effectiveRuntime(s, challenge)?.runtime, now)),
    endpoints: s.status?.endpoints ?? [],
    solved: s.status?.solved ?? false,
    solvedAt: s.status?.solvedAt,
    ...(queue ? { queue } : {}),
  };
  // A just-claimed pool instance runs already, but its ingress, routes and public hosts are the
  // controller's to publish: until its status reflects the claim, it is still starting.
  if (claim !== undefined && s.status?.claimedAt !== claim) {
    return { ...view, phase: 'Provisioning', ready: false, reason: 'Claimed', message: 'publishing your instance', endpoints: [] };
  }
  return view;
}

function playerFields(s: ChallengeSession): Pick<SessionView, 'user' | 'team' | 'owner'> {
  const player = sessionPlayer(s);
  return { user: player?.user ?? '', ...(player?.team !== undefined ? { team: player.team } : {}), owner: player?.owner.mode ?? 'user' };
}
