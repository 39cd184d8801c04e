import { z } from 'zod';
import { ANNOTATION_CLAIMED_AT, ANNOTATION_CLAIMED_OWNER, ANNOTATION_CLAIMED_TEAM, ANNOTATION_CLAIMED_USER, API_VERSION, SESSION_KIND } from './group.js';
import { conditionSchema, objectMeta, OWNER_MODES } from './common.js';

/**
 * The ChallengeSession custom resource: one player's instance of one challenge. The spec is
 * immutable (CEL rule in crds/challengesessions.yaml); the expiry lives in the
 * ctf.challenge-engine.io/expires-at annotation so extending a session does not bump generation.
 */

/** Session names double as Service names, so they must be DNS-1035 labels, with room for suffixes. */
export const SESSION_NAME_PATTERN = '^[a-z]([-a-z0-9]{0,50}[a-z0-9])?$';
export const USER_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._@:+-]{0,127}$';

/** Queued: waiting for capacity (src/reconcile/admission.ts); it has no Pods yet. */
export const PHASES = ['Pending', 'Queued', 'Provisioning', 'Running', 'Failed', 'Expired'] as const;
export type Phase = (typeof PHASES)[number];

export const sessionSpecSchema = z.strictObject({
  challenge: z
    .string()
    .min(1)
    .max(63)
    .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be the name of a Challenge (a DNS label)'),
  /** The player who started the session; absent on a warm pool instance (spec.pool). */
  user: z.string().max(128).regex(new RegExp(USER_PATTERN), 'must be 1-128 characters of letters, digits and ._@:+-, starting with a letter or digit').optional(),
  team: z.string().max(128).regex(new RegExp(USER_PATTERN), 'must be 1-128 characters of letters, digits and ._@:+-').optional(),
  /**
   * Who the instance belongs to: `user` (also when absent, as for every session from before
   * team instances) or every member of `team`. Recorded at spawn, so changing the Challenge's
   * owner later never changes who may use a running instance.
   */
  owner: z.enum(OWNER_MODES).optional(),
  /**
   * A warm instance the controller keeps ready for the Challenge's pool (spec.pool.size): it has
   * no player until a spawn claims it, which records the player in the claimed-* annotations.
   */
  pool: z.boolean().optional(),
})
  .refine((s) => s.owner !== 'team' || s.team !== undefined, { path: ['team'], message: 'a team-owned session needs a team' })
  .refine((s) => (s.pool === true ? s.user === undefined && s.team === undefined && s.owner === undefined : s.user !== undefined), {
    path: ['user'],
    message: 'a session needs a user, and a pool instance (pool: true) has none',
  });

/** Who may use a session: one user, or every member of one team. */
export type Owner = { mode: 'user'; user: string } | { mode: 'team'; team: string };

/** The player a session is for: who started it (or claimed it from the pool) and who owns it. */
export interface Player {
  user: string;
  team?: string;
  owner: Owner;
}

type SessionIdentity = Pick<ChallengeSession, 'spec'> & { metadata: Pick<ChallengeSession['metadata'], 'annotations'> };

/** Whether the session is a warm pool instance (claimed or not). */
export function isPoolSession(s: Pick<ChallengeSession, 'spec'>): boolean {
  return s.spec.pool === true;
}

/** Whether the session is a pool instance no spawn has claimed yet: nobody may use it. */
export function isUnclaimedPool(s: SessionIdentity): boolean {
  return isPoolSession(s) && s.metadata.annotations?.[ANNOTATION_CLAIMED_USER] === undefined;
}

const userValue = new RegExp(USER_PATTERN);

/**
 * The session's player: from the spec for a spawned session, from the claim annotations for a
 * pool instance; undefined for an unclaimed one, or a claim whose values do not parse (nobody
 * can use that instance; it ends at its expiry like any other).
 */
export function sessionPlayer(s: SessionIdentity): Player | undefined {
  if (!isPoolSession(s)) {
    const { user, team, owner } = s.spec;
    if (user === undefined) return undefined;
    return { user, ...(team !== undefined ? { team } : {}), owner: owner === 'team' && team !== undefined ? { mode: 'team', team } : { mode: 'user', user } };
  }
  const a = s.metadata.annotations ?? {};
  const user = a[ANNOTATION_CLAIMED_USER];
  const team = a[ANNOTATION_CLAIMED_TEAM];
  const mode = a[ANNOTATION_CLAIMED_OWNER] ?? 'user';
  if (user === undefined || !userValue.test(user) || (team !== undefined && !userValue.test(team))) return undefined;
  if (mode === 'team') return team === undefined ? undefined : { user, team, owner: { mode: 'team', team } };
  if (mode !== 'user') return undefined;
  return { user, ...(team !== undefined ? { team } : {}), owner: { mode: 'user', user } };
}

