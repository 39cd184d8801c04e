import { z } from 'zod';
import { OWNER_MODES } from '../api/common.js';
import { PHASES, SESSION_NAME_PATTERN, endpointSchema } from '../api/session.js';

/**
 * The wire format of the player API: every request is parsed and every response encoded through
 * these schemas, and the OpenAPI document is generated from them. Schemas registered in
 * `apiSchemas` become named components of that document.
 */

/** Named schemas of the document; `oneOf` states in JSON Schema what a refine checks in code. */
export const apiSchemas = z.registry<{ id?: string; description?: string; oneOf?: { required: string[] }[] }>();

/**
 * A copy of `schema` carrying a description for the OpenAPI document. Zod's own .describe()
 * writes to its global registry, which the document deliberately does not read.
 */
export function documented<T extends z.ZodType>(schema: T, description: string): T {
  const copy = schema.clone();
  apiSchemas.add(copy, { description });
  return copy;
}

export const sessionIdSchema = z
  .string()
  .regex(new RegExp(SESSION_NAME_PATTERN), 'must be a session id: a lowercase letter, then up to 51 lowercase letters, digits or -, not ending in -');

export const challengeNameSchema = z
  .string()
  .min(1, 'must not be empty')
  .max(63, 'must be at most 63 characters')
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a challenge name: lowercase letters, digits and -');

export const flagValueSchema = z.string().min(1, 'must not be empty').max(256, 'must be at most 256 characters');

export const catalogueEntrySchema = z
  .object({
    name: z.string(),
    title: z.string(),
    description: z.string(),
    category: z.string(),
    points: z.number(),
    tags: z.array(z.string()),
    protocols: z.array(z.enum(['http', 'tcp'])),
    lifetimeSeconds: z.number(),
    maxLifetimeSeconds: z.number(),
    owner: documented(
      z.enum(OWNER_MODES),
      "Who an instance belongs to: user, the caller's own; team, one instance shared by every member of the caller's team (the token's team claim, without which the challenge answers 403 team-required)",
    ),
  })
  .register(apiSchemas, { id: 'CatalogueEntry', description: 'A challenge players may start' });

export const sessionViewSchema = z
  .object({
    id: z.string(),
    challenge: z.string(),
    user: documented(z.string(), 'Who started the session'),
    team: documented(z.string(), "The starter's team; of a team-owned session, the team it belongs to").optional(),
    owner: documented(z.enum(OWNER_MODES), "user: the starter's own session; team: shared by every member of its team, who all see, open, extend, stop it and submit its flag"),
    phase: z.enum(PHASES),
    ready: z.boolean(),
    reason: z.string().optional(),
    message: z.string().optional(),
    createdAt: z.string(),
    expiresAt: z.string(),
    endpoints: z.array(endpointSchema.register(apiSchemas, { id: 'Endpoint' })),
    solved: z.boolean(),
    solvedAt: z.string().optional(),
    queue: documented(
      z
        .object({
          position: documented(z.number().int().min(1), 'Place in the first-come queue, 1 = next to start'),
          ahead: documented(z.number().int().min(0), 'Sessions that start before this one'),
          reason: documented(z.string(), 'Why it waits: EngineCapacity (CTF_MAX_INSTANCES), ChallengeCapacity (the challenge\'s maxInstances) or ClusterFull (a Pod cannot be scheduled)'),
        })
        .register(apiSchemas, { id: 'QueuePlace' }),
      'Only while the session waits for capacity (phase Queued); it starts on its own when its turn comes',
    ).optional(),
  })
  .register(apiSchemas, { id: 'Session', description: "One player's or one team's instance of one challenge" });

export const sessionEnvelope = z.object({ session: sessionViewSchema });

const flagSubmissionSchema = z
  .strictObject({
    sessionId: documented(sessionIdSchema, 'The session whose flag is guessed').optional(),
    challenge: documented(challengeNameSchema, "The challenge whose flag is guessed (the caller's session of it)").optional(),
    flag: flagValueSchema,
  })
  .refine((s) => (s.sessionId === undefined) !== (s.challenge === undefined), {
    message: 'give exactly one of sessionId and challenge',
  })
  // The refine above in the document's terms: exactly one of the two keys is present.
  .register(apiSchemas, { id: 'FlagSubmission', description: 'Exactly one of sessionId and challenge, and the flag', oneOf: [{ required: ['sessionId'] }, { required: ['challenge'] }] });

export type FlagSubmission = z.infer<typeof flagSubmissionSchema>;

export const flagSubmissionBody = flagSubmissionSchema;

export const MAX_BATCH = 50;

export const flagBatchBody = z.strictObject({
  submissions: z.array(flagSubmissionSchema).min(1, 'must hold at least one submission').max(MAX_BATCH, `must hold at most ${MAX_BATCH} submissions`),
});

export const flagResultSchema = z.object({ correct: z.boolean() }).register(apiSchemas, { id: 'FlagResult' });

export const batchItemErrorSchema = z.object({
  type: z.string(),
  title: z.string(),
  status: z.number().int(),
  detail: z.string(),
  retryAfterSeconds: z.number().int().optional(),
});

export const flagBatchResultSchema = z.object({
  results: z.array(z.union([flagResultSchema, z.object({ error: batchItemErrorSchema })])),
});

/** Query booleans as a client would type them. */
export const queryBoolean = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');
