import { describe, expect, it } from 'vitest';
import { TEAM_REQUIRED } from '../../../src/sessions/owner.js';
import { DomainError } from '../../../src/sessions/types.js';
import { harness, problemOf } from './harness.js';

type Req = { method: 'GET' | 'POST' | 'DELETE' | 'PUT' | 'PATCH'; url: string; payload?: unknown; headers?: Record<string, string> };

const SID = 'web-notes-1';
const json = { 'content-type': 'application/json' };

/** [what, request, status, detail]: every one is a client mistake and must get a 4xx problem that says what is wrong. */
const badRequests: [string, Req, number, RegExp][] = [
  ['spawn: unknown field', { method: 'POST', url: '/api/challenges', payload: { challenge: 'web-notes', size: 'xl' } }, 400, /^body: Unrecognized key: "size"$/],
  ['spawn: wrong type', { method: 'POST', url: '/api/challenges', payload: { challenge: 5 } }, 400, /^body\.challenge: .*expected string/],
  ['spawn: no body', { method: 'POST', url: '/api/challenges' }, 400, /^body: .*expected object/],
  ['spawn: empty JSON body', { method: 'POST', url: '/api/challenges', payload: '', headers: json }, 400, /^body: .*expected object/],
  ['spawn: body is an array', { method: 'POST', url: '/api/challenges', payload: '[]', headers: json }, 400, /^body: .*expected object/],
  ['spawn: bad JSON', { method: 'POST', url: '/api/challenges', payload: '{"challenge": "web-', headers: json }, 400, /^the request body is not valid JSON$/],
  ['spawn: prototype poisoning', { method: 'POST', url: '/api/challenges', payload: '{"challenge":"web-notes","__proto__":{"admin":true}}', headers: json }, 400, /not valid JSON/],
  ['spawn: bad challenge name', { method: 'POST', url: '/api/challenges', payload: { challenge: 'Web_Notes' } }, 400, /^body\.challenge: must be a challenge name/],
  ['spawn: text/plain', { method: 'POST', url: '/api/challenges', payload: 'web-notes', headers: { 'content-type': 'text/plain' } }, 415, /must be application\/json/],
  ['spawn: form data', { method: 'POST', url: '/api/challenges', payload: 'challenge=web-notes', headers: { 'content-type': 'application/x-www-form-urlencoded' } }, 415, /must be application\/json/],
  ['spawn: oversized body', { method: 'POST', url: '/api/challenges', payload: { challenge: 'x'.repeat(17 * 1024) } }, 413, /larger than 16384 bytes/],
  ['spawn: wrong method', { method: 'PUT', url: '/api/challenges', payload: {} }, 405, /^PUT is not allowed on \/api\/challenges; use GET, HEAD, POST$/],
  ['stop: malformed id', { method: 'DELETE', url: '/api/challenges/Not_An_Id' }, 400, /^path\.sessionId: must be a session id/],
  ['stop: id too long', { method: 'DELETE', url: `/api/challenges/${'a'.repeat(53)}` }, 400, /^path\.sessionId: must be a session id/],
  ['list: bad all', { method: 'GET', url: '/api/sessions?all=maybe' }, 400, /^query\.all: /],
  ['list: wait above 60', { method: 'GET', url: '/api/sessions?wait=61' }, 400, /^query\.wait: must be a whole number of seconds from 0 to 60$/],
  ['list: fractional wait', { method: 'GET', url: '/api/sessions?wait=0.5' }, 400, /^query\.wait: /],
  ['list: wrong method', { method: 'DELETE', url: '/api/sessions' }, 405, /use GET, HEAD$/],
  ['get: malformed id', { method: 'GET', url: '/api/sessions/1abc' }, 400, /^path\.id: must be a session id/],
  ['get: wait above 60', { method: 'GET', url: `/api/sessions/${SID}?wait=61` }, 400, /^query\.wait: must be a whole number of seconds from 0 to 60$/],
  ['get: negative wait', { method: 'GET', url: `/api/sessions/${SID}?wait=-1` }, 400, /^query\.wait: /],
  ['get: fractional wait', { method: 'GET', url: `/api/sessions/${SID}?wait=1.5` }, 400, /^query\.wait: /],
  ['get: non-numeric wait', { method: 'GET', url: `/api/sessions/${SID}?wait=soon` }, 400, /^query\.wait: /],
  ['get: empty wait', { method: 'GET', url: `/api/sessions/${SID}?wait=` }, 400, /^query\.wait: /],
  ['extend: malformed id', { method: 'POST', url: '/api/sessions/UPPER/extend' }, 400, /^path\.id: /],
  ['extend: bad JSON', { method: 'POST', url: `/api/sessions/${SID}/extend`, payload: '{', headers: json }, 400, /not valid JSON/],
  ['extend: wrong method', { method: 'GET', url: `/api/sessions/${SID}/extend` }, 405, /use POST$/],
  ['flag: both targets', { method: 'POST', url: '/api/flags', payload: { sessionId: SID, challenge: 'web-notes', flag: 'x' } }, 400, /^body: give exactly one of sessionId and challenge$/],
  ['flag: no target', { method: 'POST', url: '/api/flags', payload: { flag: 'x' } }, 400, /^body: give exactly one of sessionId and challenge$/],
  ['flag: empty flag', { method: 'POST', url: '/api/flags', payload: { sessionId: SID, flag: '' } }, 400, /^body\.flag: must not be empty$/],
  ['flag: flag too long', { method: 'POST', url: '/api/flags', payload: { sessionId: SID, flag: 'f'.repeat(257) } }, 400, /^body\.flag: must be at most 256 characters$/],
  ['flag: flag not a string', { method: 'POST', url: '/api/flags', payload: { sessionId: SID, flag: ['a'] } }, 400, /^body\.flag: .*expected string/],
  ['flag: unknown field', { method: 'POST', url: '/api/flags', payload: { sessionId: SID, flag: 'x', user: 'bob' } }, 400, /Unrecognized key: "user"/],
  ['flag: malformed session id', { method: 'POST', url: '/api/flags', payload: { sessionId: 'x y', flag: 'x' } }, 400, /^body\.sessionId: must be a session id/],
  ['batch: no submissions', { method: 'POST', url: '/api/flags/batch', payload: { submissions: [] } }, 400, /^body\.submissions: must hold at least one submission$/],
  ['batch: 51 submissions', { method: 'POST', url: '/api/flags/batch', payload: { submissions: Array.from({ length: 51 }, () => ({ sessionId: SID, flag: 'x' })) } }, 400, /^body\.submissions: must hold at most 50 submissions$/],
  ['batch: one bad item', { method: 'POST', url: '/api/flags/batch', payload: { submissions: [{ sessionId: SID, flag: 'x' }, { sessionId: SID, flag: 'x' }, { sessionId: SID, flag: '' }] } }, 400, /^body\.submissions\.2\.flag: must not be empty$/],
  ['batch: not an object', { method: 'POST', url: '/api/flags/batch', payload: [{ sessionId: SID, flag: 'x' }] }, 400, /^body: .*expected object/],
  ['unknown route', { method: 'GET', url: '/api/nothing-here' }, 404, /^no route GET \/api\/nothing-here$/],
  ['unknown route outside /api', { method: 'POST', url: '/admin' }, 404, /^no route POST \/admin$/],
];

