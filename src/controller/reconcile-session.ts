import type { V1NetworkPolicy, V1Pod, V1Secret, V1Service } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { ChallengeSession } from '../api/session.js';
import type { Challenge } from '../api/challenge.js';
import { ANNOTATION_SPEC_HASH } from '../api/group.js';
import type { Informer, ObjectMetaLike } from '../kube/informer.js';
import { classifyError } from '../kube/errors.js';
import { sessionRef, type Writer } from '../kube/writes.js';
import type { Metrics } from '../metrics.js';
import type { Caches } from './caches.js';
import { effectiveRuntime, provisionedFromOf, type ChallengeRuntime } from '../reconcile/runtime.js';
import { effectiveExpiry, msUntil } from '../reconcile/expiry.js';
import { childNames } from '../reconcile/names.js';
import { desiredFlagSecret } from '../reconcile/secret.js';
import { desiredPod, type PodDefaults } from '../reconcile/pod.js';
import { desiredService } from '../reconcile/service.js';
import { desiredSessionPolicy, type NetworkOptions } from '../reconcile/network-policy.js';
import { computeStatus, statusPatch } from '../reconcile/status.js';
import { Reason } from '../reconcile/reasons.js';
import { withSpecHash } from '../reconcile/children.js';
import { flagForSession } from '../flags/derive.js';

/**
 * One reconcile of one ChallengeSession: read the caches, decide with the pure functions in
 * src/reconcile, write only what differs. Safe to interrupt at any line and run again.
 */

export interface ChildCaches {
  pods: Informer<V1Pod>;
  services: Informer<V1Service>;
  secrets: Informer<V1Secret>;
  policies: Informer<V1NetworkPolicy>;
}

export interface ReconcileContext {
  caches: Caches;
  children: ChildCaches;
  writer: Writer;
  log: Logger;
  metrics: Metrics;
  flagKey: Buffer;
  readStaticFlag: (name: string, key: string) => Promise<string | undefined>;
  pod: PodDefaults;
  network: NetworkOptions;
  clusterDomain: string;
  externalDomain: string | undefined;
  now: () => Date;
}

export interface ReconcileOutcome {
  requeueAfterMs?: number;
}

export async function reconcileSession(ctx: ReconcileContext, name: string): Promise<ReconcileOutcome> {
  const parsed = ctx.caches.session(name);
  if (!parsed) return {};
  if (!parsed.ok) {
    ctx.log.warn({ session: name, error: parsed.error }, 'Session does not match the schema; skipping');
    return {};
  }
  const session = parsed.value;
  if (session.metadata.deletionTimestamp) return {};
  const ns = ctx.caches.namespace;
  const now = ctx.now();

  const chal = ctx.caches.challenge(session.spec.challenge);
  const challenge: Challenge | undefined = chal?.ok ? chal.value : undefined;
  const eff = effectiveRuntime(session, challenge);
  const expiresAt = effectiveExpiry(session, eff?.runtime);

  if (expiresAt.getTime() <= now.getTime()) {
    return endSession(ctx, session, 'Expired', `Session expired at ${expiresAt.toISOString()}`, 'expired');
  }
  if (!chal && provisionedFromOf(session)) {
    return endSession(ctx, session, 'ChallengeDeleted', `Challenge ${session.spec.challenge} was deleted`, 'challenge_deleted');
  }
  const untilExpiry = msUntil(expiresAt, now);

  if (!eff) {
    const problem = chal && !chal.ok
      ? { reason: Reason.InvalidChallenge, message: `Challenge ${session.spec.challenge} is invalid: ${chal.error}` }
      : { reason: Reason.UnknownChallenge, message: `Challenge ${session.spec.challenge} does not exist` };
    await writeStatus(ctx, session, computeStatus({ session, challengeProblem: problem, now, expiresAt, clusterDomain: ctx.clusterDomain, externalDomain: ctx.externalDomain }));
    return { requeueAfterMs: untilExpiry };
  }

  const flag = await flagValue(ctx, session, eff.runtime);
  if (flag === undefined) {
    const problem = { reason: 'StaticFlagMissing', message: `Secret ${eff.runtime.flag.static?.secretRef.name} with key ${eff.runtime.flag.static?.secretRef.key} not found` };
    await writeStatus(ctx, session, computeStatus({ session, runtime: eff, challengeProblem: problem, now, expiresAt, clusterDomain: ctx.clusterDomain, externalDomain: ctx.externalDomain }));
    return { requeueAfterMs: Math.min(untilExpiry, 30_000) };
  }

  const names = childNames(session.metadata.name);
  const { policy, droppedCidrs } = desiredSessionPolicy(session, eff.runtime, ctx.network);
  const created: string[] = [];
  const podKey = `${ns}/${names.pod}`;
  let pod = ctx.children.pods.get(podKey);
  try {
    await ensure(ctx, ctx.children.secrets, `${ns}/${names.secret}`, withSpecHash(desiredFlagSecret(session, flag)), created);
    await ensure(ctx, ctx.children.policies, `${ns}/${names.networkPolicy}`, withSpecHash(policy), created);
    await ensure(ctx, ctx.children.services, `${ns}/${names.service}`, withSpecHash(desiredService(session, eff.runtime)), created);
    // Pods are created once and never updated: most of a pod spec is immutable, and a Challenge
    // edit must not disturb running sessions.
    if (!pod) {
      pod = await ctx.writer.apply(withSpecHash(desiredPod(session, eff, ctx.pod)));
      created.push('Pod');
    } else if (!ownedBy(pod, session.metadata.uid)) {
      // A pod of an earlier session with the same name is still terminating; try again shortly.
      return { requeueAfterMs: 1_000 };
    }
  } catch (err) {
    // The apiserver refused an object built from the Challenge (validation, admission): retrying
    // cannot help until the Challenge changes, so say why in the status and check back slowly.
    const e = classifyError(err);
    if (e.kind !== 'Invalid' && e.kind !== 'Forbidden') throw err;
    const problem = { reason: Reason.InvalidChallenge, message: `the apiserver rejected a child object: ${e.message}`.slice(0, 1000) };
    await writeStatus(ctx, session, computeStatus({ session, runtime: eff, challengeProblem: problem, now, expiresAt, clusterDomain: ctx.clusterDomain, externalDomain: ctx.externalDomain }));
    return { requeueAfterMs: Math.min(untilExpiry, 60_000) };
  }
  for (const kind of created) ctx.log.info({ session: session.metadata.name, kind }, `Created ${kind}`);
  if (created.length > 0) {
    // One Event for everything this pass created: an Event is a write like any other.
    const what = created.map((kind) => `${kind} ${kind === 'Secret' ? names.secret : names.pod}`).join(', ');
    void ctx.writer.event(sessionRef(session), 'Normal', 'Created', `Created ${what}`).catch(() => undefined);
  }
  if (droppedCidrs.length > 0 && created.includes('NetworkPolicy')) {
    void ctx.writer
      .event(sessionRef(session), 'Warning', 'EgressDropped', `Egress allowlist entries inside forbidden ranges were ignored: ${droppedCidrs.join(', ')}`)
      .catch(() => undefined);
  }

  const status = computeStatus({
    session,
    runtime: eff,
    pod,
    service: ctx.children.services.get(`${ns}/${names.service}`),
    now,
    expiresAt,
    clusterDomain: ctx.clusterDomain,
    externalDomain: ctx.externalDomain,
    droppedCidrs,
  });
  await writeStatus(ctx, session, status);
  return { requeueAfterMs: untilExpiry };
}

