import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type JWK, type CryptoKey } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTokenIssuer, createTokenVerifier, InvalidTokenError } from '../../../src/http/auth.js';
import { combinedVerifier, createOidcVerifier, mapClaims } from '../../../src/http/oidc.js';
import { harness, SECRET } from './harness.js';

/**
 * Tokens of an OIDC issuer, verified against its JWKS served by a real local HTTP server whose
 * keys rotate during the test.
 */
const ISSUER = 'https://id.example.org/realms/ctf';
const AUDIENCE = 'challenge-engine';
interface Signer { kid: string; alg: string; privateKey: CryptoKey; jwk: JWK }
let server: Server;
let jwksUrl: string;
let published: JWK[] = [];
let fetches = 0;

async function signer(alg: 'RS256' | 'ES256' | 'EdDSA', kid: string): Promise<Signer> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { kid, alg, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

function sign(s: Signer, claims: Record<string, unknown> = {}, opts: { iss?: string; aud?: string; exp?: number } = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ sub: 'alice', ...claims })
    .setProtectedHeader({ alg: s.alg, kid: s.kid, typ: 'JWT' })
    .setIssuer(opts.iss ?? ISSUER)
    .setAudience(opts.aud ?? AUDIENCE)
    .setIssuedAt(now)
    .setExpirationTime(opts.exp ?? now + 300)
    .sign(s.privateKey);
}

const options = (over: Partial<Parameters<typeof createOidcVerifier>[0]> = {}) => ({
  jwksUrl,
  issuer: ISSUER,
  audience: AUDIENCE,
  claims: { user: 'sub', team: 'team', admin: 'groups' },
  adminValue: 'ctf-admins',
  cacheSeconds: 600,
  cooldownSeconds: 30,
  ...over,
});

async function refused(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidTokenError);
    return (err as Error).message;
  }
  throw new Error('the token was accepted');
}