describe('bad requests', () => {
  it.each(badRequests)('%s -> %i problem', async (_what, req, status, detail) => {
    const h = await harness();
    h.service.addSession('alice', 'web-notes');
    const callsBefore = h.service.calls.length;
    const res = await h.app.inject({ ...req, headers: { ...(await h.auth('alice')), ...req.headers } } as never);
    expect(res.statusCode).toBe(status);
    const problem = problemOf(res);
    expect(problem.status).toBe(status);
    expect(problem.title).not.toBe('');
    expect(problem.type).toMatch(/^urn:challenge-engine:problem:[a-z-]+$/);
    expect(problem.detail).toMatch(detail);
    // Nothing malformed reaches the domain.
    expect(h.service.calls.length).toBe(callsBefore);
    if (status === 405) expect(res.headers.allow).toBe(problem.detail.split('use ')[1]);
  });

  it('honours a configured body limit', async () => {
    const h = await harness({ bodyLimitBytes: 64 });
    const res = await h.app.inject({ method: 'POST', url: '/api/challenges', headers: await h.auth(), payload: { challenge: 'a'.repeat(63) } });
    expect(res.statusCode).toBe(413);
    expect(problemOf(res).detail).toBe('the request body is larger than 64 bytes');
  });

  it('accepts an empty JSON body where no body is expected', async () => {
    const h = await harness();
    const s = h.service.addSession('alice', 'web-notes');
    const res = await h.app.inject({ method: 'POST', url: `/api/sessions/${s.id}/extend`, headers: { ...(await h.auth()), ...json }, payload: '' });
    expect(res.statusCode).toBe(200);
  });
});

