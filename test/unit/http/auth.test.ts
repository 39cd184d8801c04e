import { SignJWT, decodeJwt } from 'jose';
import { describe, expect, it } from 'vitest';
import { InvalidTokenError, TOKEN_AUDIENCE, TOKEN_ISSUER, createTokenIssuer, createTokenVerifier, issueToken } from '../../../src/http/auth.js';
import { SECRET, harness, problemOf } from './harness.js';

const key = new TextEncoder().encode(SECRET);
const now = () => Math.floor(Date.now() / 1000);
const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');

/** A token with every claim under the test's control. */
function craft(claims: Record<string, unknown>, alg = 'HS256', secret: Uint8Array = key): Promise<string> {
  const base = { sub: 'alice', role: 'player', iss: TOKEN_ISSUER, aud: TOKEN_AUDIENCE, iat: now(), exp: now() + 600 };
  const payload = Object.fromEntries(Object.entries({ ...base, ...claims }).filter(([, v]) => v !== undefined));
  return new SignJWT(payload).setProtectedHeader({ alg }).sign(secret);
}

describe('tokens', () => {
  it('round-trips user, team and role through issue and verify', async () => {
    const verifier = createTokenVerifier(SECRET);
    await expect(verifier.verify(await issueToken(SECRET, { user: 'alice@example.org', team: 'red', ttlSeconds: 60 }))).resolves.toEqual({
      user: 'alice@example.org',
      team: 'red',
      admin: false,
    });
    await expect(verifier.verify(await issueToken(SECRET, { user: 'root', admin: true, ttlSeconds: 60 }))).resolves.toEqual({ user: 'root', admin: true });
  });

  it('issues HS256 tokens with the documented claims and lifetime', async () => {
    const token = await createTokenIssuer(SECRET, () => new Date(1_700_000_000_000)).issue({ user: 'bob', ttlSeconds: 7200 });
    expect(JSON.parse(Buffer.from(token.split('.')[0] ?? '', 'base64url').toString())).toMatchObject({ alg: 'HS256' });
    expect(decodeJwt(token)).toEqual({ sub: 'bob', role: 'player', iss: TOKEN_ISSUER, aud: TOKEN_AUDIENCE, iat: 1_700_000_000, exp: 1_700_007_200 });
  });

  it('refuses short secrets, bad user ids and non-positive lifetimes', async () => {
    expect(() => createTokenVerifier('x'.repeat(31))).toThrow(/at least 32/);
    expect(() => createTokenIssuer('short')).toThrow(/at least 32/);
    await expect(issueToken(SECRET, { user: 'has space', ttlSeconds: 60 })).rejects.toThrow(/user/);
    await expect(issueToken(SECRET, { user: 'alice', team: '-x', ttlSeconds: 60 })).rejects.toThrow(/team/);
    await expect(issueToken(SECRET, { user: 'alice', ttlSeconds: 0 })).rejects.toThrow(/ttlSeconds/);
  });

  it('accepts clock skew up to 30 s and no more', async () => {
    const verifier = createTokenVerifier(SECRET);
    await expect(verifier.verify(await craft({ exp: now() - 20 }))).resolves.toMatchObject({ user: 'alice' });
    await expect(verifier.verify(await craft({ nbf: now() + 20 }))).resolves.toMatchObject({ user: 'alice' });
    await expect(verifier.verify(await craft({ exp: now() - 40 }))).rejects.toBeInstanceOf(InvalidTokenError);
    await expect(verifier.verify(await craft({ nbf: now() + 40 }))).rejects.toBeInstanceOf(InvalidTokenError);
  });

  it('remembers a verified token but still enforces its expiry, and never a token that failed', async () => {
    let clock = Date.now();
    const verifier = createTokenVerifier(SECRET, () => new Date(clock));
    const token = await craft({ exp: now() + 60 });
    const first = await verifier.verify(token);
    expect(await verifier.verify(token)).toBe(first);
    expect(Object.isFrozen(first)).toBe(true);
    // Past exp plus the 30 s tolerance, the remembered token is refused like any other.
    clock += 95_000;
    await expect(verifier.verify(token)).rejects.toThrow(/expired/);
    clock -= 95_000;
    // A token that failed (here: nbf in the future) is checked again, and passes only once valid.
    const early = await craft({ nbf: now() + 100 });
    await expect(verifier.verify(early)).rejects.toThrow(/not valid yet/);
    await expect(verifier.verify(early)).rejects.toThrow(/not valid yet/);
    clock += 75_000;
    await expect(verifier.verify(early)).resolves.toMatchObject({ user: 'alice' });
    // One byte off in the signature of a remembered token: verified afresh, and refused.
    const sig = token.slice(token.lastIndexOf('.') + 1);
    const flipped = `${token.slice(0, token.lastIndexOf('.') + 1)}${sig[0] === 'A' ? 'B' : 'A'}${sig.slice(1)}`;
    await expect(verifier.verify(flipped)).rejects.toThrow(/signature is invalid/);
  });
});

