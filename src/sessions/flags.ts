import type { ChallengeSession } from '../api/session.js';
import type { ApiStatusField } from '../api/session.js';
import { classifyError } from '../kube/errors.js';
import { sessionRef } from '../kube/writes.js';
import { effectiveRuntime } from '../reconcile/runtime.js';
import { formatTimestamp } from '../reconcile/expiry.js';
import { userHash } from '../reconcile/names.js';
import { EventReason } from '../reconcile/reasons.js';
import { flagForSession, verifyFlag } from '../flags/derive.js';
import { challengeOf, ownSessions, visibleSession, type PlayerDeps } from './deps.js';
import type { FlagIndex } from './flag-index.js';
import { DomainError, type Caller, type FlagResult, type FlagTarget } from './types.js';

/**
 * Flag submissions: verify against the caller's own session, record the first solve, and report
 * a flag that belongs to another user's session as suspected sharing.
 */
export async function submitFlag(d: PlayerDeps, flags: FlagIndex, caller: Caller, target: FlagTarget, flag: string): Promise<FlagResult> {
  let own: ChallengeSession | undefined;
  let challengeName: string;
  if ('sessionId' in target) {
    own = visibleSession(d, { ...caller, admin: false }, target.sessionId);
    challengeName = own.spec.challenge;
  } else {
    challengeName = target.challenge;
    if (!challengeOf(d, challengeName)) throw new DomainError('NotFound', `challenge ${challengeName} not found`);
    own = ownSessions(d, caller).find((s) => s.spec.challenge === challengeName);
  }
  const correct = own ? await isSessionFlag(d, flags, own, flag) : false;
  if (correct && own) {
    d.metrics.flagSubmissions.inc({ result: 'correct' });
    // Already solved as far as the cache knows: nothing to read or write.
    if (!own.status?.solved) await recordSolve(d, own);
    return { correct: true };
  }
  const owner = flags.ownerOf(challengeName, flag);
  if (owner && owner.spec.user !== caller.user) {
    d.metrics.flagSubmissions.inc({ result: 'shared' });
    d.metrics.flagSharing.inc();
    d.log.warn({ challenge: challengeName, flagOwnerSession: owner.metadata.name, submitterSession: own?.metadata.name, submitterHash: userHash(caller.user) }, 'Suspected flag sharing');
    const message = `User ${caller.user}${own ? ` (session ${own.metadata.name})` : ''} submitted the flag of session ${owner.metadata.name} (user ${owner.spec.user})`;
    d.events.warning(sessionRef(owner), EventReason.FlagShared, message, own ? sessionRef(own) : undefined);
  } else {
    d.metrics.flagSubmissions.inc({ result: 'wrong' });
  }
  return { correct: false };
}

async function isSessionFlag(d: PlayerDeps, flags: FlagIndex, s: ChallengeSession, flag: string): Promise<boolean> {
  const eff = effectiveRuntime(s, challengeOf(d, s.spec.challenge));
  if (!eff || !s.metadata.uid) return false;
  if (eff.runtime.flag.dynamic) return verifyFlag(flagForSession(d.flagKey, s, eff.runtime) ?? '', flag);
  const ref = eff.runtime.flag.static?.secretRef;
  if (!ref) return false;
  const expected = await flags.staticFlag(d.live, ref.name, ref.key);
  return expected !== undefined && verifyFlag(expected, flag);
}

/**
 * Records the first solve in the API's status members, over the resourceVersion just read; a
 * conflict means someone else wrote first, so read again and retry.
 */
async function recordSolve(d: PlayerDeps, s: ChallengeSession): Promise<void> {
  const name = s.metadata.name;
  for (let attempt = 0; attempt < 5; attempt++) {
    const live = await d.live.session(name);
    if (!live || live.status?.solved) return;
    const solve: Record<ApiStatusField, unknown> = { solved: true, solvedAt: formatTimestamp(d.now()) };
    try {
      await d.writer.patchSessionStatus(d.caches.namespace, name, solve, live.metadata.resourceVersion);
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
