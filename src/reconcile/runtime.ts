import { z } from 'zod';
import { challengeSpecSchema, type Challenge, type ChallengeSpec } from '../api/challenge.js';
import type { ChallengeSession } from '../api/session.js';

/**
 * The parts of a Challenge that decide what a session runs. Title, description, points and the
 * like only matter to the catalogue, so editing them never touches running sessions.
 */
export type ChallengeRuntime = Pick<ChallengeSpec, 'containers' | 'expose' | 'flag' | 'network' | 'lifetime'>;

/** A runtime together with the Challenge generation it was taken from. */
export interface EffectiveRuntime {
  runtime: ChallengeRuntime;
  generation: number;
}

const spec = challengeSpecSchema.shape;

/**
 * Parses a runtime snapshot read back from a session's status. Built from the Challenge's own
 * field schemas, so a snapshot is held to the same rules (and defaults) as the spec it came from,
 * and re-checks the cross-field rules a hand-edited status could break.
 */
export const runtimeSchema = z
  .strictObject({
    containers: spec.containers,
    expose: spec.expose,
    flag: spec.flag,
    network: spec.network,
    lifetime: spec.lifetime,
  })
  .superRefine((r, ctx) => {
    const names = new Set(r.containers.map((c) => c.name));
    const ports = new Set(r.containers.flatMap((c) => (c.ports ?? []).map((p) => p.containerPort)));
    r.expose.forEach((e, i) => {
      if (!ports.has(e.port)) ctx.addIssue({ code: 'custom', path: ['expose', i, 'port'], message: 'exposed port must be a containerPort' });
    });
    r.flag.containers?.forEach((n, i) => {
      if (!names.has(n)) ctx.addIssue({ code: 'custom', path: ['flag', 'containers', i], message: `no container named ${n}` });
    });
  });

/** `status.provisionedFrom`: the runtime a session was provisioned from and its Challenge generation. */
export const provisionedFromSchema = z.object({
  generation: z.number().int().min(0),
  runtime: runtimeSchema,
});
export type ProvisionedFrom = EffectiveRuntime;

/** The runtime parts of a Challenge spec, as a fresh object safe to store in a session's status. */
export function runtimeOf(spec: ChallengeSpec): ChallengeRuntime {
  const { containers, expose, flag, network, lifetime } = structuredClone(spec);
  return { containers, expose, flag, network, lifetime };
}

/**
 * Parsed snapshots by the object they were parsed from. Cached sessions are immutable and keep
 * their identity until they change, so every flag check and view of one session after the first
 * costs a lookup instead of a schema parse. Results are shared: callers must not mutate them.
 */
const parsedSnapshots = new WeakMap<object, ProvisionedFrom | null>();

/** The snapshot recorded in the session's status, or undefined when absent or not parseable. */
export function provisionedFromOf(session: Pick<ChallengeSession, 'status'>): ProvisionedFrom | undefined {
  const raw = (session.status as Record<string, unknown> | undefined)?.provisionedFrom;
  if (raw === undefined) return undefined;
  if (raw === null || typeof raw !== 'object') return undefined;
  let hit = parsedSnapshots.get(raw);
  if (hit === undefined) {
    const parsed = provisionedFromSchema.safeParse(raw);
    hit = parsed.success ? parsed.data : null;
    parsedSnapshots.set(raw, hit);
  }
  return hit ?? undefined;
}

/**
 * What a session runs: the snapshot it was provisioned from, so that editing (or deleting) the
 * Challenge never changes or kills a running session; the current Challenge when there is no
 * usable snapshot yet; undefined when there is neither.
 */
export function effectiveRuntime(session: Pick<ChallengeSession, 'status'>, challenge: Challenge | undefined): EffectiveRuntime | undefined {
  const snapshot = provisionedFromOf(session);
  if (snapshot) return snapshot;
  if (!challenge) return undefined;
  return { runtime: runtimeOf(challenge.spec), generation: challenge.metadata.generation ?? 0 };
}
