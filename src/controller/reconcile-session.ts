import type { Logger } from 'pino';
import type { ChallengeSession } from '../api/session.js';
import type { Challenge } from '../api/challenge.js';
import { ANNOTATION_REQUESTED_AT, ANNOTATION_SPEC_HASH } from '../api/group.js';
import { classifyError } from '../kube/errors.js';
import { sessionRef, type Writer } from '../kube/writes.js';
import type { EventRecorder } from '../kube/recorder.js';
import type { Metrics } from '../metrics.js';
import type { Caches } from '../read-model/caches.js';
import { effectiveRuntime, provisionedFromOf, type ChallengeRuntime } from '../reconcile/runtime.js';
import { effectiveExpiry, msUntil } from '../reconcile/expiry.js';
import type { PodDefaults } from '../reconcile/pod.js';
import { desiredSessionPolicy, type NetworkOptions } from '../reconcile/network-policy.js';
import { computeStatus, routeRefs, statusPatch, type PublicAccess, type StatusInput } from '../reconcile/status.js';
import { desiredRoutes, unroutablePorts, type GatewayOptions, type RouteObject } from '../reconcile/routes.js';
import { hostIdentity, publicHost } from '../reconcile/public-host.js';
import { claimedAt, isPoolSession, isUnclaimedPool, sameOwner, sessionOwner } from '../api/session.js';
import { EventReason, Reason } from '../reconcile/reasons.js';
import { withSpecHash } from '../reconcile/children.js';
import { flagForSession } from '../flags/derive.js';
import { OWNED_KINDS, type ChildCaches, type DesiredInput, type Owned, type OwnedCacheName } from './owned-kinds.js';
import { admissionGate, type QueueSettings } from './admission-gate.js';
import { isAdmittedRecord } from '../reconcile/admission.js';

/**
 * One reconcile of one ChallengeSession: read the caches, decide with the pure functions in
 * src/reconcile, write only what differs. Safe to interrupt at any line and run again.
 */

export interface ReconcileContext {
  caches: Caches;
  children: ChildCaches;
  writer: Writer;
  events: EventRecorder;
  log: Logger;
  metrics: Metrics;
  flagKey: Buffer;
  readStaticFlag: (name: string, key: string) => Promise<string | undefined>;
  pod: PodDefaults;
  network: NetworkOptions;
  clusterDomain: string;
  /** Public hosts (and their key); undefined: endpoints are in-cluster only. */
  public: PublicAccess | undefined;
  /** The Gateway routes attach to, and whether the Gateway API is installed; undefined: none. */
  gateway: { options: GatewayOptions; available: boolean } | undefined;
  /** The first-come queue (src/reconcile/admission.ts); undefined: every session is admitted. */
  queue?: QueueSettings;
  now: () => Date;
}

export interface ReconcileOutcome {
  requeueAfterMs?: number;
}

/** How often an unclaimed pool instance, which has no expiry to wait for, is looked at anyway. */
const UNCLAIMED_RECHECK_MS = 3_600_000;

/** How soon to look again at a child that still belongs to an earlier session of the same name. */
const FOREIGN_CHILD_RETRY_MS = 1_000;

type Problem = NonNullable<StatusInput['challengeProblem']>;