describe('authentication of /api routes', () => {
  const otherKey = new TextEncoder().encode('another-secret-that-is-long-enough-to-use');
  const cases: [string, () => Promise<string | undefined>, RegExp][] = [
    ['no Authorization header', () => Promise.resolve(undefined), /needs an "Authorization: Bearer/],
    ['a Basic credential', () => Promise.resolve('Basic YWxpY2U6cGFzcw=='), /needs an "Authorization: Bearer/],
    ['an empty bearer', () => Promise.resolve('Bearer '), /needs an "Authorization: Bearer/],
    ['a malformed token', () => Promise.resolve('Bearer not.a.jwt'), /malformed/],
    ['a bad signature', async () => `Bearer ${await craft({}, 'HS256', otherKey)}`, /signature is invalid/],
    ['alg none', () => Promise.resolve(`Bearer ${b64({ alg: 'none', typ: 'JWT' })}.${b64({ sub: 'alice', role: 'admin', iss: TOKEN_ISSUER, aud: TOKEN_AUDIENCE, exp: now() + 600 })}.`), /must be signed with HS256/],
    ['alg HS512 with the right key', async () => `Bearer ${await craft({}, 'HS512')}`, /must be signed with HS256/],
    ['an expired token', async () => `Bearer ${await craft({ iat: now() - 3600, exp: now() - 60 })}`, /expired/],
    ['nbf in the future', async () => `Bearer ${await craft({ nbf: now() + 120 })}`, /not valid yet/],
    ['iat in the future', async () => `Bearer ${await craft({ iat: now() + 120 })}`, /issued in the future/],
    ['no exp', async () => `Bearer ${await craft({ exp: undefined })}`, /no exp claim/],
    ['another audience', async () => `Bearer ${await craft({ aud: 'scoreboard' })}`, /not issued for this API/],
    ['another issuer', async () => `Bearer ${await craft({ iss: 'someone' })}`, /not issued for this API/],
    ['a sub that is not a user id', async () => `Bearer ${await craft({ sub: 'alice smith' })}`, /sub must be a user id/],
    ['a bad team', async () => `Bearer ${await craft({ team: '../x' })}`, /team must be a team id/],
    ['an unknown role', async () => `Bearer ${await craft({ role: 'root' })}`, /role must be player or admin/],
    ['no role', async () => `Bearer ${await craft({ role: undefined })}`, /role must be player or admin/],
  ];

  it.each(cases)('rejects %s with 401 before touching the service', async (_name, header, detail) => {
    const h = await harness();
    const authorization = await header();
    const res = await h.app.inject({ method: 'GET', url: '/api/sessions', headers: authorization === undefined ? {} : { authorization } });
    expect(res.statusCode).toBe(401);
    const problem = problemOf(res);
    expect(problem).toMatchObject({ status: 401, type: 'urn:challenge-engine:problem:unauthorized' });
    expect(problem.detail).toMatch(detail);
    const challenge = String(res.headers['www-authenticate']);
    expect(challenge).toMatch(/^Bearer realm="challenge-engine"/);
    // error="invalid_token" only when a bearer token was actually presented (RFC 6750 section 3.1).
    expect(challenge.includes('error="invalid_token"')).toBe(/^Bearer \S/.test(authorization ?? ''));
    expect(h.service.calls).toEqual([]);
  });

  it('checks the token before reading the body', async () => {
    const h = await harness();
    const res = await h.app.inject({ method: 'POST', url: '/api/flags', headers: { 'content-type': 'application/json' }, payload: '{not json' });
    expect(res.statusCode).toBe(401);
  });

  it('accepts a valid token on every /api route', async () => {
    const h = await harness();
    const headers = await h.auth('alice');
    const s = h.service.addSession('alice', 'web-notes');
    const requests = [
      { method: 'GET', url: '/api/challenges' },
      { method: 'POST', url: '/api/challenges', payload: { challenge: 'pwn-echo' } },
      { method: 'GET', url: '/api/sessions' },
      { method: 'GET', url: `/api/sessions/${s.id}` },
      { method: 'POST', url: `/api/sessions/${s.id}/extend` },
      { method: 'POST', url: '/api/flags', payload: { sessionId: s.id, flag: 'x' } },
      { method: 'POST', url: '/api/flags/batch', payload: { submissions: [{ sessionId: s.id, flag: 'x' }] } },
      { method: 'DELETE', url: `/api/challenges/${s.id}` },
    ] as const;
    for (const r of requests) {
      const res = await h.app.inject({ ...r, headers });
      expect([r.method, r.url, res.statusCode]).toEqual([r.method, r.url, expect.toSatisfy((c: number) => c >= 200 && c < 300)]);
      const noAuth = await h.app.inject({ ...r });
      expect([r.method, r.url, noAuth.statusCode]).toEqual([r.method, r.url, 401]);
    }
  });

  it('passes team and admin to the service as the caller', async () => {
    const h = await harness();
    const token = await h.token('carol', { team: 'blue' });
    await h.app.inject({ method: 'GET', url: '/api/sessions', headers: { authorization: `Bearer ${token}` } });
    expect(h.service.callsOf('list').at(-1)?.[0]).toEqual({ user: 'carol', team: 'blue', admin: false });
  });
});

describe('players and admins', () => {
  it('lets only admins list every session with all=true', async () => {
    const h = await harness();
    h.service.addSession('alice', 'web-notes');
    h.service.addSession('bob', 'web-notes');
    const player = await h.app.inject({ method: 'GET', url: '/api/sessions?all=true', headers: await h.auth('alice') });
    expect(player.statusCode).toBe(200);
    expect(player.json<{ sessions: { user: string }[] }>().sessions.map((s) => s.user)).toEqual(['alice']);
    expect(h.service.callsOf('list').at(-1)?.[1]).toBe(false);

    const admin = await h.app.inject({ method: 'GET', url: '/api/sessions?all=true', headers: await h.auth('root', { admin: true }) });
    expect(admin.json<{ sessions: { user: string }[] }>().sessions.map((s) => s.user).sort()).toEqual(['alice', 'bob']);
    expect(h.service.callsOf('list').at(-1)?.[1]).toBe(true);

    const adminOwn = await h.app.inject({ method: 'GET', url: '/api/sessions', headers: await h.auth('root', { admin: true }) });
    expect(adminOwn.json<{ sessions: unknown[] }>().sessions).toEqual([]);
  });

  it("hides other players' sessions (404) but lets admins read and stop them", async () => {
    const h = await harness();
    const bobs = h.service.addSession('bob', 'web-notes');
    const asAlice = await h.auth('alice');
    expect((await h.app.inject({ method: 'GET', url: `/api/sessions/${bobs.id}`, headers: asAlice })).statusCode).toBe(404);
    expect((await h.app.inject({ method: 'DELETE', url: `/api/challenges/${bobs.id}`, headers: asAlice })).statusCode).toBe(404);
    expect(h.service.sessions.has(bobs.id)).toBe(true);

    const asAdmin = await h.auth('root', { admin: true });
    const read = await h.app.inject({ method: 'GET', url: `/api/sessions/${bobs.id}`, headers: asAdmin });
    expect(read.json()).toMatchObject({ session: { id: bobs.id, user: 'bob' } });
    expect((await h.app.inject({ method: 'DELETE', url: `/api/challenges/${bobs.id}`, headers: asAdmin })).statusCode).toBe(204);
    expect(h.service.sessions.has(bobs.id)).toBe(false);
  });
});
