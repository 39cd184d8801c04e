import { describe, expect, it } from 'vitest';
import { harness, problemOf } from './harness.js';

/** The public contract: every route the API promises. */
const CONTRACT = [
  ['get', '/api/challenges'],
  ['post', '/api/challenges'],
  ['delete', '/api/challenges/{sessionId}'],
  ['get', '/api/sessions'],
  ['get', '/api/sessions/{id}'],
  ['post', '/api/sessions/{id}/extend'],
  ['post', '/api/sessions/{id}/access'],
  // Gateways forward the original method to the forward-auth endpoint.
  ...(['get', 'post', 'put', 'patch', 'delete', 'options', 'trace'] as const).map((m) => [m, '/gateway/auth'] as const),
  ['post', '/api/flags'],
  ['post', '/api/flags/batch'],
  ['get', '/healthz'],
  ['get', '/readyz'],
  ['get', '/metrics'],
] as const;

type Operation = { security?: unknown[]; responses: Record<string, { content?: Record<string, unknown> }>; parameters?: { name: string; in: string }[] };
type Doc = { openapi: string; paths: Record<string, Record<string, Operation>>; components: { securitySchemes: Record<string, unknown>; schemas: Record<string, unknown> }; security: unknown[] };

describe('probes', () => {
  it('answers /healthz without a token', async () => {
    const { app } = await harness();
    const res = await app.inject({ method: 'GET', url: '/healthz' });
    expect([res.statusCode, res.json()]).toEqual([200, { status: 'ok' }]);
  });

  it('answers /readyz from service.ready()', async () => {
    const { app, service } = await harness();
    expect((await app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(200);
    service.isReady = false;
    const notReady = await app.inject({ method: 'GET', url: '/readyz' });
    expect(notReady.statusCode).toBe(503);
    expect(problemOf(notReady).type).toBe('urn:challenge-engine:problem:unavailable');
    service.failWith('ready', new Error('boom'));
    expect((await app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(503);
  });
});

describe('/metrics', () => {
  it('exposes request durations labelled by route pattern, method and status', async () => {
    const { app, auth, service } = await harness();
    const s = service.addSession('alice', 'web-notes');
    await app.inject({ method: 'GET', url: `/api/sessions/${s.id}`, headers: await auth() });
    await app.inject({ method: 'GET', url: '/api/sessions/other-one' });
    await app.inject({ method: 'GET', url: '/no/such/path' });
    const res = await app.inject({ method: 'GET', url: '/metrics' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(res.body).toContain('http_request_duration_seconds_count{route="/api/sessions/:id",method="GET",status_code="200"} 1');
    expect(res.body).toContain('http_request_duration_seconds_count{route="/api/sessions/:id",method="GET",status_code="401"} 1');
    expect(res.body).toContain('http_request_duration_seconds_count{route="unmatched",method="GET",status_code="404"} 1');
    expect(res.body).not.toContain(s.id);
  });
});

describe('API description', () => {
  it('lists every route of the contract with response schemas in /openapi.json', async () => {
    const { app } = await harness();
    const res = await app.inject({ method: 'GET', url: '/openapi.json' });
    expect(res.statusCode).toBe(200);
    const doc = res.json<Doc>();
    expect(doc.openapi).toMatch(/^3\./);
    const listed = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => [m, path]));
    expect(listed.sort()).toEqual([...CONTRACT].map(([m, p]) => [m, p]).sort());
    for (const [method, path] of CONTRACT) {
      const op = doc.paths[path]?.[method];
      const success = Object.keys(op?.responses ?? {}).filter((c) => c.startsWith('2'));
      expect([method, path, success.length > 0]).toEqual([method, path, true]);
    }
  });

  it('declares bearer auth, and no auth on the probes', async () => {
    const { app } = await harness();
    const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json<Doc>();
    expect(doc.components.securitySchemes.bearerAuth).toEqual({ type: 'http', scheme: 'bearer', bearerFormat: 'JWT' });
    expect(doc.paths['/api/flags']?.post?.security).toEqual([{ bearerAuth: [] }]);
    expect(doc.paths['/healthz']?.get?.security).toEqual([]);
    expect(Object.keys(doc.paths['/api/flags']?.post?.responses['429']?.content ?? {})).toEqual(['application/problem+json']);
    expect(doc.paths['/api/sessions/{id}']?.get?.parameters?.map((p) => `${p.in}:${p.name}`).sort()).toEqual(['path:id', 'query:wait']);
    expect(Object.keys(doc.components.schemas)).toEqual(expect.arrayContaining(['Session', 'CatalogueEntry', 'Problem', 'FlagSubmissionInput']));
  });

  it('serves interactive docs at /docs', async () => {
    const { app } = await harness();
    const res = await app.inject({ method: 'GET', url: '/docs' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/html/);
    expect(res.body).toMatch(/<html/i);
    expect((await app.inject({ method: 'GET', url: '/docs/json' })).json<Doc>().paths).toHaveProperty('/api/flags');
  });
});

describe('request ids', () => {
  it('echoes a safe incoming x-request-id and logs with it', async () => {
    const { app, logs } = await harness();
    const res = await app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'lb-7f3a.42:1' } });
    expect(res.headers['x-request-id']).toBe('lb-7f3a.42:1');
    expect(logs.some((l) => (JSON.parse(l) as { reqId?: string }).reqId === 'lb-7f3a.42:1')).toBe(true);
  });

  it.each([['has spaces in it'], ['x'.repeat(129)], ['<script>'], ['-leading-dash']])('replaces an unsafe id (%s) with a UUID', async (incoming) => {
    const { app } = await harness();
    const res = await app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': incoming } });
    expect(res.headers['x-request-id']).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  });

  it('is on error responses too', async () => {
    const { app } = await harness();
    for (const req of [{ method: 'GET', url: '/nope' }, { method: 'GET', url: '/api/sessions' }] as const) {
      const res = await app.inject({ ...req, headers: { 'x-request-id': 'abc' } });
      expect([res.statusCode >= 400, res.headers['x-request-id']]).toEqual([true, 'abc']);
    }
  });
});

describe('CORS', () => {
  it('allows only the configured origins', async () => {
    const { app, auth } = await harness({ corsOrigins: ['https://ctf.example.org'] });
    const headers = await auth();
    const allowed = await app.inject({ method: 'GET', url: '/api/challenges', headers: { ...headers, origin: 'https://ctf.example.org' } });
    expect(allowed.headers['access-control-allow-origin']).toBe('https://ctf.example.org');
    const other = await app.inject({ method: 'GET', url: '/api/challenges', headers: { ...headers, origin: 'https://evil.example' } });
    expect(other.headers['access-control-allow-origin']).toBeUndefined();
    const preflight = await app.inject({
      method: 'OPTIONS',
      url: '/api/flags',
      headers: { origin: 'https://ctf.example.org', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' },
    });
    expect(preflight.statusCode).toBe(204);
    expect(String(preflight.headers['access-control-allow-headers'])).toMatch(/Authorization/);
    // The preflight catch-all must not turn unknown paths into 405s.
    expect((await app.inject({ method: 'GET', url: '/nope' })).statusCode).toBe(404);
  });

  it('sends no CORS headers when no origin is configured', async () => {
    const { app } = await harness({ corsOrigins: [] });
    const res = await app.inject({ method: 'GET', url: '/healthz', headers: { origin: 'https://ctf.example.org' } });
    expect(res.headers['access-control-allow-origin']).toBeUndefined();
  });
});