export async function reconcileSession(ctx: ReconcileContext, name: string): Promise<ReconcileOutcome> {
  const parsed = ctx.caches.session(name);
  if (!parsed) return {};
  if (!parsed.ok) {
    ctx.log.warn({ session: name, error: parsed.error }, 'Session does not match the schema; skipping');
    return {};
  }
  const session = parsed.value;
  if (session.metadata.deletionTimestamp) return {};
  const now = ctx.now();
  // One session per owner and challenge: the backstop for spawns that raced past their checks.
  const older = olderSibling(ctx, session);
  if (older) {
    const pool = isPoolSession(session);
    return endSession(ctx, session, pool ? EventReason.DuplicateClaim : EventReason.DuplicateSession, `Released: its owner already held session ${older} of challenge ${session.spec.challenge} (two spawns at once)`, pool ? 'duplicate_claim' : 'duplicate');
  }

  const chal = ctx.caches.challenge(session.spec.challenge);
  const challenge: Challenge | undefined = chal?.ok ? chal.value : undefined;
  const eff = effectiveRuntime(session, challenge);
  // A warm pool instance's lifetime starts at its claim; until then it never expires.
  const unclaimed = isUnclaimedPool(session);
  let expiresAt = unclaimed ? undefined : effectiveExpiry(session, eff?.runtime);
  // A session waiting in the queue has not started its lifetime; its wait has its own timeout.
  const waiting = ctx.queue?.tracker.isWaiting(session) ?? false;

  if (!waiting && expiresAt && expiresAt.getTime() <= now.getTime()) {
    return endSession(ctx, session, EventReason.Expired, `Session expired at ${expiresAt.toISOString()}`, 'expired');
  }
  if (!chal && provisionedFromOf(session)) {
    return endSession(ctx, session, EventReason.ChallengeDeleted, `Challenge ${session.spec.challenge} was deleted`, 'challenge_deleted');
  }
  let untilExpiry = expiresAt ? msUntil(expiresAt, now) : UNCLAIMED_RECHECK_MS;
  let admittedAt: string | undefined;
  const status = (extra: Partial<StatusInput>): StatusInput => ({ session, runtime: eff, now, expiresAt, clusterDomain: ctx.clusterDomain, public: ctx.public, admittedAt, ...extra });
  /** Reports a problem as the session's status and looks again after `retryMs` (or at expiry). */
  const fail = async (problem: Problem, retryMs?: number): Promise<ReconcileOutcome> => {
    // Not admitted yet: no runtime snapshot, which would count the session as admitted.
    await writeStatus(ctx, session, computeStatus(status({ challengeProblem: problem, ...(waiting && !admittedAt ? { runtime: undefined } : {}) })));
    return { requeueAfterMs: Math.min(untilExpiry, retryMs ?? untilExpiry) };
  };

  if (!eff) {
    return fail(chal && !chal.ok
      ? { reason: Reason.InvalidChallenge, message: `Challenge ${session.spec.challenge} is invalid: ${chal.error}` }
      : { reason: Reason.UnknownChallenge, message: `Challenge ${session.spec.challenge} does not exist` });
  }

  const flag = await flagValue(ctx, session, eff.runtime);
  if (flag === undefined) {
    const ref = eff.runtime.flag.static?.secretRef;
    return fail({ reason: Reason.StaticFlagMissing, message: `Secret ${ref?.name} with key ${ref?.key} not found` }, 30_000);
  }

  // Admitted by the children of a pass cut short before its status: record it now.
  // (A pass whose cache has not caught up with its own admission keeps the time decided then.)
  if (ctx.queue && !waiting && !isAdmittedRecord(session)) admittedAt = ctx.queue.tracker.admittedAtOf(name) ?? now.toISOString();
  if (waiting && ctx.queue) {
    const gate = await admissionGate(ctx, ctx.queue, session, eff.runtime, expiresAt);
    if (!gate.admitted) {
      if (gate.queue) await writeStatus(ctx, session, computeStatus(status({ queue: gate.queue })));
      if (gate.timedOut) ctx.metrics.queueTimeouts.inc({ challenge: session.spec.challenge });
      return { requeueAfterMs: gate.timedOut ? untilExpiry : gate.retryMs };
    }
    ({ admittedAt, expiresAt } = gate);
    untilExpiry = expiresAt ? msUntil(expiresAt, now) : UNCLAIMED_RECHECK_MS;
  }

  const routes = sessionRoutes(ctx, session, eff.runtime);
  const input: DesiredInput = { session, runtime: eff, flag, policy: desiredSessionPolicy(session, eff.runtime, ctx.network), pod: ctx.pod, routes };
  let children: ChildrenPass;
  try {
    children = await ensureChildren(ctx, input);
  } catch (err) {
    // The apiserver refused an object built from the Challenge (validation, admission): retrying
    // cannot help until the Challenge changes, so say why in the status and check back slowly.
    const e = classifyError(err);
    if (e.kind !== 'Invalid' && e.kind !== 'Forbidden') throw err;
    return fail({ reason: Reason.InvalidChallenge, message: `the apiserver rejected a child object: ${e.message}`.slice(0, 1000) }, 60_000);
  }
  if (children.foreign) {
    ctx.log.debug({ session: name, object: children.foreign }, 'A child still belongs to an earlier session; waiting for garbage collection');
    return { requeueAfterMs: FOREIGN_CHILD_RETRY_MS };
  }
  recordCreated(ctx, session, children.created, input.policy.droppedCidrs);

  await writeStatus(ctx, session, computeStatus(status({
    pod: children.current.pods,
    service: children.current.services,
    droppedCidrs: input.policy.droppedCidrs,
    routing: routing(ctx, session, eff.runtime, routes),
  })));
  return { requeueAfterMs: untilExpiry };
}

