import { sameOwner, sessionOwner, type ApiStatusField, type ChallengeSession } from '../api/session.js';
import { classifyError } from '../kube/errors.js';
import { sessionRef } from '../kube/writes.js';
import { effectiveRuntime } from '../reconcile/runtime.js';
import { formatTimestamp } from '../reconcile/expiry.js';
import { teamHash, userHash } from '../reconcile/names.js';
import { EventReason } from '../reconcile/reasons.js';
import { verifyFlag } from '../flags/derive.js';
import { challengeOf, ownSessions, visibleSession, type PlayerDeps } from './deps.js';
import type { FlagIndex } from './flag-index.js';
import { ownerModeOf, owns, spawnOwner } from './owner.js';
import { DomainError, type Caller, type FlagResult, type FlagTarget } from './types.js';
import { recordEvent } from '../webhooks/outbox.js';
import { solveEvent } from '../webhooks/events.js';

/**
 * Flag submissions: verify against the caller's own session (theirs, or their team's), record the
 * first solve, and report a flag that belongs to a session the caller does not own (another
 * user's, or another team's) as suspected sharing.
 */
export async function submitFlag(d: PlayerDeps, flags: FlagIndex, caller: Caller, target: FlagTarget, flag: string): Promise<FlagResult> {
  let own: ChallengeSession | undefined;
  let challengeName: string;
  if ('sessionId' in target) {
    own = visibleSession(d, { ...caller, admin: false }, target.sessionId);
    challengeName = own.spec.challenge;
  } else {
    challengeName = target.challenge;
    const challenge = challengeOf(d, challengeName);
    if (!challenge) throw new DomainError('NotFound', `challenge ${challengeName} not found`);
    const owner = spawnOwner(caller, ownerModeOf(challenge, d.instanceOwner));
    const mine = ownSessions(d, caller).filter((s) => s.spec.challenge === challengeName);
    // The session of the challenge's owner mode first; one from before its owner changed after.
    own = mine.find((s) => sameOwner(sessionOwner(s), owner)) ?? mine[0];
  }
  const correct = own ? await isSessionFlag(d, flags, own, flag) : false;
  if (correct && own) {
    d.metrics.flagSubmissions.inc({ result: 'correct' });
    // Already solved as far as the cache knows: nothing to read or write.
    if (!own.status?.solved) await recordSolve(d, own, caller);
    return { correct: true };
  }
  const flagSession = flags.ownerOf(challengeName, flag);
  if (flagSession && !owns(caller, flagSession)) {
    d.metrics.flagSubmissions.inc({ result: 'shared' });
    d.metrics.flagSharing.inc();
    const byTeam = sessionOwner(flagSession)?.mode === 'team';
    d.log.warn(
      { challenge: challengeName, flagOwnerSession: flagSession.metadata.name, submitterSession: own?.metadata.name, submitterHash: userHash(caller.user), ...(byTeam && caller.team !== undefined ? { submitterTeamHash: teamHash(caller.team) } : {}) },
      'Suspected flag sharing',
    );
    d.events.warning(sessionRef(flagSession), EventReason.FlagShared, sharingMessage(caller, own, flagSession), own ? sessionRef(own) : undefined);
  } else {
    d.metrics.flagSubmissions.inc({ result: 'wrong' });
  }
  return { correct: false };
}

/** The FlagShared Event's message: who submitted the flag of which session, and whose it is. */
function sharingMessage(caller: Caller, own: ChallengeSession | undefined, flagSession: ChallengeSession): string {
  const owner = sessionOwner(flagSession);
  const submitter = `User ${caller.user}${owner?.mode === 'team' ? (caller.team === undefined ? ' (no team)' : ` of team ${caller.team}`) : ''}`;
  const whose = !owner ? 'an unclaimed pool instance' : owner.mode === 'team' ? `team ${owner.team}` : `user ${owner.user}`;
  return `${submitter}${own ? ` (session ${own.metadata.name})` : ''} submitted the flag of session ${flagSession.metadata.name} (${whose})`;
}

async function isSessionFlag(d: PlayerDeps, flags: FlagIndex, s: ChallengeSession, flag: string): Promise<boolean> {
  const eff = effectiveRuntime(s, challengeOf(d, s.spec.challenge));
  if (!eff || !s.metadata.uid) return false;
  if (eff.runtime.flag.dynamic) return verifyFlag(flags.dynamicFlag(s, eff.runtime) ?? '', flag);
  const ref = eff.runtime.flag.static?.secretRef;
  if (!ref) return false;
  const expected = await flags.staticFlag(d.live, ref.name, ref.key);
  return expected !== undefined && verifyFlag(expected, flag);
}

/**
 * Records the first solve in the API's status members, over the resourceVersion just read; a
 * conflict means someone else wrote first, so read again and retry.
 */
async function recordSolve(d: PlayerDeps, s: ChallengeSession, caller: Caller): Promise<void> {
  const name = s.metadata.name;
  for (let attempt = 0; attempt < 5; attempt++) {
    const live = await d.live.session(name);
    if (!live || live.status?.solved) return;
    const solvedAt = formatTimestamp(d.now());
    const solvedBy = { user: caller.user, ...(caller.team !== undefined ? { team: caller.team } : {}) };
    const solve: Record<ApiStatusField, unknown> = { solved: true, solvedAt, solvedBy };
    try {
      await d.writer.patchSessionStatus(d.caches.namespace, name, solve, live.metadata.resourceVersion);
      // The scoreboard's event, in the cluster before the player hears "correct": it is
      // delivered (and retried) by the leader even if the session ends at once. Should this
      // replica stop right here, the leader finds the solve without its event and records it.
      if (d.webhooks) await recordEvent(d.writer, d.caches.namespace, solveEvent(live, solvedBy, solvedAt));
      d.metrics.solves.inc({ challenge: s.spec.challenge });
      d.log.info({ session: name, challenge: s.spec.challenge }, 'Solved');
      await d.waits.untilWritten(name, live.metadata.uid, (c) => c.status?.solved === true);
      return;
    } catch (err) {
      const kind = classifyError(err).kind;
      if (kind === 'NotFound') {
        // The flag was right; the session ended (stopped or expired) before the solve was stored.
        d.log.warn({ session: name }, 'Solve not recorded: the session is gone');
        return;
      }
      if (kind !== 'Conflict') throw err;
    }
  }
}
