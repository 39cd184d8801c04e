import { z } from 'zod';
import { DomainError, type SessionService } from '../../sessions/types.js';
import { callerOf } from '../auth.js';
import { HttpProblem, problemResponses } from '../problem.js';
import { catalogueEntrySchema, challengeNameSchema, documented, sessionEnvelope, sessionIdSchema } from '../schemas.js';
import { BEARER, type ZodApp } from '../types.js';

/** The catalogue, starting a challenge (idempotent) and stopping a session. */
export function challengeRoutes(app: ZodApp, service: SessionService): void {
  app.get(
    '/api/challenges',
    {
      schema: {
        tags: ['challenges'],
        summary: 'List the challenges that can be started',
        security: BEARER,
        response: { 200: documented(z.object({ challenges: z.array(catalogueEntrySchema) }), 'The enabled challenges'), ...problemResponses(401) },
      },
    },
    () => ({ challenges: service.catalogue() }),
  );

  app.post(
    '/api/challenges',
    {
      schema: {
        tags: ['challenges'],
        summary: 'Start a challenge',
        description:
          "Creates a session, or returns the owner's active session of the same challenge (200). The owner is the caller, or the caller's team for a challenge whose owner is team: then any member's spawn returns the team's one instance, and a token without a team gets 403 team-required. Poll GET /api/sessions/{id}?wait=30 until it is ready.",
        security: BEARER,
        body: z.strictObject({ challenge: challengeNameSchema }),
        response: {
          200: documented(sessionEnvelope, 'The caller (or their team) already has an active session of this challenge'),
          201: documented(sessionEnvelope, 'A new session was created; Location names it'),
          ...problemResponses(400, 401, 403, 404, 429, 503),
        },
      },
    },
    async (request, reply) => {
      const { challenge } = request.body;
      try {
        const { created, session } = await service.spawn(callerOf(request), challenge);
        if (created) reply.header('location', `/api/sessions/${session.id}`);
        return reply.code(created ? 201 : 200).send({ session });
      } catch (err) {
        // Disabled and missing challenges look the same (the service reports both as NotFound).
        if (err instanceof DomainError && err.kind === 'NotFound') {
          throw new HttpProblem(404, 'not-found', `there is no challenge named ${challenge}`);
        }
        throw err;
      }
    },
  );

  app.delete(
    '/api/challenges/:sessionId',
    {
      schema: {
        tags: ['challenges'],
        summary: 'Stop a session',
        description: "Players may stop their own sessions and their team's, admins any session.",
        security: BEARER,
        params: z.object({ sessionId: sessionIdSchema }),
        response: { 204: documented(z.undefined(), 'The session is being stopped'), ...problemResponses(400, 401, 403, 404, 503) },
      },
    },
    async (request, reply) => {
      await service.stop(callerOf(request), request.params.sessionId);
      return reply.code(204).send();
    },
  );
}