/**
 * An older live session of the same challenge and owner, which makes this one the duplicate of
 * two concurrent spawns on two replicas: claims skip the list that settles a create (see
 * settleClaim), and that list may fail under load. Older: claimed, else requested (the API's
 * millisecond stamp), else created earlier; then by name.
 */
function olderSibling(ctx: ReconcileContext, session: ChallengeSession): string | undefined {
  const owner = sessionOwner(session);
  if (!owner) return undefined;
  const start = (s: ChallengeSession) => claimedAt(s) ?? s.metadata.annotations?.[ANNOTATION_REQUESTED_AT] ?? String(s.metadata.creationTimestamp ?? '');
  const mine = start(session);
  const siblings = owner.mode === 'user' ? ctx.caches.sessionsOfUser(owner.user) : ctx.caches.sessionsOfTeam(owner.team);
  for (const s of siblings) {
    if (s.metadata.uid === session.metadata.uid || s.metadata.deletionTimestamp || s.spec.challenge !== session.spec.challenge || !sameOwner(sessionOwner(s), owner)) continue;
    const theirs = start(s);
    if (Date.parse(theirs) < Date.parse(mine) || (Date.parse(theirs) === Date.parse(mine) && s.metadata.name < session.metadata.name)) return s.metadata.name;
  }
  return undefined;
}

function sessionRoutes(ctx: ReconcileContext, session: ChallengeSession, runtime: ChallengeRuntime): RouteObject[] {
  const pub = ctx.public;
  // No identity for an unclaimed pool instance: no public host, so no route.
  const identity = hostIdentity(session);
  if (!ctx.gateway?.available || !pub || !identity) return [];
  return desiredRoutes(session, runtime, ctx.gateway.options, (port) => publicHost(pub.hostKey, identity, port, pub.domain));
}

/** The Routed condition: only when a Gateway is configured; says why a port is not published. */
function routing(ctx: ReconcileContext, session: ChallengeSession, runtime: ChallengeRuntime, routes: RouteObject[]): StatusInput['routing'] {
  const gw = ctx.gateway;
  if (!gw) return undefined;
  const where = `Gateway ${gw.options.gateway.namespace}/${gw.options.gateway.name}`;
  if (isUnclaimedPool(session)) {
    return { status: 'False', reason: Reason.Unclaimed, message: 'a warm pool instance: no route and no ingress until a spawn claims it', routes: {} };
  }
  if (!gw.available) {
    return { status: 'False', reason: Reason.GatewayAPIMissing, message: `the Gateway API (gateway.networking.k8s.io/v1 HTTPRoute, TLSRoute) is not installed; the session is reachable inside the cluster only`, routes: {} };
  }
  const refs = routeRefs(session.metadata.name, runtime, routes);
  const missing = unroutablePorts(runtime, gw.options);
  if (missing.length > 0) {
    return { status: 'False', reason: Reason.NoListener, message: `not published on ${where}: no listener configured for ${missing.join(', ')} (CTF_GATEWAY_HTTP_LISTENER, CTF_GATEWAY_TLS_LISTENER)`, routes: refs };
  }
  return { status: 'True', reason: Reason.Routed, message: `every exposed port is routed through ${where}`, routes: refs };
}

interface ChildrenPass {
  /** "Kind name" of each child created in this pass. */
  created: string[];
  /** Each kind's child as now known: the object just written, else the cached one. */
  current: Partial<Record<OwnedCacheName, Owned>>;
  /** A child of an earlier session with the same name blocks this one ("Kind name"). */
  foreign?: string;
}