beforeAll(async () => {
  server = createServer((req, res) => {
    fetches += 1;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ keys: published }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  jwksUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks`;
});

afterAll(() => new Promise<void>((r) => server.close(() => r())));

describe('tokens of an OIDC / JWKS issuer', () => {
  it('accepts RS256, ES256 and EdDSA tokens of published keys and maps user, team and admin claims', async () => {
    const keys = await Promise.all([signer('RS256', 'rsa-1'), signer('ES256', 'ec-1'), signer('EdDSA', 'ed-1')]);
    published = keys.map((k) => k.jwk);
    const v = createOidcVerifier(options());
    for (const k of keys) expect(await v.verify(await sign(k, { team: 'red' }))).toEqual({ user: 'alice', team: 'red', admin: false });
    expect(await v.verify(await sign(keys[0], { groups: ['players', 'ctf-admins'] }))).toEqual({ user: 'alice', admin: true });
  });

  it('follows a key rotation: current and previous keys while published, the removed one refused after the refresh', async () => {
    const [a, b, c] = await Promise.all([signer('ES256', 'key-a'), signer('ES256', 'key-b'), signer('ES256', 'key-c')]);
    published = [b.jwk, a.jwk];
    const v = createOidcVerifier(options({ cacheSeconds: 1, cooldownSeconds: 1 }));
    const tokenB = await sign(b, { sub: 'bob' });
    expect((await v.verify(await sign(a))).user).toBe('alice');
    expect((await v.verify(tokenB)).user).toBe('bob');
    // Rotation: b is retired, c is new. A token of c (unknown kid) makes the engine fetch again.
    published = [a.jwk, c.jwk];
    await new Promise((r) => setTimeout(r, 1100));
    expect((await v.verify(await sign(c, { sub: 'carol' }))).user).toBe('carol');
    expect(await refused(v.verify(await sign(b, { sub: 'bob2' })))).toMatch(/does not publish|signature/);
    expect((await v.verify(await sign(a, { sub: 'alice2' }))).user).toBe('alice2');
  });

  it('bounds the refreshes a flood of unknown kids causes: at most one per cool-down', async () => {
    const k = await signer('ES256', 'known');
    published = [k.jwk];
    const v = createOidcVerifier(options({ cooldownSeconds: 30 }));
    await v.verify(await sign(k));
    const before = fetches;
    const strangers = await Promise.all(Array.from({ length: 40 }, (_, i) => signer('ES256', `made-up-${i}`)));
    for (const s of strangers) await refused(v.verify(await sign(s)));
    expect(fetches - before).toBeLessThanOrEqual(1);
  });

  it('refuses alg confusion, alg none, expired tokens and tokens of another issuer or audience', async () => {
    const rsa = await signer('RS256', 'rsa-c');
    published = [rsa.jwk];
    const oidc = createOidcVerifier(options());
    const both = combinedVerifier(createTokenVerifier(SECRET), oidc);
    // HS256 with the issuer's public key as the HMAC secret.
    const pem = await exportSPKI((await generateKeyPair('RS256', { extractable: true })).publicKey);
    const publicJwk = JSON.stringify(rsa.jwk);
    for (const secret of [pem, publicJwk]) {
      const confused = await new SignJWT({ sub: 'mallory', role: 'admin' }).setProtectedHeader({ alg: 'HS256', kid: 'rsa-c' }).setIssuer(ISSUER).setAudience(AUDIENCE).setExpirationTime('5m').sign(new TextEncoder().encode(secret));
      await refused(both.verify(confused));
      await refused(oidc.verify(confused));
    }
    const body = Buffer.from(JSON.stringify({ sub: 'mallory', iss: ISSUER, aud: AUDIENCE, exp: Math.floor(Date.now() / 1000) + 300 })).toString('base64url');
    const none = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url')}.${body}.`;
    await refused(both.verify(none));
    await refused(oidc.verify(none));
    expect(await refused(oidc.verify(await sign(rsa, {}, { exp: Math.floor(Date.now() / 1000) - 120 })))).toBe('the token has expired');
    expect(await refused(oidc.verify(await sign(rsa, {}, { iss: 'https://evil.example.org' })))).toBe('the token was not issued for this API');
    expect(await refused(oidc.verify(await sign(rsa, {}, { aud: 'another-api' })))).toBe('the token was not issued for this API');
    expect(await refused(oidc.verify(await sign(await signer('RS256', 'not-published'))))).toMatch(/does not publish/);
  });

  it('keeps shared-secret tokens working beside the issuer, each verified by its own side', async () => {
    const k = await signer('EdDSA', 'ed-2');
    published = [k.jwk];
    const both = combinedVerifier(createTokenVerifier(SECRET), createOidcVerifier(options()));
    const shared = await createTokenIssuer(SECRET).issue({ user: 'dora', team: 'blue', ttlSeconds: 60 });
    expect(await both.verify(shared)).toEqual({ user: 'dora', team: 'blue', admin: false });
    expect((await both.verify(await sign(k))).user).toBe('alice');
  });

  it('maps nested claims and refuses ids that are not ids', () => {
    const o = { claims: { user: 'preferred_username', team: 'ctf.team', admin: 'realm_access.roles' }, adminValue: 'admin' };
    expect(mapClaims({ preferred_username: 'eve', ctf: { team: 'green' }, realm_access: { roles: ['admin'] } }, o)).toEqual({ user: 'eve', team: 'green', admin: true });
    expect(() => mapClaims({ preferred_username: 'eve <script>' }, o)).toThrow(/not a user id/);
    expect(() => mapClaims({ preferred_username: 'eve', ctf: { team: 42 } }, o)).toThrow(/not a team id/);
  });

  it('answers 401 problems through the API for every refused token, 200 for a good one', async () => {
    const k = await signer('RS256', 'rsa-api');
    published = [k.jwk];
    const { app } = await harness({ tokens: combinedVerifier(createTokenVerifier(SECRET), createOidcVerifier(options())) });
    const ok = await app.inject({ method: 'GET', url: '/api/challenges', headers: { authorization: `Bearer ${await sign(k)}` } });
    expect(ok.statusCode).toBe(200);
    const bad = await app.inject({ method: 'GET', url: '/api/challenges', headers: { authorization: `Bearer ${await sign(k, {}, { aud: 'x' })}` } });
    expect(bad.statusCode).toBe(401);
    expect(bad.headers['www-authenticate']).toContain('invalid_token');
  });
});
