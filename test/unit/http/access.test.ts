import { describe, it, expect } from 'vitest';
import { harness } from './harness.js';

describe('POST /api/sessions/:id/access', () => {
  it("returns the single-use link for the caller's own session only", async () => {
    const h = await harness();
    const s = h.service.addSession('alice', 'web-notes');
    const mine = await h.app.inject({ method: 'POST', url: `/api/sessions/${s.id}/access`, headers: await h.auth('alice') });
    expect(mine.statusCode).toBe(200);
    expect(mine.json()).toEqual({ url: expect.stringContaining('/.challenge-engine/open?ticket=') as unknown, expiresAt: '2030-01-01T10:01:00.000Z' });
    const theirs = await h.app.inject({ method: 'POST', url: `/api/sessions/${s.id}/access`, headers: await h.auth('bob') });
    expect(theirs.statusCode).toBe(404);
    const anonymous = await h.app.inject({ method: 'POST', url: `/api/sessions/${s.id}/access` });
    expect(anonymous.statusCode).toBe(401);
  });

  it('refuses a malformed port name with a clear problem', async () => {
    const h = await harness();
    const s = h.service.addSession('alice', 'web-notes');
    const res = await h.app.inject({ method: 'POST', url: `/api/sessions/${s.id}/access?port=Not_A_Port`, headers: await h.auth('alice') });
    expect(res.statusCode).toBe(400);
    expect(res.json<{ detail: string }>().detail).toMatch(/port: must be an exposed port name/);
  });
});

describe('forward auth', () => {
  it('passes the original host, URI and cookies to the decision, from Traefik-style headers', async () => {
    const h = await harness();
    h.service.decision = { allow: true };
    const res = await h.app.inject({
      method: 'GET',
      url: '/gateway/auth',
      headers: { 'x-forwarded-host': 'i0.ctf.example:8000', 'x-forwarded-uri': '/notes?id=1', 'x-forwarded-method': 'POST', cookie: 'a=b', 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(h.service.calls.at(-1)).toEqual({ method: 'authorize', args: [{ host: 'i0.ctf.example:8000', uri: '/notes?id=1', cookie: 'a=b' }] });
  });

  it('takes the host from Host and the URI from the path after the prefix (Envoy ext_authz), for every method', async () => {
    const h = await harness();
    h.service.decision = { allow: true };
    for (const method of ['POST', 'DELETE', 'PUT', 'OPTIONS'] as const) {
      const res = await h.app.inject({ method, url: '/gateway/auth/admin/panel?x=1', headers: { host: 'i1.ctf.example' }, payload: method === 'OPTIONS' ? undefined : 'ignored body' });
      expect(res.statusCode).toBe(200);
      expect(h.service.calls.at(-1)?.args[0]).toMatchObject({ host: 'i1.ctf.example', uri: '/admin/panel?x=1' });
    }
  });

  it('answers a valid link with a redirect that sets an HttpOnly host-only cookie', async () => {
    const h = await harness();
    h.service.decision = { allow: false, status: 302, location: '/', cookie: { name: '__Host-challenge-engine-access', value: 'c1.uid.123.mac', secure: true, maxAgeSeconds: 3600 } };
    const res = await h.app.inject({ method: 'GET', url: '/gateway/auth', headers: { 'x-forwarded-host': 'i0.ctf.example' } });
    expect(res.statusCode).toBe(302);
    expect(res.headers.location).toBe('/');
    const cookie = String(res.headers['set-cookie']);
    expect(cookie).toBe('__Host-challenge-engine-access=c1.uid.123.mac; Path=/; HttpOnly; SameSite=Lax; Max-Age=3600; Secure');
    expect(cookie).not.toMatch(/Domain=/i);
  });

  it.each([
    [403, 'not-yours', /not open to you/],
    [403, 'bad-link', /no longer works/],
    [404, 'unknown-host', /No instance here/],
  ] as const)('answers %i (%s) with a plain page that echoes nothing of the request', async (status, why, text) => {
    const h = await harness();
    h.service.decision = { allow: false, status, why };
    const res = await h.app.inject({ method: 'GET', url: '/gateway/auth', headers: { 'x-forwarded-host': '<script>alert(1)</script>.ctf.example', 'x-forwarded-uri': '/.challenge-engine/open?ticket=SECRET-TICKET' } });
    expect(res.statusCode).toBe(status);
    expect(res.headers['content-type']).toMatch(/^text\/html/);
    expect(res.body).toMatch(text);
    expect(res.body).not.toMatch(/script|SECRET-TICKET|ctf\.example/);
    expect(h.logs.join('')).not.toContain('SECRET-TICKET');
  });
});
