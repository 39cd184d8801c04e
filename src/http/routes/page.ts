import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import { z } from 'zod';
import type { ZodApp } from '../types.js';

/**
 * The player page at /play: the bundle of web/ (scripts/build-web.ts) served from one directory,
 * same origin as the API, with a strict Content-Security-Policy (own scripts and styles only,
 * nothing framed, no referrer). /play/config.json tells the page where the scoreboard is.
 */

export interface PageOptions {
  /** The built page (index.html, app.js, app.css). */
  dir: string;
  /** Where players whose sign-in expired are sent back to. */
  scoreboardUrl?: string;
}

/** dist/web beside the compiled engine (dist/http/routes -> dist/web), or under the repository when run from src/. */
export function defaultPageDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const compiled = join(here, '..', '..', 'web');
  return existsSync(join(compiled, 'index.html')) ? compiled : join(here, '..', '..', '..', 'dist', 'web');
}

const CSP = ["default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:", "connect-src 'self'", "base-uri 'none'", "form-action 'self'", "frame-ancestors 'none'"].join('; ');

export async function pageRoutes(app: ZodApp, opts: PageOptions): Promise<void> {
  const built = existsSync(join(opts.dir, 'index.html'));
  app.addHook('onSend', async (request, reply) => {
    if (request.url === '/play' || request.url.startsWith('/play/') || request.url.startsWith('/play?')) {
      reply.header('content-security-policy', CSP);
      reply.header('referrer-policy', 'no-referrer');
      reply.header('x-content-type-options', 'nosniff');
      reply.header('x-frame-options', 'DENY');
    }
  });
  const hide = { hide: true } as const;
  app.get('/play/config.json', { schema: { ...hide, response: { 200: z.object({ scoreboardUrl: z.string().optional() }) } } }, async (_request, reply) => {
    reply.header('cache-control', 'no-store');
    return opts.scoreboardUrl ? { scoreboardUrl: opts.scoreboardUrl } : {};
  });
  if (!built) {
    // An engine run from a checkout without `npm run build`: say so instead of a bare 404.
    app.get('/play', { schema: hide }, async (_request, reply) =>
      reply.code(503).type('text/plain; charset=utf-8').send('The player page is not built: run npm run build (or npm run build:web).\n'),
    );
    return;
  }
  await app.register(fastifyStatic, { root: opts.dir, prefix: '/play/', index: false, wildcard: false, serve: true, decorateReply: true, schemaHide: true });
  app.get('/play', { schema: hide }, async (_request, reply) => {
    reply.header('cache-control', 'no-cache');
    return reply.sendFile('index.html');
  });
}
