import type { V1Pod, V1Service } from '@kubernetes/client-node';
import type { Condition } from '../api/common.js';
import { claimedAt, STATUS_WRITERS, type ChallengeSession, type Endpoint, type Phase, type SessionStatus } from '../api/session.js';
import { jsonEqual } from './canonical.js';
import { mergePatch } from './merge-patch.js';
import { creationTime, formatTimestamp } from './expiry.js';
import { childNames, exposedPortName } from './names.js';
import { podVerdict } from './pod-status.js';
import { CONDITION_PROVISIONED, CONDITION_READY, CONDITION_ROUTED, Reason } from './reasons.js';
import { hostIdentity, publicHost } from './public-host.js';
import { routeName } from './routes.js';
import type { ChallengeRuntime, EffectiveRuntime, ProvisionedFrom } from './runtime.js';

/** The status the controller writes: the API's SessionStatus plus the runtime snapshot. */
export type DesiredSessionStatus = SessionStatus & { provisionedFrom?: ProvisionedFrom };

export interface StatusInput {
  session: ChallengeSession;
  /** What the session runs; absent when neither a snapshot nor the Challenge is known. */
  runtime?: EffectiveRuntime;
  /** A terminal problem found before looking at the Pod, with a Reason constant. */
  challengeProblem?: { reason: string; message: string };
  pod?: V1Pod;
  service?: V1Service;
  now: Date;
  /** Where players connect from outside the cluster; absent: in-cluster endpoints only. */
  public?: PublicAccess;
  /** Whether every exposed port is published through the Gateway; only when one is configured. */
  routing?: Pick<Condition, 'status' | 'reason' | 'message'> & { routes: RouteRefs };
  /** Defaults to cluster.local. */
  clusterDomain?: string;
  /** Undefined for an unclaimed pool instance: it never expires. */
  expiresAt: Date | undefined;
  droppedCidrs?: string[];
  /**
   * Not admitted (src/reconcile/admission.ts): Queued, or Failed when the queue timed out. Such
   * a session has no children and records no runtime snapshot (it takes the Challenge as it is
   * when admitted).
   */
  queue?: { phase: 'Queued' | 'Failed'; reason: string; message: string };
  /** Set on the pass that admits the session; kept from the previous status afterwards. */
  admittedAt?: string;
}

export interface PublicAccess {
  /** Wildcard domain of the public hosts. */
  domain: string;
  /** See hostKey(): public host labels are MACs under it. */
  hostKey: Buffer;
  /** Scheme and port players use for http ports (the Gateway's HTTP listener as seen from outside). */
  httpScheme: 'http' | 'https';
  httpPort: number;
  /** Port players connect to with TLS and SNI for tcp ports. */
  tlsPort: number;
}

/** "Kind name" of the route of each exposed port (by port name) that has one. */
export type RouteRefs = Record<string, string>;

interface Verdict {
  phase: Phase;
  reason: string;
  message: string;
}

/**
 * The session's status as a function of what was observed. Timestamps that mark events
 * (startedAt, readyAt, a condition's lastTransitionTime) are carried over from the previous
 * status, so recomputing from unchanged observations yields an equal object and nothing is
 * written. Fields other writers own (solved, solvedAt) are carried over untouched.
 */
export function computeStatus(input: StatusInput): DesiredSessionStatus {
  const { session, runtime, now } = input;
  const previous = session.status;
  const verdict = assess(input);
  const generation = session.metadata.generation;
  const provisioned = provisionedCondition(input, verdict);
  const conditions = [
    transition({ type: CONDITION_PROVISIONED, ...provisioned }, previous, now, generation),
    transition({ type: CONDITION_READY, status: verdict.phase === 'Running' ? 'True' : 'False', reason: verdict.reason, message: verdict.message }, previous, now, generation),
  ];
  if (input.routing) {
    const { routes: _routes, ...routed } = input.routing;
    conditions.push(transition({ type: CONDITION_ROUTED, ...routed }, previous, now, generation));
  }
  const readyAt = previous?.readyAt ?? (verdict.phase === 'Running' ? formatTimestamp(now) : undefined);
  const created = creationTime(session);
  return dropUndefined({
    phase: verdict.phase,
    conditions,
    observedGeneration: generation,
    endpoints: verdict.phase === 'Running' && runtime ? sessionEndpoints(session, runtime.runtime, { ...input, routes: input.routing?.routes }) : undefined,
    message: verdict.message,
    startedAt: previous?.startedAt ?? formatTimestamp(created ?? now),
    readyAt,
    expiresAt: input.expiresAt ? formatTimestamp(input.expiresAt) : undefined,
    claimedAt: claimedAt(session),
    solved: previous?.solved,
    solvedAt: previous?.solvedAt,
    provisionedFrom: runtime && !input.queue ? { generation: runtime.generation, runtime: runtime.runtime } : undefined,
    admittedAt: previous?.admittedAt ?? (input.queue ? undefined : input.admittedAt),
  });
}

/**
 * The phase, by precedence: a session not admitted is Queued (or Failed once its wait timed
 * out), its expiry not started; an expired session is Expired whatever else holds; then a known
 * problem fails it; without a runtime it is Pending; without a Pod or Service it is Provisioning;
 * otherwise the Pod decides.
 */
