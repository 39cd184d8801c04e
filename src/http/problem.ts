import { STATUS_CODES } from 'node:http';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { DomainError } from '../sessions/types.js';
import { apiSchemas, documented } from './schemas.js';

/**
 * RFC 9457 problem details. Every error response of the API is one of these, sent by the single
 * error handler and the not-found handler below. Details are written for people; a 5xx never
 * carries the underlying error, which is logged with the request id instead.
 */

export const PROBLEM_CONTENT_TYPE = 'application/problem+json' as const;

export const problemSchema = z
  .object({
    type: documented(z.string(), 'A URN naming the kind of problem; stable for clients to switch on'),
    title: z.string(),
    status: z.int().min(100).max(599),
    detail: z.string(),
    instance: z.string().optional(),
  })
  .register(apiSchemas, { id: 'Problem', description: 'RFC 9457 problem details' });

export type Problem = z.infer<typeof problemSchema>;

export type ProblemKind =
  | 'invalid-request'
  | 'unauthorized'
  | 'forbidden'
  | 'team-required'
  | 'not-found'
  | 'method-not-allowed'
  | 'conflict'
  | 'max-lifetime'
  | 'queued'
  | 'body-too-large'
  | 'unsupported-media-type'
  | 'limit-reached'
  | 'rate-limited'
  | 'client-closed-request'
  | 'unavailable'
  | 'internal';

/** An error that already knows its HTTP shape; thrown by hooks and handlers. */
export class HttpProblem extends Error {
  constructor(
    readonly status: number,
    readonly kind: ProblemKind,
    readonly detail: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(detail);
  }

  body(instance?: string): Problem {
    return { type: `urn:challenge-engine:problem:${this.kind}`, title: STATUS_CODES[this.status] ?? 'Error', status: this.status, detail: this.detail, instance };
  }
}

interface ProblemResponse {
  description: string;
  content: { [PROBLEM_CONTENT_TYPE]: { schema: typeof problemSchema } };
}

/** Response schemas for the problem statuses a route documents. */
export function problemResponses<const S extends number>(...statuses: S[]): Record<S, ProblemResponse> {
  const response = (s: number): ProblemResponse => ({ description: STATUS_CODES[s] ?? 'Error', content: { [PROBLEM_CONTENT_TYPE]: { schema: problemSchema } } });
  return Object.fromEntries(statuses.map((s) => [s, response(s)])) as Record<S, ProblemResponse>;
}

export function retryAfter(seconds: number): Record<string, string> {
  return { 'retry-after': String(Math.max(1, Math.ceil(seconds))) };
}

/** The one mapping from the domain's error kinds to HTTP. */
export function problemFromDomain(err: DomainError): HttpProblem {
  switch (err.kind) {
    case 'NotFound':
      return new HttpProblem(404, 'not-found', err.message);
    case 'LimitReached':
      return new HttpProblem(429, 'limit-reached', err.message);
    case 'MaxLifetime':
      return new HttpProblem(409, 'max-lifetime', err.message);
    case 'Queued':
      return new HttpProblem(409, 'queued', err.message);
    case 'Invalid':
      return new HttpProblem(400, 'invalid-request', err.message);
    case 'Unavailable':
      return new HttpProblem(503, 'unavailable', err.message, retryAfter(5));
    case 'TeamRequired':
      return new HttpProblem(403, 'team-required', err.message);
  }
}

const CONTEXT_NAMES: Record<string, string> = { querystring: 'query', params: 'path', body: 'body', headers: 'header' };

function validationDetail(err: FastifyError): string {
  const where = CONTEXT_NAMES[err.validationContext ?? ''] ?? err.validationContext ?? 'request';
  const lines = (err.validation ?? []).map((v) => {
    const path = v.instancePath.split('/').filter(Boolean).join('.');
    return `${path ? `${where}.${path}` : where}: ${v.message ?? 'is invalid'}`;
  });
  return lines.length ? lines.join('; ') : `the ${where} is invalid`;
}

/**
 * Fastify's own client errors, with details of our own: its messages are fine for developers
 * but some echo input back, and the body parser's must never reach a log line.
 */