/** Who may use the session; undefined for an unclaimed pool instance. */
export function sessionOwner(s: SessionIdentity): Owner | undefined {
  return sessionPlayer(s)?.owner;
}

/** When the session's player got it: the claim for a pool instance, else undefined (its creation). */
export function claimedAt(s: SessionIdentity): string | undefined {
  return isPoolSession(s) ? s.metadata.annotations?.[ANNOTATION_CLAIMED_AT] : undefined;
}

export function sameOwner(a: Owner | undefined, b: Owner | undefined): boolean {
  if (!a || !b) return false;
  return a.mode === 'user' ? b.mode === 'user' && a.user === b.user : b.mode === 'team' && a.team === b.team;
}

export const endpointSchema = z.object({
  name: z.string(),
  protocol: z.enum(['http', 'tcp']),
  /** In-cluster DNS name of the session's Service. */
  host: z.string(),
  port: z.number().int(),
  /** Player-facing host name when an external domain is configured: unguessable, one per port. */
  externalHost: z.string().optional(),
  /** Where a browser opens an http port: the public URL when published, else the in-cluster one. */
  url: z.string().optional(),
  /** A ready-to-paste command that connects to a published tcp port (TLS with SNI). */
  connect: z.string().optional(),
  /** The Gateway API route that publishes this port, "Kind name". */
  route: z.string().optional(),
});

export const sessionStatusSchema = z.object({
  phase: z.enum(PHASES).optional(),
  conditions: z.array(conditionSchema).optional(),
  observedGeneration: z.number().int().optional(),
  endpoints: z.array(endpointSchema).optional(),
  message: z.string().optional(),
  startedAt: z.string().optional(),
  readyAt: z.string().optional(),
  expiresAt: z.string().optional(),
  /**
   * For a claimed pool instance: the claim (claimed-at annotation) this status reflects. Until it
   * equals the annotation the controller has not yet published the claim (routes, ingress), and
   * players are told the instance is still starting.
   */
  claimedAt: z.string().optional(),
  solved: z.boolean().optional(),
  solvedAt: z.string().optional(),
  /** Who submitted the flag (user, and team when they have one): the solve event's solvedBy. */
  solvedBy: z.object({ user: z.string(), team: z.string().optional() }).optional(),
  /**
   * When the leader had the solve's webhook event delivered. A solve without it and without an
   * event in the outbox (the API stopped between its two writes) is put in the outbox again.
   */
  solveReportedAt: z.string().optional(),
  /**
   * When the controller let the session out of the queue (RFC 3339, milliseconds): from then on
   * it counts as an instance for good, and its lifetime runs from here.
   */
  admittedAt: z.string().optional(),
  /**
   * The Challenge runtime (containers, ports, flag, network, lifetime) this session was
   * provisioned from, so editing the Challenge never changes a running session. Parsed in full
   * by src/reconcile/runtime.ts.
   */
  provisionedFrom: z.object({ generation: z.number().int(), runtime: z.record(z.string(), z.unknown()) }).optional(),
});

/**
 * Who writes which member of a session's status, written down once for both sides: the
 * controller derives its members from what it observes and merge-patches only those; the API
 * records a solve in its members, over the exact resourceVersion it read. Neither ever writes
 * the other's, so neither can undo the other's write.
 */
export const STATUS_WRITERS = {
  controller: ['phase', 'conditions', 'observedGeneration', 'endpoints', 'message', 'startedAt', 'readyAt', 'expiresAt', 'claimedAt', 'provisionedFrom', 'admittedAt'],
  api: ['solved', 'solvedAt', 'solvedBy'],
  /** The leader's webhook delivery (src/webhooks/outbox.ts). */
  webhooks: ['solveReportedAt'],
} as const satisfies Record<'controller' | 'api' | 'webhooks', readonly (keyof z.infer<typeof sessionStatusSchema>)[]>;

export type ControllerStatusField = (typeof STATUS_WRITERS.controller)[number];
export type ApiStatusField = (typeof STATUS_WRITERS.api)[number];

export const sessionSchema = z.object({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal(SESSION_KIND),
  metadata: objectMeta.extend({
    name: z
      .string()
      .regex(new RegExp(SESSION_NAME_PATTERN), 'must start with a letter, contain only lowercase letters, digits and -, and be at most 52 characters'),
  }),
  spec: sessionSpecSchema,
  status: sessionStatusSchema.optional(),
});

export type SessionSpec = z.infer<typeof sessionSpecSchema>;
export type SessionStatus = z.infer<typeof sessionStatusSchema>;
export type Endpoint = z.infer<typeof endpointSchema>;
export type ChallengeSession = z.infer<typeof sessionSchema>;
