import type { FastifyBaseLogger } from 'fastify';
import { z } from 'zod';
import type { Metrics } from '../../metrics.js';
import type { SessionService } from '../../sessions/types.js';
import { HttpProblem, problemResponses } from '../problem.js';
import { documented } from '../schemas.js';
import type { ZodApp } from '../types.js';

const status = z.object({ status: z.literal('ok') });

/** Probes, metrics and the API description; none of them needs a token. */
export function operationsRoutes(app: ZodApp, service: SessionService, metrics: Metrics, log: FastifyBaseLogger): void {
  app.get(
    '/healthz',
    { schema: { tags: ['operations'], summary: 'Liveness', security: [], response: { 200: documented(status, 'The process is alive') } } },
    () => ({ status: 'ok' as const }),
  );

  app.get(
    '/readyz',
    {
      schema: {
        tags: ['operations'],
        summary: 'Readiness: caches synced and the apiserver reachable',
        security: [],
        response: { 200: documented(status, 'Ready to serve'), ...problemResponses(503) },
      },
    },
    async () => {
      let ready = false;
      try {
        ready = await service.ready();
      } catch (err) {
        log.warn({ err }, 'Readiness check failed');
      }
      if (!ready) throw new HttpProblem(503, 'unavailable', 'not ready: the caches are not synced or the apiserver is unreachable', { 'retry-after': '5' });
      return { status: 'ok' as const };
    },
  );

  app.get(
    '/metrics',
    {
      schema: {
        tags: ['operations'],
        summary: 'Prometheus metrics',
        security: [],
        produces: ['text/plain'],
        response: { 200: documented(z.string(), 'Prometheus text exposition format') },
      },
    },
    async (_request, reply) => {
      const text = await metrics.registry.metrics();
      return reply.type(metrics.registry.contentType).send(text);
    },
  );

  app.get(
    '/openapi.json',
    { schema: { hide: true, response: { 200: z.looseObject({ openapi: z.string() }) } } },
    () => app.swagger() as { openapi: string },
  );
}