function assess(input: StatusInput): Verdict {
  if (input.queue) return input.queue;
  if (input.expiresAt && input.now.getTime() >= input.expiresAt.getTime()) {
    return { phase: 'Expired', reason: Reason.Expired, message: `session expired at ${formatTimestamp(input.expiresAt)}` };
  }
  if (input.challengeProblem) return { phase: 'Failed', ...input.challengeProblem };
  if (!input.runtime) {
    return { phase: 'Pending', reason: Reason.WaitingForChallenge, message: `waiting for challenge ${input.session.spec.challenge}` };
  }
  if (!input.pod) return { phase: 'Provisioning', reason: Reason.Provisioning, message: 'creating the pod' };
  const pod = podVerdict(input.pod);
  if (pod.phase === 'Running' && !input.service) return { phase: 'Provisioning', reason: Reason.Provisioning, message: 'creating the service' };
  return pod;
}

/** Provisioned: True once the Pod and Service exist, noting any egress entries left out. */
function provisionedCondition(input: StatusInput, verdict: Verdict): Pick<Condition, 'status' | 'reason' | 'message'> {
  if (input.runtime && input.pod && input.service) {
    const dropped = input.droppedCidrs ?? [];
    if (dropped.length === 0) return { status: 'True', reason: Reason.Provisioned, message: 'pod and service exist' };
    return { status: 'True', reason: Reason.EgressRestricted, message: `egress to ${dropped.join(', ')} not allowed: inside a forbidden range` };
  }
  const waiting = verdict.phase === 'Running' || verdict.phase === 'Provisioning';
  return { status: 'False', reason: waiting ? Reason.Provisioning : verdict.reason, message: waiting ? 'creating children' : verdict.message };
}

/** A full condition whose lastTransitionTime moves only when its status changes. */
function transition(c: Pick<Condition, 'type' | 'status' | 'reason' | 'message'>, previous: SessionStatus | undefined, now: Date, generation: number | undefined): Condition {
  const before = previous?.conditions?.find((p) => p.type === c.type);
  const lastTransitionTime = before && before.status === c.status ? before.lastTransitionTime : formatTimestamp(now);
  return dropUndefined({ ...c, lastTransitionTime, observedGeneration: generation });
}

/**
 * Where players connect, one entry per exposed port: the Service's cluster DNS name, and the
 * port's own unguessable public host when public access is configured. HTTP ports get a URL (the
 * public scheme and port, else plain http inside the cluster); published TCP ports get a
 * connect command for the TLS listener (SNI selects the instance).
 */
export function sessionEndpoints(
  session: Pick<ChallengeSession, 'metadata' | 'spec'>,
  runtime: Pick<ChallengeRuntime, 'expose'>,
  opts: { clusterDomain?: string; public?: PublicAccess; routes?: RouteRefs },
): Endpoint[] {
  const host = `${childNames(session.metadata.name).service}.${session.metadata.namespace ?? 'default'}.svc.${opts.clusterDomain ?? 'cluster.local'}`;
  const pub = opts.public;
  const identity = hostIdentity(session);
  return runtime.expose.map((e) => {
    const name = exposedPortName(e);
    const externalHost = pub && identity ? publicHost(pub.hostKey, identity, name, pub.domain) : undefined;
    const route = opts.routes?.[name];
    let url: string | undefined;
    let connect: string | undefined;
    if (e.protocol === 'http') url = externalHost && pub ? publicUrl(pub, externalHost) : `http://${host}:${e.port}`;
    else if (externalHost && pub && route) connect = `ncat --ssl ${externalHost} ${pub.tlsPort}`;
    return dropUndefined({ name, protocol: e.protocol, host, port: e.port, externalHost, url, connect, route });
  });
}

function publicUrl(pub: PublicAccess, host: string): string {
  const usual = pub.httpScheme === 'https' ? 443 : 80;
  return `${pub.httpScheme}://${host}${pub.httpPort === usual ? '' : `:${pub.httpPort}`}`;
}

/** The route references of the routes built for a session (see desiredRoutes). */
export function routeRefs(session: string, runtime: Pick<ChallengeRuntime, 'expose'>, routes: { kind: string; metadata: { name?: string } }[]): RouteRefs {
  const out: RouteRefs = {};
  for (const e of runtime.expose) {
    const r = routes.find((x) => x.metadata.name === routeName(session, e));
    if (r) out[exposedPortName(e)] = `${r.kind} ${r.metadata.name}`;
  }
  return out;
}

/**
 * The merge patch that turns the controller's members of the stored status into `next`'s, with
 * nulls for members to remove; undefined when they are already equal and nothing should be
 * written. Members the API writes (STATUS_WRITERS.api) are never part of it.
 */
export function statusPatch(previous: object | undefined, next: DesiredSessionStatus): Record<string, unknown> | undefined {
  const patch = mergePatch(controllerMembers(previous), controllerMembers(next) ?? {});
  return Object.keys(patch).length > 0 ? patch : undefined;
}

function controllerMembers(status: object | undefined): Record<string, unknown> | undefined {
  if (!status) return undefined;
  const s = status as Record<string, unknown>;
  return Object.fromEntries(STATUS_WRITERS.controller.filter((k) => k in s).map((k) => [k, s[k]]));
}

/** True when writing `next` over `current` would change nothing. */
export function statusEqual(current: unknown, next: unknown): boolean {
  return jsonEqual(current ?? {}, next ?? {});
}

/** Omits undefined members so the object compares equal to what the apiserver returns. */
function dropUndefined<T extends object>(obj: T): T {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined)) as T;
}
