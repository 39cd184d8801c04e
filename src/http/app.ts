import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import cors from '@fastify/cors';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import {
  createJsonSchemaTransform,
  createJsonSchemaTransformObject,
  serializerCompiler,
  validatorCompiler,
  type ZodTypeProvider,
} from 'fastify-type-provider-zod';
import type { Logger } from 'pino';
import type { Metrics } from '../metrics.js';
import type { SessionService } from '../sessions/types.js';
import { authenticate, type TokenVerifier } from './auth.js';
import { DEFAULT_WRONG_FLAG_LIMITS, SlidingWindowLimiter, type WrongFlagLimits } from './flag-limiter.js';
import { HttpProblem, PROBLEM_CONTENT_TYPE, RouteTable, createErrorHandler, createNotFoundHandler } from './problem.js';
import { challengeRoutes } from './routes/challenges.js';
import { flagRoutes } from './routes/flags.js';
import { accessRoutes, forwardAuthRoutes } from './routes/access.js';
import { operationsRoutes } from './routes/operations.js';
import { pageRoutes, type PageOptions } from './routes/page.js';
import { sessionRoutes } from './routes/sessions.js';
import { apiSchemas } from './schemas.js';
import type { ZodApp } from './types.js';

/**
 * The player API as a ready fastify instance: tests mount it with inject(), main.ts listens.
 * Everything it needs comes in through deps; it keeps no state beyond the wrong-flag limiter.
 */

export interface AppDeps {
  service: SessionService;
  tokens: TokenVerifier;
  metrics: Metrics;
  log: Logger;
  corsOrigins: string[];
  /** Wrong-flag limits; false turns limiting off (benchmarks). */
  rateLimit?: WrongFlagLimits | false;
  bodyLimitBytes?: number;
  /** The player page at /play; absent: not served. */
  page?: PageOptions;
}

export const DEFAULT_BODY_LIMIT = 16 * 1024;
/** Fifty submissions of maximal flags do not fit the default limit. */
const BATCH_BODY_LIMIT = 32 * 1024;
const SAFE_REQUEST_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

/** Request ids from a proxy are kept when they are harmless in a log line and a header. */
export function requestId(req: IncomingMessage): string {
  const incoming = req.headers['x-request-id'];
  return typeof incoming === 'string' && SAFE_REQUEST_ID.test(incoming) ? incoming : randomUUID();
}

/**
 * The request logger: method and path only (no query, no headers, no body), with the shared
 * redaction paths repeated here so the API stays safe under any logger it is given.
 */
function httpLogger(log: Logger): FastifyBaseLogger {
  return log.child(
    {},
    {
      serializers: {
        req: (req: FastifyRequest) => ({ method: req.method, path: req.url.split('?', 1)[0], remoteAddress: req.ip }),
      },
      redact: {
        paths: ['flag', '*.flag', 'token', '*.token', 'authorization', '*.authorization', 'headers.authorization', 'req.headers.authorization', 'body', '*.body'],
        censor: '[redacted]',
      },
    },
  );
}