function ownedBy(obj: { metadata?: { ownerReferences?: { uid: string; controller?: boolean }[] } }, uid: string | undefined): boolean {
  return obj.metadata?.ownerReferences?.some((r) => r.controller && r.uid === uid) ?? false;
}

/** Applies a child unless the cached copy already carries the same spec hash. */
async function ensure<T extends ObjectMetaLike & { kind?: string; metadata?: { annotations?: Record<string, string>; ownerReferences?: { uid: string; controller?: boolean }[] } }>(
  ctx: ReconcileContext,
  cache: Informer<T>,
  key: string,
  desired: T,
  created: string[],
): Promise<void> {
  const observed = cache.get(key);
  const want = desired.metadata?.annotations?.[ANNOTATION_SPEC_HASH];
  if (observed && observed.metadata?.annotations?.[ANNOTATION_SPEC_HASH] === want) return;
  const owner = desired.metadata?.ownerReferences?.[0]?.uid;
  if (observed && !ownedBy(observed, owner)) throw new Error(`${desired.kind ?? 'object'} ${key} still belongs to an earlier session; waiting for garbage collection`);
  await ctx.writer.apply(desired as never);
  if (!observed) created.push(desired.kind ?? 'object');
}

async function flagValue(ctx: ReconcileContext, session: ChallengeSession, runtime: ChallengeRuntime): Promise<string | undefined> {
  if (runtime.flag.dynamic) {
    return flagForSession(ctx.flagKey, session, runtime);
  }
  const ref = runtime.flag.static?.secretRef;
  return ref ? ctx.readStaticFlag(ref.name, ref.key) : undefined;
}

async function writeStatus(ctx: ReconcileContext, session: ChallengeSession, next: ReturnType<typeof computeStatus>): Promise<void> {
  const prev = session.status ?? {};
  const patch = statusPatch(prev, next);
  if (!patch) return;
  await ctx.writer.patchSessionStatus(ctx.caches.namespace, session.metadata.name, patch);
  const name = session.metadata.name;
  if (next.phase !== prev.phase) {
    ctx.log.info({ session: name, phase: next.phase, reason: next.conditions?.find((c) => c.type === 'Ready')?.reason }, `Session ${next.phase}`);
    if (next.phase === 'Running' && next.readyAt && !prev.readyAt) {
      const created = new Date(String(session.metadata.creationTimestamp)).getTime();
      ctx.metrics.spawnToReady.observe(Math.max(0, (new Date(next.readyAt).getTime() - created) / 1000));
      void ctx.writer.event(sessionRef(session), 'Normal', 'Ready', 'Session is Running and ready').catch(() => undefined);
    }
    if (next.phase === 'Failed') {
      const ready = next.conditions?.find((c) => c.type === 'Ready');
      ctx.metrics.sessionsFailed.inc({ reason: ready?.reason ?? 'Unknown' });
      void ctx.writer.event(sessionRef(session), 'Warning', ready?.reason ?? 'Failed', ready?.message ?? 'Session failed').catch(() => undefined);
    }
  }
}

/**
 * Deletes the session as it was read: if it changed since (an extension moved its expiry), the
 * apiserver refuses with a Conflict and the session is looked at again from a fresher cache.
 */
async function endSession(ctx: ReconcileContext, session: ChallengeSession, reason: string, message: string, metric: string): Promise<ReconcileOutcome> {
  try {
    await ctx.writer.deleteSession(ctx.caches.namespace, session.metadata.name, session.metadata.uid, session.metadata.resourceVersion);
  } catch (err) {
    const kind = classifyError(err).kind;
    if (kind === 'NotFound') return {};
    if (kind === 'Conflict') return { requeueAfterMs: 100 };
    throw err;
  }
  ctx.metrics.sessionsEnded.inc({ reason: metric });
  ctx.log.info({ session: session.metadata.name, reason }, message);
  void ctx.writer.event(sessionRef(session), 'Normal', reason, message).catch(() => undefined);
  return {};
}