describe('domain errors', () => {
  const cases: [DomainError, number, string, string | undefined][] = [
    [new DomainError('NotFound', 'session web-notes-1 not found'), 404, 'not-found', undefined],
    [new DomainError('LimitReached', 'you already have 3 sessions'), 429, 'limit-reached', undefined],
    [new DomainError('MaxLifetime', 'the session cannot live longer than 2h'), 409, 'max-lifetime', undefined],
    [new DomainError('Queued', 'the session is still queued'), 409, 'queued', undefined],
    [new DomainError('Invalid', 'the challenge has no ports'), 400, 'invalid-request', undefined],
    [new DomainError('Unavailable', 'the apiserver is unreachable'), 503, 'unavailable', '5'],
    [new DomainError('TeamRequired', TEAM_REQUIRED), 403, 'team-required', undefined],
  ];

  it.each(cases)('%s -> %i', async (err, status, kind, retryAfter) => {
    const h = await harness();
    const s = h.service.addSession('alice', 'web-notes');
    h.service.failWith('extend', err);
    const res = await h.app.inject({ method: 'POST', url: `/api/sessions/${s.id}/extend`, headers: await h.auth() });
    expect(res.statusCode).toBe(status);
    const problem = problemOf(res);
    expect(problem).toMatchObject({ status, type: `urn:challenge-engine:problem:${kind}`, instance: `/api/sessions/${s.id}/extend` });
    expect(res.headers['retry-after']).toBe(retryAfter);
    expect(problem.detail).toBe(err.message);
  });

  it('reports a disabled challenge exactly like a missing one when spawning', async () => {
    const h = await harness();
    h.service.disabled.add('pwn-echo');
    const headers = await h.auth();
    const disabled = await h.app.inject({ method: 'POST', url: '/api/challenges', headers, payload: { challenge: 'pwn-echo' } });
    const missing = await h.app.inject({ method: 'POST', url: '/api/challenges', headers, payload: { challenge: 'no-such' } });
    expect([disabled.statusCode, missing.statusCode]).toEqual([404, 404]);
    expect(problemOf(disabled).detail.replace('pwn-echo', 'X')).toBe(problemOf(missing).detail.replace('no-such', 'X'));
  });
});

describe('server errors', () => {
  it('answers 500 without internals and logs the error with the request id', async () => {
    const h = await harness();
    h.service.failWith('catalogue', new Error('dial tcp 10.96.0.1:443: connection refused'));
    const res = await h.app.inject({ method: 'GET', url: '/api/challenges', headers: { ...(await h.auth()), 'x-request-id': 'trace-500' } });
    expect(res.statusCode).toBe(500);
    const problem = problemOf(res);
    expect(problem).toMatchObject({ status: 500, type: 'urn:challenge-engine:problem:internal', detail: 'an unexpected error occurred; the request id is trace-500' });
    expect(res.body).not.toMatch(/10\.96|refused|stack|at /);
    const logged = h.logs.map((l) => JSON.parse(l) as { level: number; reqId?: string; err?: { message: string } }).find((l) => l.level === 50);
    expect(logged).toMatchObject({ reqId: 'trace-500', err: { message: 'dial tcp 10.96.0.1:443: connection refused' } });
  });

  it('answers 500, not a malformed body, when the service returns something off-contract', async () => {
    const h = await harness();
    const s = h.service.addSession('alice', 'web-notes');
    h.service.sessions.set(s.id, { ...s, phase: 'Exploded' as never, createdAt: undefined as never });
    const res = await h.app.inject({ method: 'GET', url: `/api/sessions/${s.id}`, headers: await h.auth() });
    expect(res.statusCode).toBe(500);
    expect(problemOf(res).detail).toMatch(/^an unexpected error occurred/);
    expect(res.body).not.toMatch(/Exploded|createdAt/);
  });

  it('treats a failing token verifier as a server error, not as a bad token', async () => {
    const h = await harness({ tokens: { verify: () => Promise.reject(new Error('key store offline')) } });
    const res = await h.app.inject({ method: 'GET', url: '/api/sessions', headers: { authorization: 'Bearer abc' } });
    expect(res.statusCode).toBe(500);
    expect(res.body).not.toMatch(/key store/);
  });
});

describe('router-level errors', () => {
  it('answers a malformed or over-long URL with a problem, without echoing the URL', async () => {
    const h = await harness();
    const bad = await h.app.inject({ method: 'GET', url: '/api/sessions/%zz', headers: await h.auth() });
    expect(bad.statusCode).toBe(400);
    expect(bad.headers['content-type']).toMatch(/application\/problem\+json/);
    expect(bad.headers['x-request-id']).toBeTruthy();
    expect(bad.body).not.toContain('%zz');
    const long = await h.app.inject({ method: 'DELETE', url: `/api/challenges/${'a'.repeat(5000)}`, headers: await h.auth() });
    expect(long.statusCode).toBeGreaterThanOrEqual(400);
    expect(long.statusCode).toBeLessThan(500);
    expect(long.headers['content-type']).toMatch(/application\/problem\+json/);
    expect(long.body).not.toContain('a'.repeat(100));
  });
});
