import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { SignJWT, UnsecuredJWT } from 'jose';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Caches } from '../../src/read-model/caches.js';
import { deriveFlag } from '../../src/flags/derive.js';
import { buildApp } from '../../src/http/app.js';
import { createTokenVerifier, TOKEN_AUDIENCE, TOKEN_ISSUER } from '../../src/http/auth.js';
import { DEFAULT_WRONG_FLAG_LIMITS } from '../../src/http/flag-limiter.js';
import { createWriter } from '../../src/kube/writes.js';
import { createMetrics } from '../../src/metrics.js';
import { KubeSessionService } from '../../src/sessions/service.js';
import { installSamples, TEST_FLAG_KEY, TEST_TOKEN_SECRET } from '../support/engine.js';
import { useCluster, waitUntil } from '../support/kube.js';
import { token } from './helpers.js';

/**
 * Brute force of flags and forged tokens against the real API and service (default wrong-flag
 * limits: 10 a minute per user and challenge, 30 per user). The clock is faked (Date only) so
 * the limiter's one-minute window can pass without waiting for it (it still advances in real time).
 */
const cluster = useCluster(import.meta.filename);
const PER_SCOPE = DEFAULT_WRONG_FLAG_LIMITS.wrongFlagsPerMinutePerSession;
const PER_USER = DEFAULT_WRONG_FLAG_LIMITS.wrongFlagsPerMinutePerUser;
let app: FastifyInstance;
let caches: Caches;

beforeAll(async () => {
  await installSamples(cluster.kube, cluster.namespace);
  // Before the app exists, so that its limiter reads the fake clock.
  vi.useFakeTimers({ toFake: ['Date'], shouldAdvanceTime: true });
  const log = pino({ level: 'silent' });
  const metrics = createMetrics();
  caches = Caches.watching(cluster.kube, cluster.namespace, log);
  await caches.start();
  const service = new KubeSessionService({
    kube: cluster.kube,
    caches,
    writer: createWriter(cluster.kube, { component: 'challenge-engine', instance: 'reliability' }),
    log,
    metrics,
    flagKey: Buffer.from(TEST_FLAG_KEY),
    maxSessionsPerUser: 3,
  });
  app = await buildApp({ service, tokens: createTokenVerifier(TEST_TOKEN_SECRET), metrics, log, corsOrigins: [] });
});

afterAll(async () => {
  vi.useRealTimers();
  await app?.close();
  await caches?.stop();
});

async function as(user: string) {
  return { authorization: `Bearer ${await token(user)}` };
}

function problem(r: LightMyRequestResponse) {
  return r.json<{ type: string; status: number; detail: string }>();
}