function fastifyClientProblem(err: FastifyError, bodyLimit: number): HttpProblem | undefined {
  if (err.validation) return new HttpProblem(400, 'invalid-request', validationDetail(err));
  switch (err.code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new HttpProblem(400, 'invalid-request', 'the request body is not valid JSON');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new HttpProblem(400, 'invalid-request', 'the request body is empty but its content type is JSON');
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new HttpProblem(413, 'body-too-large', `the request body is larger than ${bodyLimit} bytes`);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new HttpProblem(415, 'unsupported-media-type', 'the request body must be application/json');
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new HttpProblem(400, 'invalid-request', 'the Content-Length header does not match the body');
    case 'FST_ERR_BAD_URL':
      return new HttpProblem(400, 'invalid-request', 'the request URL is malformed');
  }
  const status = err.statusCode;
  if (status !== undefined && status >= 400 && status < 500) {
    return new HttpProblem(status, status === 404 ? 'not-found' : 'invalid-request', STATUS_CODES[status] ?? 'the request was rejected');
  }
  return undefined;
}

export function sendProblem(reply: FastifyReply, problem: HttpProblem): FastifyReply {
  return reply
    .code(problem.status)
    .headers(problem.headers)
    .type(PROBLEM_CONTENT_TYPE)
    .send(problem.body(reply.request.url.split('?', 1)[0]));
}

/** The single error handler: map, log, reply. `bodyLimit` is the app's, for routes without their own. */
export function createErrorHandler(bodyLimit: number, routes?: RouteTable) {
  const notFound = routes && createNotFoundHandler(routes);
  return function errorHandler(err: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
    // A request no route matched can still fail before the not-found handler runs (fastify wants
    // a Content-Type for a QUERY body): it is a wrong method or an unknown path all the same.
    if (notFound && request.is404 && !(err instanceof HttpProblem)) return notFound(request, reply);
    let problem: HttpProblem | undefined;
    if (err instanceof HttpProblem) problem = err;
    else if (err instanceof DomainError) problem = problemFromDomain(err);
    else problem = fastifyClientProblem(err, request.routeOptions.bodyLimit ?? bodyLimit);

    if (problem && problem.status < 500) {
      request.log.debug({ status: problem.status, problem: problem.kind }, 'Request rejected');
      return sendProblem(reply, problem);
    }
    if (problem) {
      request.log.warn({ status: problem.status, problem: problem.kind, detail: problem.detail }, 'Request failed');
      return sendProblem(reply, problem);
    }
    request.log.error({ err }, 'Request failed');
    return sendProblem(reply, new HttpProblem(500, 'internal', `an unexpected error occurred; the request id is ${request.id}`));
  };
}

/** Route patterns by method, for telling an unknown path (404) from a wrong method (405). */
export class RouteTable {
  private readonly routes: { method: string; re: RegExp }[] = [];

  add(methods: string | string[], url: string): void {
    // A catch-all (the CORS preflight route) would make every unknown path a wrong method.
    if (url === '*' || url === '/*') return;
    const source = url
      .split('/')
      .map((seg) => (seg.startsWith(':') ? '[^/]+' : seg === '*' ? '.*' : seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
      .join('/');
    const re = new RegExp(`^${source}$`);
    for (const method of [methods].flat()) this.routes.push({ method, re });
  }

  allowed(path: string): string[] {
    const methods = new Set(this.routes.filter((r) => r.re.test(path)).map((r) => r.method));
    if (methods.has('GET')) methods.add('HEAD');
    return [...methods].sort();
  }
}

export function createNotFoundHandler(routes: RouteTable) {
  return function notFoundHandler(request: FastifyRequest, reply: FastifyReply): FastifyReply {
    const path = request.url.split('?', 1)[0] ?? '/';
    const allowed = routes.allowed(path);
    if (allowed.length > 0) {
      return sendProblem(reply, new HttpProblem(405, 'method-not-allowed', `${request.method} is not allowed on ${path}; use ${allowed.join(', ')}`, { allow: allowed.join(', ') }));
    }
    return sendProblem(reply, new HttpProblem(404, 'not-found', `no route ${request.method} ${path}`));
  };
}
