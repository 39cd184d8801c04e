import type { OwnerMode } from '../api/common.js';
import type { Challenge } from '../api/challenge.js';
import { sessionOwner, type ChallengeSession, type Owner } from '../api/session.js';
import { teamHash, userHash } from '../reconcile/names.js';
import { DomainError, type Caller } from './types.js';

/**
 * Who owns an instance and who may use it. A user-owned session belongs to the user who started
 * it; a team-owned one to every caller whose token names the same team. The owner also names
 * the session: a user's slots are s-<user hash>-<slot> (as before teams, so existing sessions
 * keep their names), a team's t-<team hash>-<slot>. The different first letter keeps users and
 * teams apart even when a user id equals a team id, so neither can take the other's slots.
 */

export const TEAM_REQUIRED = 'this challenge is played by teams; your token has no team';

/** How a challenge is played: its own spec.owner, else the engine's default. */
export function ownerModeOf(challenge: Challenge, fallback: OwnerMode): OwnerMode {
  return challenge.spec.owner ?? fallback;
}

/** The owner of what `caller` spawns of a challenge played in `mode`; TeamRequired without a team. */
export function spawnOwner(caller: Caller, mode: OwnerMode): Owner {
  if (mode === 'user') return { mode, user: caller.user };
  if (caller.team === undefined) throw new DomainError('TeamRequired', TEAM_REQUIRED);
  return { mode, team: caller.team };
}

/** The owners whose sessions `caller` uses: the caller, and their team when the token names one. */
export function ownersOf(caller: Caller): Owner[] {
  return [{ mode: 'user', user: caller.user }, ...(caller.team === undefined ? [] : [{ mode: 'team' as const, team: caller.team }])];
}

/** Whether `caller` owns the session or is a member of the team that does (admin rights aside). */
export function owns(caller: Caller, s: Pick<ChallengeSession, 'spec' | 'metadata'>): boolean {
  const o = sessionOwner(s);
  if (!o) return false;
  return o.mode === 'user' ? o.user === caller.user : o.team === caller.team;
}

export function slotPrefix(owner: Owner): string {
  return owner.mode === 'user' ? `s-${userHash(owner.user)}-` : `t-${teamHash(owner.team)}-`;
}

/** The name of the owner's session in `slot`: at most `limit` of them can exist at once. */
export function slotName(owner: Owner, slot: number): string {
  return `${slotPrefix(owner)}${slot}`;
}

const TEAM_SLOT_NAME = /^t-[0-9a-f]{16}-[0-9]+$/;

/** Whether `id` has the form of a team's slot name. */
export function isTeamSlotName(id: string): boolean {
  return TEAM_SLOT_NAME.test(id);
}