describe('flag brute force', () => {
  it(`limits wrong flags to ${PER_SCOPE} a minute per session, blocks even the right flag meanwhile, and accepts it after the window`, async () => {
    const h = await as('brute-one');
    const spawn = await app.inject({ method: 'POST', url: '/api/challenges', headers: h, payload: { challenge: 'web-notes' } });
    expect(spawn.statusCode).toBe(201);
    const id = spawn.json<{ session: { id: string } }>().session.id;
    const session = await waitUntil('the session cached with its uid', () => {
      const p = caches.session(id);
      return p?.ok && p.value.metadata.uid ? p.value : undefined;
    });
    const flag = deriveFlag(TEST_FLAG_KEY, { challenge: 'web-notes', sessionUid: session.metadata.uid ?? '', user: 'brute-one' }, { format: 'CTF{%s}', length: 32 });
    const submit = (f: string, headers = h) => app.inject({ method: 'POST', url: '/api/flags', headers, payload: { sessionId: id, flag: f } });

    for (let i = 0; i < PER_SCOPE; i++) {
      const r = await submit(`CTF{guess-${i}}`);
      expect(r.statusCode, `guess ${i}`).toBe(200);
      expect(r.json()).toEqual({ correct: false });
    }
    const blocked = await submit('CTF{one-more}');
    expect(blocked.statusCode).toBe(429);
    expect(problem(blocked).type).toBe('urn:challenge-engine:problem:rate-limited');
    const retryAfter = Number(blocked.headers['retry-after']);
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    // A blocked caller learns nothing, not even that a guess was right.
    expect((await submit(flag)).statusCode).toBe(429);
    // Switching from the session id to the challenge name does not reset the budget.
    expect((await app.inject({ method: 'POST', url: '/api/flags', headers: h, payload: { challenge: 'web-notes', flag: 'CTF{other-form}' } })).statusCode).toBe(429);
    // Another player is not affected.
    const other = await app.inject({ method: 'POST', url: '/api/flags', headers: await as('bystander'), payload: { challenge: 'web-notes', flag: 'CTF{x}' } });
    expect(other.statusCode).toBe(200);

    vi.setSystemTime(Date.now() + retryAfter * 1000 + 1_000);
    const accepted = await submit(flag);
    expect(accepted.statusCode).toBe(200);
    expect(accepted.json()).toEqual({ correct: true });
    await waitUntil('solved recorded', () => caches.session(id)?.ok && (caches.session(id) as { value: { status?: { solved?: boolean } } }).value.status?.solved === true);
  });

  it(`limits wrong flags to ${PER_USER} a minute per user across challenges`, async () => {
    const h = await as('brute-many');
    const statuses: number[] = [];
    for (const challenge of ['web-notes', 'pwn-echo', 'sql-two-tier']) {
      for (let i = 0; i < PER_SCOPE; i++) statuses.push((await app.inject({ method: 'POST', url: '/api/flags', headers: h, payload: { challenge, flag: `CTF{${challenge}-${i}}` } })).statusCode);
    }
    expect(statuses).toEqual(Array(PER_USER).fill(200));
    const fresh = await app.inject({ method: 'POST', url: '/api/flags', headers: h, payload: { challenge: 'crypto-baby-rsa', flag: 'CTF{x}' } });
    expect(fresh.statusCode, 'a challenge not tried yet is still over the per-user limit').toBe(429);
    expect(Number(fresh.headers['retry-after'])).toBeGreaterThanOrEqual(1);
  });

  it('applies the same limit inside a batch, item by item', async () => {
    const h = await as('brute-batch');
    const submissions = Array.from({ length: PER_SCOPE + 3 }, (_, i) => ({ challenge: 'pwn-echo', flag: `flag{${i}}` }));
    const r = await app.inject({ method: 'POST', url: '/api/flags/batch', headers: h, payload: { submissions } });
    expect(r.statusCode).toBe(200);
    const results = r.json<{ results: { correct?: boolean; error?: { status: number; retryAfterSeconds?: number } }[] }>().results;
    expect(results.slice(0, PER_SCOPE)).toEqual(Array(PER_SCOPE).fill({ correct: false }));
    for (const item of results.slice(PER_SCOPE)) {
      expect(item.error?.status).toBe(429);
      expect(item.error?.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    }
  });
});

describe('forged and unusable tokens', () => {
  const key = new TextEncoder().encode(TEST_TOKEN_SECRET);
  const now = () => Math.floor(Date.now() / 1000);
  const claims = (over: Record<string, unknown> = {}) => ({ role: 'admin', sub: 'eve', iss: TOKEN_ISSUER, aud: TOKEN_AUDIENCE, iat: now(), exp: now() + 3600, ...over });
  const sign = (payload: Record<string, unknown>, secret: Uint8Array = key, alg = 'HS256') => new SignJWT(payload).setProtectedHeader({ alg, typ: 'JWT' }).sign(secret);
  const without = (name: string) => {
    const c: Record<string, unknown> = claims();
    delete c[name];
    return c;
  };

  it('accepts a well-formed token (control) and rejects every forged, expired or future-dated one with 401', async () => {
    const ok = await app.inject({ method: 'GET', url: '/api/sessions', headers: { authorization: `Bearer ${await sign(claims({ exp: now() + 3600 }))}` } });
    expect(ok.statusCode).toBe(200);
    const valid = await sign(claims());
    const [vh, vp] = valid.split('.');
    const cases: Record<string, string> = {
      'alg none': new UnsecuredJWT({ role: 'admin' }).setSubject('eve').setIssuer(TOKEN_ISSUER).setAudience(TOKEN_AUDIENCE).setIssuedAt().setExpirationTime('1h').encode(),
      'alg none header on a signed payload': `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${vp}.`,
      'signature stripped': `${vh}.${vp}.`,
      'wrong key': await sign(claims(), new TextEncoder().encode('another-secret-that-is-long-enough-1234567')),
      'HS512 with the right key': await sign(claims(), key, 'HS512'),
      'payload swapped under a valid signature': `${vh}.${Buffer.from(JSON.stringify(claims({ sub: 'root' }))).toString('base64url')}.${valid.split('.')[2]}`,
      'expired beyond the clock tolerance': await sign(claims({ iat: now() - 7200, exp: now() - 60 })),
      'not valid before a future time (nbf)': await sign(claims({ nbf: now() + 600 })),
      'issued in the future (iat)': await sign(claims({ iat: now() + 600 })),
      'another issuer': await sign(claims({ iss: 'someone-else' })),
      'another audience': await sign(claims({ aud: 'another-api' })),
      'no expiry': await sign(without('exp')),
      'no subject': await sign(without('sub')),
      'a subject that is no user id': await sign(claims({ sub: '../../admin' })),
      'an unknown role': await sign(claims({ role: 'superuser' })),
      'a token of 9000 characters': `${vh}.${'A'.repeat(9000)}.x`,
    };
    const accepted: string[] = [];
    for (const [name, t] of Object.entries(cases)) {
      for (const req of [
        { method: 'GET' as const, url: '/api/sessions?all=true' },
        { method: 'POST' as const, url: '/api/challenges', payload: { challenge: 'web-notes' } },
      ]) {
        const r = await app.inject({ ...req, headers: { authorization: `Bearer ${t}` } });
        if (r.statusCode !== 401) accepted.push(`${name}: ${req.method} ${req.url} -> ${r.statusCode}`);
        else expect(String(r.headers['www-authenticate']), name).toMatch(/error="invalid_token"/);
      }
    }
    expect(accepted).toEqual([]);
  });
});