export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const bodyLimit = deps.bodyLimitBytes ?? DEFAULT_BODY_LIMIT;
  const app: ZodApp = Fastify({
    loggerInstance: httpLogger(deps.log),
    genReqId: requestId,
    requestIdHeader: false,
    bodyLimit,
    return503OnClosing: false,
    // Errors the router raises before any route runs (a malformed or over-long URL) get the same
    // problem response as everything else, without echoing the URL back.
    frameworkErrors: (err, request, reply) => {
      const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 400;
      const problem = new HttpProblem(status, 'invalid-request', status === 414 ? 'the URL is too long' : 'the URL is malformed');
      const raw = reply as unknown as FastifyReply;
      void raw.code(status).header('x-request-id', request.id).type(PROBLEM_CONTENT_TYPE).send(problem.body());
    },
  }).withTypeProvider<ZodTypeProvider>();

  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  const routes = new RouteTable();
  app.setErrorHandler(createErrorHandler(bodyLimit, routes));
  app.addHook('onRoute', (route) => routes.add(route.method, route.url));
  app.setNotFoundHandler(createNotFoundHandler(routes));
  acceptJsonOnly(app);
  observeRequests(app, deps.metrics);
  const closing = releaseOnClose(app);

  if (deps.corsOrigins.length > 0) {
    await app.register(cors, {
      origin: deps.corsOrigins.includes('*') ? '*' : deps.corsOrigins,
      methods: ['GET', 'POST', 'DELETE'],
      allowedHeaders: ['Authorization', 'Content-Type', 'X-Request-Id'],
      exposedHeaders: ['Location', 'Retry-After', 'WWW-Authenticate', 'X-Request-Id'],
      maxAge: 600,
      // An OPTIONS request that is not a preflight goes on to the router (404/405 problems).
      strictPreflight: false,
    });
  }
  await registerDocs(app);

  const limits = deps.rateLimit === false ? undefined : (deps.rateLimit ?? DEFAULT_WRONG_FLAG_LIMITS);
  const limiting = limits && { limiter: new SlidingWindowLimiter(), limits };
  // Everything under /api needs a token; the hook is scoped to this plugin.
  await app.register((api: ZodApp, _opts, done) => {
    api.addHook('onRequest', authenticate(deps.tokens));
    challengeRoutes(api, deps.service);
    sessionRoutes(api, deps.service, closing);
    flagRoutes(api, deps.service, limiting, Math.max(bodyLimit, BATCH_BODY_LIMIT));
    accessRoutes(api, deps.service);
    done();
  });
  await app.register((gateway: ZodApp, _opts, done) => {
    forwardAuthRoutes(gateway, deps.service);
    done();
  });
  operationsRoutes(app, deps.service, deps.metrics, app.log);
  if (deps.page) {
    const page = deps.page;
    await app.register(async (web: ZodApp) => pageRoutes(web, page));
  }

  await app.ready();
  return app;
}

/** JSON bodies only (anything else is 415). An empty JSON body counts as none, so clients that always send the header work. */
function acceptJsonOnly(app: ZodApp): void {
  app.removeContentTypeParser(['application/json', 'text/plain']);
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if (body === '') done(null, undefined);
    // The default parser answers through `done`; its return value carries nothing.
    else void parseJson(request, body as string, done);
  });
}

/** The request id on every response, and every response in the duration histogram. */
function observeRequests(app: ZodApp, metrics: Metrics): void {
  app.addHook('onSend', (request, reply, payload, done) => {
    reply.header('x-request-id', request.id);
    done(null, payload);
  });
  app.addHook('onResponse', (request, reply, done) => {
    const route = request.is404 ? 'unmatched' : (request.routeOptions.url ?? 'unmatched');
    metrics.httpDuration.observe({ route, method: request.method, status_code: String(reply.statusCode) }, reply.elapsedTime / 1000);
    done();
  });
}

/**
 * A signal that aborts when the server starts closing: long polls answer at once instead of
 * holding up shutdown, and requests that still arrive get a problem instead of fastify's own 503.
 */
function releaseOnClose(app: ZodApp): AbortSignal {
  const closing = new AbortController();
  app.addHook('preClose', (done) => {
    closing.abort();
    done();
  });
  app.addHook('onRequest', (_request, _reply, done) => {
    if (closing.signal.aborted) done(new HttpProblem(503, 'unavailable', 'the server is shutting down', { 'retry-after': '1', connection: 'close' }));
    else done();
  });
  return closing.signal;
}

/** /openapi.json is generated from the routes' zod schemas; /docs serves Swagger UI on it. */
async function registerDocs(app: ZodApp): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'challenge-engine player API', version: '1.0.0', description: 'Start, inspect and stop challenge sessions, and submit flags.' },
      components: { securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } },
      security: [{ bearerAuth: [] }],
      tags: [{ name: 'challenges' }, { name: 'sessions' }, { name: 'flags' }, { name: 'operations' }],
    },
    transform: createJsonSchemaTransform({ schemaRegistry: apiSchemas }),
    transformObject: createJsonSchemaTransformObject({ schemaRegistry: apiSchemas }),
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
}