/** Walks the owned kinds in order and writes each child that is missing or out of date. */
async function ensureChildren(ctx: ReconcileContext, input: DesiredInput): Promise<ChildrenPass> {
  const ns = ctx.caches.namespace;
  const uid = input.session.metadata.uid;
  const pass: ChildrenPass = { created: [], current: {} };
  for (const kind of OWNED_KINDS) {
    const cache = ctx.children[kind.cache];
    const existing = 'childName' in kind ? cache?.get(`${ns}/${kind.childName(input.session.metadata.name)}`) : undefined;
    if (existing && ownedBy(existing, uid)) {
      pass.current[kind.cache] = existing;
      continue;
    }
    for (const desired of kind.desired(input) as Owned[]) {
      // Desired only when its kind is watched (see OwnedKind.requires); never written blind.
      if (!cache) break;
      const name = desired.metadata?.name ?? '';
      const observed = cache.get(`${ns}/${name}`);
      if (observed && !ownedBy(observed, uid)) {
        pass.foreign = `${kind.kind} ${name}`;
        return pass;
      }
      const hashed = withSpecHash(desired);
      const upToDate = observed && (kind.mode === 'create' || observed.metadata?.annotations?.[ANNOTATION_SPEC_HASH] === hashed.metadata?.annotations?.[ANNOTATION_SPEC_HASH]);
      const current = upToDate ? observed : await ctx.writer.apply(hashed);
      pass.current[kind.cache] ??= current;
      if (!observed) pass.created.push(`${kind.kind} ${name}`);
    }
  }
  return pass;
}

function ownedBy(obj: Owned, uid: string | undefined): boolean {
  return obj.metadata?.ownerReferences?.some((r) => r.controller && r.uid === uid) ?? false;
}

/** One Event for everything a pass created (an Event is a write like any other). */
function recordCreated(ctx: ReconcileContext, session: ChallengeSession, created: string[], droppedCidrs: string[]): void {
  if (created.length === 0) return;
  for (const what of created) ctx.log.info({ session: session.metadata.name, kind: what.split(' ')[0] }, `Created ${what.split(' ')[0]}`);
  ctx.events.normal(sessionRef(session), EventReason.Created, `Created ${created.join(', ')}`);
  if (droppedCidrs.length > 0 && created.some((c) => c.startsWith('NetworkPolicy '))) {
    ctx.events.warning(sessionRef(session), EventReason.EgressDropped, `Egress allowlist entries inside forbidden ranges were ignored: ${droppedCidrs.join(', ')}`);
  }
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
  if (next.claimedAt && next.claimedAt !== prev.claimedAt && next.phase === 'Running') {
    const claimed = Date.parse(next.claimedAt);
    if (!Number.isNaN(claimed)) ctx.metrics.poolClaimToPublished.observe(Math.max(0, (ctx.now().getTime() - claimed) / 1000));
    ctx.log.info({ session: name }, 'Published a claimed pool instance');
  }
  if (next.phase === prev.phase) return;
  const ready = next.conditions?.find((c) => c.type === 'Ready');
  ctx.log.info({ session: name, phase: next.phase, reason: ready?.reason }, `Session ${next.phase}`);
  if (next.phase === 'Running' && next.readyAt && !prev.readyAt) {
    const created = new Date(String(session.metadata.creationTimestamp)).getTime();
    const seconds = Math.max(0, (new Date(next.readyAt).getTime() - created) / 1000);
    // A pool instance's readiness is a refill; a player's wait for a claimed one is claim-to-published.
    if (isPoolSession(session)) ctx.metrics.poolRefill.observe(seconds);
    else ctx.metrics.spawnToReady.observe(seconds);
    // No Event: the Ready condition's lastTransitionTime and status.readyAt record the moment,
    // and an Event here was one write in nine on every spawn's path to Running.
  }
  if (next.phase === 'Failed') {
    ctx.metrics.sessionsFailed.inc({ reason: ready?.reason ?? 'Unknown' });
    ctx.events.warning(sessionRef(session), ready?.reason ?? EventReason.Failed, ready?.message ?? 'Session failed');
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
  ctx.events.normal(sessionRef(session), reason, message);
  return {};
}
