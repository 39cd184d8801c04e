import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { AccessDecision, SessionService } from '../../sessions/types.js';
import { callerOf } from '../auth.js';
import { problemResponses } from '../problem.js';
import { documented, sessionIdSchema } from '../schemas.js';
import { BEARER, type ZodApp } from '../types.js';

/**
 * Owner-bound access to instances: the API's single-use link, and the forward-auth endpoint the
 * gateway asks before it forwards a request to an instance (Traefik ForwardAuth, nginx
 * auth_request and Envoy ext_authz all call it with the original host and URI in headers).
 */

export const FORWARD_AUTH_PATH = '/gateway/auth';

const linkSchema = z.object({
  url: z.string().describe('Opens the instance once; the browser then keeps an access cookie for that host'),
  expiresAt: z.string().describe('The link works once, until this time'),
});

const page = (title: string, text: string) =>
  `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>${title}</title></head>` +
  `<body style="font-family:sans-serif;max-width:40em;margin:3em auto;padding:0 1em"><h1>${title}</h1><p>${text}</p></body></html>`;

/** Static pages only: nothing from the request or the cluster is ever written into them. */
const PAGES = {
  'not-yours': page('This instance is not open to you', 'Each instance opens only for the player or team it belongs to. Start or open your own instance from the player page of the competition.'),
  'bad-link': page('This link no longer works', 'Instance links work once and only for a minute. Open your instance again from the player page of the competition.'),
  'unknown-host': page('No instance here', 'No running instance answers at this address: it may have been stopped or have expired. Start a new one from the player page of the competition.'),
} as const;

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;

export function accessRoutes(app: ZodApp, service: SessionService): void {
  app.post(
    '/api/sessions/:id/access',
    {
      schema: {
        tags: ['sessions'],
        summary: "A single-use link that opens the session's web instance",
        description: 'The link goes to the instance\'s own host and works once within a minute; it leaves an HttpOnly cookie for that host, without which the gateway refuses every request. Ask again for a new link at any time (it replaces the previous one).',
        security: BEARER,
        params: z.object({ id: sessionIdSchema }),
        querystring: z.object({ port: documented(z.string().regex(/^[a-z0-9-]{1,63}$/, 'must be an exposed port name'), 'The exposed http port (its endpoint name); the first one by default').optional() }),
        response: { 200: documented(linkSchema, 'The link'), ...problemResponses(400, 401, 403, 404, 503) },
      },
    },
    (request) => service.openLink(callerOf(request), request.params.id, request.query.port),
  );
}

/** Registered outside the token-checked scope: the gateway calls it for every instance request. */
export function forwardAuthRoutes(app: ZodApp, service: SessionService): void {
  // The gateway forwards the original request's headers, Content-Type included, never its body.
  app.addContentTypeParser('*', (_request, _payload, done) => done(null, undefined));
  const schema = {
    tags: ['gateway'],
    summary: 'Forward auth for instance hosts',
    description:
      'For the gateway, not for players: 200 lets the request through; 302 (with Set-Cookie) answers a valid single-use link; 403 and 404 carry a plain page for the player. The original host comes from X-Forwarded-Host (else Host), the original URI from X-Forwarded-Uri, X-Original-URI, or the path after ' +
      `${FORWARD_AUTH_PATH} (Envoy's path prefix).`,
    security: [],
    response: {
      200: documented(z.string(), 'Allowed'),
      302: documented(z.string(), 'A valid link: the access cookie is set and the browser sent to /'),
      403: documented(z.string(), 'Not the owner, no cookie, or a used or expired link (text/html)'),
      404: documented(z.string(), 'No instance at that host (text/html)'),
    },
  };
  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    const h = request.headers;
    const first = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v);
    const suffix = request.url.slice(FORWARD_AUTH_PATH.length);
    const uri = first(h['x-forwarded-uri']) ?? first(h['x-original-uri']) ?? (suffix.startsWith('/') ? suffix : '/');
    const decision = await service.authorize({ host: first(h['x-forwarded-host']) ?? h.host, uri, cookie: h.cookie });
    return answer(reply, decision);
  };
  // Gateways forward the original method: every method a document can name is documented, the
  // others (WebDAV's and the like) and Envoy's prefixed paths get the same handler, unlisted.
  const documentedMethods = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'TRACE'];
  app.route({ method: documentedMethods, url: FORWARD_AUTH_PATH, schema, handler });
  app.route({ method: METHODS.filter((m) => !documentedMethods.includes(m) && m !== 'HEAD'), url: FORWARD_AUTH_PATH, schema: { ...schema, hide: true }, handler });
  app.route({ method: METHODS.filter((m) => m !== 'HEAD'), url: `${FORWARD_AUTH_PATH}/*`, schema: { ...schema, hide: true }, handler });
}

function answer(reply: FastifyReply, d: AccessDecision): FastifyReply {
  reply.header('cache-control', 'no-store');
  if (d.allow) return reply.code(200).type('text/plain').send('');
  if (d.status === 302) {
    const c = d.cookie;
    const cookie = `${c.name}=${c.value}; Path=/; HttpOnly; SameSite=Lax; Max-Age=${c.maxAgeSeconds}${c.secure ? '; Secure' : ''}`;
    return reply.code(302).header('set-cookie', cookie).header('location', d.location).type('text/plain').send('');
  }
  return reply.code(d.status).type('text/html; charset=utf-8').send(PAGES[d.why]);
}
