import type { FastifyBaseLogger } from 'fastify';
import type { z } from 'zod';
import { DomainError, type Caller, type FlagResult, type FlagTarget, type SessionService } from '../../sessions/types.js';
import { callerOf } from '../auth.js';
import { wrongFlagKeys, type SlidingWindowLimiter, type WrongFlagLimits } from '../flag-limiter.js';
import { HttpProblem, problemFromDomain, problemResponses, retryAfter } from '../problem.js';
import { documented, flagBatchBody, flagBatchResultSchema, flagResultSchema, flagSubmissionBody, type FlagSubmission } from '../schemas.js';
import { BEARER, type ZodApp } from '../types.js';

export interface FlagLimiting {
  limiter: SlidingWindowLimiter;
  limits: WrongFlagLimits;
}

/** Flag submission, single and batched, behind the wrong-flag limiter. */
export function flagRoutes(app: ZodApp, service: SessionService, limiting: FlagLimiting | undefined, batchBodyLimit: number): void {
  /**
   * The limiter scope of a submission: the challenge, whether it is named directly or through a
   * session, so alternating the two forms or restarting the session does not reset the budget.
   */
  function scopeOf(caller: Caller, target: FlagTarget): string {
    if ('challenge' in target) return target.challenge;
    try {
      return service.get(caller, target.sessionId).challenge;
    } catch {
      return `session/${target.sessionId}`;
    }
  }

  async function judge(caller: Caller, submission: FlagSubmission): Promise<FlagResult> {
    const target: FlagTarget = submission.sessionId !== undefined ? { sessionId: submission.sessionId } : { challenge: submission.challenge ?? '' };
    const reservation = limiting?.limiter.reserve(wrongFlagKeys(limiting.limits, caller.user, scopeOf(caller, target)));
    if (reservation && !reservation.ok) {
      throw new HttpProblem(429, 'rate-limited', `too many wrong flags; try again in ${reservation.retryAfterSeconds} s`, retryAfter(reservation.retryAfterSeconds));
    }
    try {
      const result = await service.submitFlag(caller, target, submission.flag);
      if (result.correct) reservation?.release();
      return { correct: result.correct };
    } catch (err) {
      reservation?.release();
      throw err;
    }
  }

  app.post(
    '/api/flags',
    {
      schema: {
        tags: ['flags'],
        summary: 'Submit a flag',
        description: 'Wrong flags are limited per user and per challenge; over the limit the reply is 429 with Retry-After.',
        security: BEARER,
        body: flagSubmissionBody,
        response: { 200: documented(flagResultSchema, 'Whether the flag is correct'), ...problemResponses(400, 401, 403, 404, 429, 503) },
      },
    },
    (request) => judge(callerOf(request), request.body),
  );

  app.post(
    '/api/flags/batch',
    {
      bodyLimit: batchBodyLimit,
      schema: {
        tags: ['flags'],
        summary: 'Submit several flags',
        description: 'Judged in order; each result is either { correct } or { error } with the status the single endpoint would have returned.',
        security: BEARER,
        body: flagBatchBody,
        response: { 200: documented(flagBatchResultSchema, 'One result per submission, in order'), ...problemResponses(400, 401, 413) },
      },
    },
    async (request) => {
      const caller = callerOf(request);
      const results: z.infer<typeof flagBatchResultSchema>['results'] = [];
      // Sequential on purpose: the limiter must see each wrong flag before judging the next.
      for (const submission of request.body.submissions) {
        try {
          results.push(await judge(caller, submission));
        } catch (err) {
          results.push({ error: batchItemError(err, request.log, request.id) });
        }
      }
      return { results };
    },
  );
}

function batchItemError(err: unknown, log: FastifyBaseLogger, requestId: string) {
  const problem = err instanceof HttpProblem ? err : err instanceof DomainError ? problemFromDomain(err) : undefined;
  if (!problem) {
    log.error({ err }, 'Flag submission in batch failed');
    const internal = new HttpProblem(500, 'internal', `an unexpected error occurred; the request id is ${requestId}`).body();
    return { type: internal.type, title: internal.title, status: internal.status, detail: internal.detail };
  }
  const body = problem.body();
  const wait = problem.headers['retry-after'];
  return { type: body.type, title: body.title, status: body.status, detail: body.detail, ...(wait ? { retryAfterSeconds: Number(wait) } : {}) };
}
