import { formatDuration } from '../api/duration.js';
import { ANNOTATION_EXPIRES_AT } from '../api/group.js';
import type { ChallengeSession } from '../api/session.js';
import { classifyError } from '../kube/errors.js';
import { queueMessage, queueTime } from '../reconcile/admission.js';
import { formatExpiry, initialExpiry } from '../reconcile/expiry.js';
import { Reason } from '../reconcile/reasons.js';
import type { ChallengeRuntime } from '../reconcile/runtime.js';
import type { StatusInput } from '../reconcile/status.js';
import type { AdmissionTracker } from './admission-tracker.js';
import type { ReconcileContext } from './reconcile-session.js';

/**
 * The queue's step of a reconcile, before any child exists: admit the session, or say why it
 * waits (and until when), or end its wait. Only the leader runs it, so admissions have one writer.
 */

export interface QueueSettings {
  tracker: AdmissionTracker;
  /** CTF_QUEUE_TIMEOUT. */
  timeoutMs: number;
}

export type GateResult =
  /** Go on to the children; `admittedAt` goes into the status, `expiresAt` is the (new) expiry. */
  | { admitted: true; admittedAt: string; expiresAt: Date | undefined }
  /** Write `queue` as the status and look again after `retryMs`. */
  | { admitted: false; queue?: NonNullable<StatusInput['queue']>; retryMs: number; timedOut?: boolean };

/** How soon to retry an admission whose expiry write lost a race (an extension, say). */
const CONFLICT_RETRY_MS = 100;


/** `expiresAt`: undefined for an unclaimed pool instance, whose lifetime starts at its claim. */
export async function admissionGate(ctx: ReconcileContext, q: QueueSettings, session: ChallengeSession, runtime: ChallengeRuntime, expiresAt: Date | undefined): Promise<GateResult> {
  const now = ctx.now();
  const waited = Math.max(0, now.getTime() - queueTime(session));
  const name = session.metadata.name;
  const again = q.tracker.admitting(name);
  const d = q.tracker.decide(session);
  // Where capacity is contended, spawns requested just before this one may still be on their
  // way to the cache (concurrent creates land in any order); first come means they go first.
  const settle = d.admitted && !again && q.tracker.contended(session) ? q.tracker.settleMs() : 0;
  if (waited < settle) return { admitted: false, retryMs: settle - waited };
  const admittedAt = q.tracker.admittedAtOf(name) ?? now.toISOString();
  if (d.admitted && !again) q.tracker.markAdmitted(name, admittedAt);
  if (!d.admitted) {
    const left = q.timeoutMs - waited;
    // A warm spare waits as long as it takes: it is nobody's, and only players' spawns time out.
    if (left <= 0 && expiresAt !== undefined) {
      return {
        admitted: false,
        timedOut: true,
        retryMs: 0,
        queue: { phase: 'Failed', reason: Reason.QueueTimeout, message: `waited ${formatDuration(waited)} in the queue (CTF_QUEUE_TIMEOUT ${formatDuration(q.timeoutMs)}) and never started; stop it and start again later` },
      };
    }
    const caps = { engine: q.tracker.maxInstances, challenge: q.tracker.challengeCap(session.spec.challenge) };
    return { admitted: false, retryMs: left > 0 ? left : q.timeoutMs, queue: { phase: 'Queued', reason: d.reason, message: queueMessage(d, caps, session.spec.challenge) } };
  }
  let expiry = expiresAt;
  if (session.status?.phase === 'Queued' && expiry !== undefined) {
    // The lifetime starts now: the annotation (the expiry's one source of truth) moves, over the
    // resourceVersion read, so an extension or a stop in between wins and this is looked at again.
    expiry = initialExpiry({ lifetime: runtime.lifetime }, now);
    try {
      await ctx.writer.patchSessionMetadata(ctx.caches.namespace, session.metadata.name, { metadata: { annotations: { [ANNOTATION_EXPIRES_AT]: formatExpiry(expiry) } } }, session.metadata.resourceVersion);
    } catch (err) {
      const kind = classifyError(err).kind;
      if (kind === 'Conflict' || kind === 'NotFound') return { admitted: false, retryMs: CONFLICT_RETRY_MS };
      throw err;
    }
  }
  if (!again) ctx.metrics.queueWait.observe(waited / 1000);
  if (session.status?.phase === 'Queued') ctx.log.info({ session: session.metadata.name, waitedMs: waited }, 'Admitted from the queue');
  return { admitted: true, admittedAt, expiresAt: expiry };
}
