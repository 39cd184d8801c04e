import type { ServerResponse } from 'node:http';
import { z } from 'zod';
import { DomainError, type SessionService } from '../../sessions/types.js';
import { callerOf } from '../auth.js';
import { HttpProblem, problemResponses } from '../problem.js';
import { documented, queryBoolean, sessionEnvelope, sessionIdSchema, sessionViewSchema } from '../schemas.js';
import { BEARER, type ZodApp } from '../types.js';

export const MAX_WAIT_SECONDS = 60;

/**
 * A query string, so a string: the pattern itself admits exactly 0-60, and the published
 * document carries it, so a client generated from the document cannot send 61.
 */
const waitSeconds = z
  .string()
  .regex(/^(?:[0-9]|[1-5][0-9]|60)$/, `must be a whole number of seconds from 0 to ${MAX_WAIT_SECONDS}`)
  .transform(Number);

/** Listing and reading sessions (either optionally long-polling until ready) and extending them. */
export function sessionRoutes(app: ZodApp, service: SessionService, closing: AbortSignal): void {
  app.get(
    '/api/sessions',
    {
      schema: {
        tags: ['sessions'],
        summary: "List the caller's sessions and their team's",
        description:
          "Admins may pass all=true to list every session; players get their own and their team's either way. " +
          `With wait=N (0-${MAX_WAIT_SECONDS}) the reply is held until none of the listed sessions is still starting (each is ready or failed), or N seconds have passed; with no sessions it comes at once.`,
        security: BEARER,
        querystring: z.object({
          all: documented(queryBoolean, 'Every session, not just the caller\'s (admins only; ignored for players)').optional(),
          wait: documented(waitSeconds, `Seconds to wait for every listed session to become ready or fail (0-${MAX_WAIT_SECONDS})`).optional(),
        }),
        response: { 200: documented(z.object({ sessions: z.array(sessionViewSchema) }), 'The sessions, newest state from the cache'), ...problemResponses(400, 401) },
      },
    },
    async (request, reply) => {
      const caller = callerOf(request);
      const all = caller.admin && request.query.all === true;
      const wait = request.query.wait ?? 0;
      if (wait === 0) return { sessions: service.list(caller, all) };
      const sessions = await longPoll((signal) => service.waitList(caller, all, wait * 1000, signal), () => service.list(caller, all), reply.raw, closing);
      return { sessions };
    },
  );

  app.get(
    '/api/sessions/:id',
    {
      schema: {
        tags: ['sessions'],
        summary: 'Read a session',
        description: `With wait=N (0-${MAX_WAIT_SECONDS}) the reply is held until the session is ready or failed, or N seconds have passed.`,
        security: BEARER,
        params: z.object({ id: sessionIdSchema }),
        querystring: z.object({ wait: documented(waitSeconds, `Seconds to wait for the session to become ready or fail (0-${MAX_WAIT_SECONDS})`).optional() }),
        response: { 200: documented(sessionEnvelope, 'The session'), ...problemResponses(400, 401, 403, 404, 503) },
      },
    },
    async (request, reply) => {
      const caller = callerOf(request);
      const { id } = request.params;
      const wait = request.query.wait ?? 0;
      if (wait === 0) return { session: service.get(caller, id) };
      const session = await longPoll((signal) => service.waitReady(caller, id, wait * 1000, signal), () => service.get(caller, id), reply.raw, closing);
      return { session };
    },
  );

  app.post(
    '/api/sessions/:id/extend',
    {
      schema: {
        tags: ['sessions'],
        summary: "Extend a session's lifetime",
        security: BEARER,
        params: z.object({ id: sessionIdSchema }),
        response: { 200: documented(sessionEnvelope, 'The session with its new expiry'), ...problemResponses(400, 401, 403, 404, 409, 503) },
      },
    },
    async (request) => ({ session: await service.extend(callerOf(request), request.params.id) }),
  );
}

/**
 * Runs a wait of the service, giving up early when the client goes away (no one to answer) or
 * the server is shutting down (answer with `current()` rather than hold up the shutdown).
 */
async function longPoll<T>(wait: (signal: AbortSignal) => Promise<T>, current: () => T, res: ServerResponse, closing: AbortSignal): Promise<T> {
  const controller = new AbortController();
  let clientGone = false;
  const onClose = () => {
    if (res.writableEnded) return;
    clientGone = true;
    controller.abort();
  };
  const onClosing = () => controller.abort();
  res.on('close', onClose);
  closing.addEventListener('abort', onClosing, { once: true });
  if (closing.aborted) controller.abort();
  try {
    return await wait(controller.signal);
  } catch (err) {
    if (err instanceof DomainError || !controller.signal.aborted) throw err;
    if (clientGone) throw new HttpProblem(499, 'client-closed-request', 'the client closed the connection');
    return current();
  } finally {
    res.off('close', onClose);
    closing.removeEventListener('abort', onClosing);
  }
}
