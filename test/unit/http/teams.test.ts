import { describe, expect, it } from 'vitest';
import { buildApp } from '../../../src/http/app.js';
import { createTokenIssuer, createTokenVerifier } from '../../../src/http/auth.js';
import { createMetrics } from '../../../src/metrics.js';
import { TEAM_REQUIRED } from '../../../src/sessions/owner.js';
import { silentLog } from '../../support/memory.js';
import { teamHarness } from '../sessions/team-harness.js';
import { problemOf, SECRET } from './harness.js';

/** Team-owned instances over HTTP: the real service on in-memory caches behind the real app. */

async function app() {
  const h = teamHarness();
  const server = await buildApp({ service: h.service, tokens: createTokenVerifier(SECRET), metrics: createMetrics(), log: silentLog, corsOrigins: [], rateLimit: false });
  const issuer = createTokenIssuer(SECRET);
  const as = async (user: string, team?: string) => ({ authorization: `Bearer ${await issuer.issue({ user, ...(team ? { team } : {}), ttlSeconds: 600 })}` });
  return { h, server, as };
}

type Problem = { type: string; status: number; detail: string };

describe('team-owned instances over HTTP', () => {
  it('says in the catalogue who owns an instance, and gives two members one instance (201, then 200)', async () => {
    const { server, as } = await app();
    const cat = await server.inject({ method: 'GET', url: '/api/challenges', headers: await as('ann', 'red') });
    expect(cat.json<{ challenges: { name: string; owner: string }[] }>().challenges.map((c) => [c.name, c.owner])).toEqual([['pwn-echo', 'user'], ['web-notes', 'team']]);
    const first = await server.inject({ method: 'POST', url: '/api/challenges', headers: await as('ann', 'red'), payload: { challenge: 'web-notes' } });
    const second = await server.inject({ method: 'POST', url: '/api/challenges', headers: await as('ben', 'red'), payload: { challenge: 'web-notes' } });
    expect([first.statusCode, second.statusCode]).toEqual([201, 200]);
    const session = first.json<{ session: { id: string } }>().session;
    expect(second.json()).toEqual({ session });
    expect(session).toMatchObject({ user: 'ann', team: 'red', owner: 'team' });
    expect((await server.inject({ method: 'GET', url: `/api/sessions/${session.id}`, headers: await as('ben', 'red') })).statusCode).toBe(200);
    expect((await server.inject({ method: 'GET', url: `/api/sessions/${session.id}`, headers: await as('cat', 'blue') })).statusCode).toBe(404);
  });

  it('answers a token without a team with a 403 team-required problem, on spawn and on the session', async () => {
    const { server, as } = await app();
    const id = (await server.inject({ method: 'POST', url: '/api/challenges', headers: await as('ann', 'red'), payload: { challenge: 'web-notes' } })).json<{ session: { id: string } }>().session.id;
    const loner = await as('lou');
    const requests = [
      { method: 'POST' as const, url: '/api/challenges', payload: { challenge: 'web-notes' } },
      { method: 'GET' as const, url: `/api/sessions/${id}` },
      { method: 'GET' as const, url: `/api/sessions/${id}?wait=1` },
      { method: 'POST' as const, url: `/api/sessions/${id}/extend` },
      { method: 'POST' as const, url: `/api/sessions/${id}/access` },
      { method: 'DELETE' as const, url: `/api/challenges/${id}` },
      { method: 'POST' as const, url: '/api/flags', payload: { sessionId: id, flag: 'CTF{x}' } },
      { method: 'POST' as const, url: '/api/flags', payload: { challenge: 'web-notes', flag: 'CTF{x}' } },
    ];
    for (const req of requests) {
      const res = await server.inject({ ...req, headers: loner });
      expect([`${req.method} ${req.url}`, res.statusCode, problemOf(res)]).toEqual([`${req.method} ${req.url}`, 403, { type: 'urn:challenge-engine:problem:team-required', title: 'Forbidden', status: 403, detail: TEAM_REQUIRED, instance: req.url.split('?')[0] }]);
    }
    const batch = await server.inject({ method: 'POST', url: '/api/flags/batch', headers: loner, payload: { submissions: [{ challenge: 'web-notes', flag: 'CTF{x}' }] } });
    expect(batch.json<{ results: { error: Problem }[] }>().results[0]?.error).toMatchObject({ type: 'urn:challenge-engine:problem:team-required', status: 403 });
    // The team's instance is still there, untouched.
    expect((await server.inject({ method: 'GET', url: `/api/sessions/${id}`, headers: await as('ben', 'red') })).statusCode).toBe(200);
  });

  it('documents the owner in the OpenAPI document, and 403 on the routes that can answer it', async () => {
    const { server } = await app();
    type Schema = { properties: Record<string, { enum?: string[]; description?: string }>; required?: string[] };
    const doc = (await server.inject({ method: 'GET', url: '/openapi.json' })).json<{ paths: Record<string, Record<string, { responses: Record<string, unknown> }>>; components: { schemas: Record<string, Schema> } }>();
    const { CatalogueEntry: entry, Session: session } = doc.components.schemas;
    expect(entry?.properties.owner?.enum).toEqual(['user', 'team']);
    expect(entry?.properties.owner?.description).toContain('team-required');
    expect(entry?.required).toContain('owner');
    expect(session?.properties.owner?.enum).toEqual(['user', 'team']);
    expect(session?.properties.team?.description).toMatch(/team/);
    for (const [path, method] of [['/api/challenges', 'post'], ['/api/challenges/{sessionId}', 'delete'], ['/api/sessions/{id}', 'get'], ['/api/sessions/{id}/extend', 'post'], ['/api/sessions/{id}/access', 'post'], ['/api/flags', 'post']] as const) {
      expect(Object.keys(doc.paths[path]?.[method]?.responses ?? {}), `${method} ${path}`).toContain('403');
    }
  });
});
