import { ANNOTATION_EXPIRES_AT } from '../api/group.js';
import type { ChallengeSession } from '../api/session.js';
import { classifyError } from '../kube/errors.js';
import { isAdmittedRecord } from '../reconcile/admission.js';
import { effectiveRuntime } from '../reconcile/runtime.js';
import { extendedExpiry, formatExpiry } from '../reconcile/expiry.js';
import { challengeOf, visibleSession, type PlayerDeps } from './deps.js';
import { owns } from './owner.js';
import { DomainError, type Caller } from './types.js';

/** A session's lifetime as players change it: stop now, or extend up to the maximum. */

export async function stopSession(d: PlayerDeps, caller: Caller, id: string): Promise<void> {
  const s = visibleSession(d, caller, id);
  try {
    await d.writer.deleteSession(d.caches.namespace, id, s.metadata.uid);
  } catch (err) {
    const kind = classifyError(err).kind;
    if (kind === 'NotFound' || kind === 'Conflict') throw new DomainError('NotFound', `session ${id} not found`);
    throw err;
  }
  d.metrics.sessionsEnded.inc({ reason: 'deleted' });
  d.log.info({ session: id, byAdmin: caller.admin && !owns(caller, s) }, 'Deleted ChallengeSession');
  await d.waits.untilWritten(id, s.metadata.uid, (c) => c.metadata.deletionTimestamp !== undefined);
}

/** Moves the expiry over the resourceVersion just read; returns the session and its new expiry. */
export async function extendSession(d: PlayerDeps, caller: Caller, id: string): Promise<{ session: ChallengeSession; expiresAt: string }> {
  visibleSession(d, caller, id);
  for (let attempt = 0; attempt < 5; attempt++) {
    const live = await d.live.session(id);
    if (!live || live.metadata.deletionTimestamp || (!caller.admin && !owns(caller, live))) throw new DomainError('NotFound', `session ${id} not found`);
    const eff = effectiveRuntime(live, challengeOf(d, live.spec.challenge));
    if (!eff) throw new DomainError('Invalid', `challenge ${live.spec.challenge} no longer exists`);
    // Its lifetime starts at admission, which sets the expiry afresh: an extension now would be lost.
    if (live.status?.phase === 'Queued' && !isAdmittedRecord(live)) {
      d.metrics.extensions.inc({ result: 'refused' });
      throw new DomainError('Queued', 'the session is still queued; its lifetime starts when it starts, so there is nothing to extend yet');
    }
    const next = extendedExpiry(live, eff.runtime, d.now());
    if ('error' in next) {
      d.metrics.extensions.inc({ result: 'refused' });
      throw new DomainError('MaxLifetime', next.error === 'Expired' ? 'the session has expired' : 'the session is already at its maximum lifetime');
    }
    try {
      const expiresAt = formatExpiry(next.at);
      d.caches.assumeSession(await d.writer.patchSessionMetadata(d.caches.namespace, id, { metadata: { annotations: { [ANNOTATION_EXPIRES_AT]: expiresAt } } }, live.metadata.resourceVersion));
      d.metrics.extensions.inc({ result: 'extended' });
      d.log.info({ session: id, expiresAt }, 'Extended ChallengeSession');
      await d.waits.untilWritten(id, live.metadata.uid, (c) => c.metadata.annotations?.[ANNOTATION_EXPIRES_AT] === expiresAt);
      return { session: live, expiresAt };
    } catch (err) {
      const kind = classifyError(err).kind;
      // Deleted (stopped or expired) between the read and the write.
      if (kind === 'NotFound') throw new DomainError('NotFound', `session ${id} not found`);
      if (kind !== 'Conflict') throw err;
    }
  }
  throw new DomainError('Unavailable', 'the session is changing too fast; try again');
}
