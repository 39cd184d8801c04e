import { Writable } from 'node:stream';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { pino } from 'pino';
import { buildApp, type AppDeps } from '../../../src/http/app.js';
import { createTokenIssuer, createTokenVerifier } from '../../../src/http/auth.js';
import { createMetrics, type Metrics } from '../../../src/metrics.js';
import { FakeSessionService } from './fake-service.js';

export const SECRET = 'test-secret-of-at-least-32-characters!';

/** Everything a test needs: the app, its fake service, captured log text and tokens. */
export interface Harness {
  app: FastifyInstance;
  service: FakeSessionService;
  metrics: Metrics;
  logs: string[];
  token: (user?: string, opts?: { team?: string; admin?: boolean; ttlSeconds?: number }) => Promise<string>;
  auth: (user?: string, opts?: { admin?: boolean }) => Promise<{ authorization: string }>;
}

export async function harness(overrides: Partial<AppDeps> = {}): Promise<Harness> {
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logs.push(chunk.toString('utf8'));
      cb();
    },
  });
  // A logger with no redaction of its own: the API must be safe under whatever logger it gets.
  const log = pino({ level: 'trace' }, sink);
  const service = new FakeSessionService();
  const metrics = createMetrics();
  const app = await buildApp({ service, tokens: createTokenVerifier(SECRET), metrics, log, corsOrigins: [], ...overrides });
  const issuer = createTokenIssuer(SECRET);
  const token: Harness['token'] = (user = 'alice', opts = {}) => issuer.issue({ user, ttlSeconds: opts.ttlSeconds ?? 600, ...opts });
  return {
    app,
    service,
    metrics,
    logs,
    token,
    auth: async (user, opts) => ({ authorization: `Bearer ${await token(user, opts)}` }),
  };
}

/** The parsed problem body, after asserting the response is one. */
export function problemOf(res: LightMyRequestResponse): { type: string; title: string; status: number; detail: string; instance?: string } {
  if (!res.headers['content-type']?.toString().startsWith('application/problem+json')) {
    throw new Error(`expected a problem+json response, got ${res.statusCode} ${String(res.headers['content-type'])}: ${res.body}`);
  }
  return res.json();
}
