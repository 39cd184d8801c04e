import { afterEach, describe, expect, it, vi } from 'vitest';
import { DomainError } from '../../../src/sessions/types.js';
import { flagOf } from './fake-service.js';
import { harness, problemOf } from './harness.js';

type Limits = { wrongFlagsPerMinutePerUser: number; wrongFlagsPerMinutePerSession: number };

async function setup(rateLimit?: Limits | false) {
  const h = await harness(rateLimit === undefined ? {} : { rateLimit });
  const headers = await h.auth('alice');
  const submit = (payload: object, as = headers) => h.app.inject({ method: 'POST', url: '/api/flags', headers: as, payload });
  return { ...h, headers, submit };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('POST /api/flags', () => {
  it('judges by session id and by challenge name', async () => {
    const { service, submit } = await setup();
    const s = service.addSession('alice', 'web-notes');
    expect((await submit({ sessionId: s.id, flag: flagOf('web-notes') })).json()).toEqual({ correct: true });
    expect((await submit({ sessionId: s.id, flag: 'CTF{guess}' })).json()).toEqual({ correct: false });
    expect((await submit({ challenge: 'pwn-echo', flag: flagOf('pwn-echo') })).json()).toEqual({ correct: true });
    expect(service.callsOf('submitFlag').map((c) => c[1])).toEqual([{ sessionId: s.id }, { sessionId: s.id }, { challenge: 'pwn-echo' }]);
  });

  it('answers 404 for a session of another player', async () => {
    const { service, submit } = await setup();
    const bobs = service.addSession('bob', 'web-notes');
    const res = await submit({ sessionId: bobs.id, flag: flagOf('web-notes') });
    expect(res.statusCode).toBe(404);
    expect(problemOf(res).status).toBe(404);
  });
});

describe('POST /api/flags/batch', () => {
  it('answers one result per submission, in order, with errors in place', async () => {
    const { app, service, headers } = await setup();
    const mine = service.addSession('alice', 'web-notes');
    const bobs = service.addSession('bob', 'pwn-echo');
    const submissions = [
      { sessionId: mine.id, flag: 'wrong' },
      { challenge: 'no-such', flag: 'x' },
      { sessionId: mine.id, flag: flagOf('web-notes') },
      { sessionId: bobs.id, flag: flagOf('pwn-echo') },
      { challenge: 'pwn-echo', flag: flagOf('pwn-echo') },
    ];
    const res = await app.inject({ method: 'POST', url: '/api/flags/batch', headers, payload: { submissions } });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({
      results: [
        { correct: false },
        { error: { type: 'urn:challenge-engine:problem:not-found', title: 'Not Found', status: 404, detail: 'challenge no-such not found' } },
        { correct: true },
        { error: expect.objectContaining({ status: 404 }) as unknown },
        { correct: true },
      ],
    });
    expect(service.callsOf('submitFlag').map((c) => c[2])).toEqual(submissions.map((s) => s.flag));
  });

  it('reports an unexpected failure of one submission as a generic 500 item', async () => {
    const { app, service, headers } = await setup();
    service.failWith('submitFlag', new Error('hmac key missing'));
    const res = await app.inject({
      method: 'POST',
      url: '/api/flags/batch',
      headers,
      payload: { submissions: [{ challenge: 'web-notes', flag: 'a' }, { challenge: 'web-notes', flag: flagOf('web-notes') }] },
    });
    expect(res.statusCode).toBe(200);
    const { results } = res.json<{ results: { error?: { status: number; detail: string } }[] }>();
    expect(results[0]?.error?.status).toBe(500);
    expect(results[0]?.error?.detail).not.toMatch(/hmac/);
    expect(results[1]).toEqual({ correct: true });
  });

  it('accepts 50 submissions of maximal flags', async () => {
    const { app, headers } = await setup(false);
    const submissions = Array.from({ length: 50 }, () => ({ sessionId: 'a'.repeat(52), flag: 'f'.repeat(256) }));
    const res = await app.inject({ method: 'POST', url: '/api/flags/batch', headers, payload: { submissions } });
    expect(res.statusCode).toBe(200);
    expect(res.json<{ results: unknown[] }>().results).toHaveLength(50);
    const tooBig = await app.inject({ method: 'POST', url: '/api/flags/batch', headers, payload: { submissions: [{ challenge: 'web-notes', flag: 'f'.repeat(40_000) }] } });
    expect(tooBig.statusCode).toBe(413);
    expect(problemOf(tooBig).detail).toBe('the request body is larger than 32768 bytes');
  });
});

describe('wrong-flag rate limit', () => {
  it('answers 429 with Retry-After after N wrong flags on one challenge, without asking the service', async () => {
    const { service, submit } = await setup({ wrongFlagsPerMinutePerUser: 30, wrongFlagsPerMinutePerSession: 3 });
    for (let i = 0; i < 3; i++) expect((await submit({ challenge: 'web-notes', flag: `wrong-${i}` })).statusCode).toBe(200);
    const blocked = await submit({ challenge: 'web-notes', flag: 'wrong-3' });
    expect(blocked.statusCode).toBe(429);
    expect(Number(blocked.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(Number(blocked.headers['retry-after'])).toBeLessThanOrEqual(60);
    expect(problemOf(blocked)).toMatchObject({ type: 'urn:challenge-engine:problem:rate-limited', detail: expect.stringMatching(/too many wrong flags; try again in \d+ s/) as unknown });
    // Blocked means blocked: not even the right flag is judged.
    expect((await submit({ challenge: 'web-notes', flag: flagOf('web-notes') })).statusCode).toBe(429);
    expect(service.callsOf('submitFlag')).toHaveLength(3);
    // Another challenge still has its own budget.
    expect((await submit({ challenge: 'pwn-echo', flag: 'wrong' })).statusCode).toBe(200);
  });

  it('does not count correct flags', async () => {
    const { submit } = await setup({ wrongFlagsPerMinutePerUser: 30, wrongFlagsPerMinutePerSession: 2 });
    for (let i = 0; i < 5; i++) expect((await submit({ challenge: 'web-notes', flag: flagOf('web-notes') })).statusCode).toBe(200);
    expect((await submit({ challenge: 'web-notes', flag: 'a' })).statusCode).toBe(200);
    expect((await submit({ challenge: 'web-notes', flag: flagOf('web-notes') })).statusCode).toBe(200);
    expect((await submit({ challenge: 'web-notes', flag: 'b' })).statusCode).toBe(200);
    expect((await submit({ challenge: 'web-notes', flag: 'c' })).statusCode).toBe(429);
  });

  it('does not count submissions the service failed to judge', async () => {
    const { service, submit } = await setup({ wrongFlagsPerMinutePerUser: 30, wrongFlagsPerMinutePerSession: 1 });
    service.failWith('submitFlag', new DomainError('Unavailable', 'caches not synced'));
    expect((await submit({ challenge: 'web-notes', flag: 'a' })).statusCode).toBe(503);
    expect((await submit({ challenge: 'web-notes', flag: 'b' })).statusCode).toBe(200);
    expect((await submit({ challenge: 'web-notes', flag: 'c' })).statusCode).toBe(429);
  });

  it('limits a user across challenges', async () => {
    const { submit } = await setup({ wrongFlagsPerMinutePerUser: 4, wrongFlagsPerMinutePerSession: 10 });
    for (const challenge of ['web-notes', 'web-notes', 'pwn-echo', 'pwn-echo']) expect((await submit({ challenge, flag: 'x' })).statusCode).toBe(200);
    expect((await submit({ challenge: 'web-notes', flag: 'x' })).statusCode).toBe(429);
    expect((await submit({ challenge: 'no-such', flag: 'x' })).statusCode).toBe(429);
  });

  it('shares one budget between the session-id and challenge forms', async () => {
    const { service, submit } = await setup({ wrongFlagsPerMinutePerUser: 30, wrongFlagsPerMinutePerSession: 2 });
    const s = service.addSession('alice', 'web-notes');
    expect((await submit({ sessionId: s.id, flag: 'x' })).statusCode).toBe(200);
    expect((await submit({ challenge: 'web-notes', flag: 'y' })).statusCode).toBe(200);
    expect((await submit({ sessionId: s.id, flag: 'z' })).statusCode).toBe(429);
  });

  it('does not punish other users', async () => {
    const { submit, auth } = await setup({ wrongFlagsPerMinutePerUser: 1, wrongFlagsPerMinutePerSession: 1 });
    expect((await submit({ challenge: 'web-notes', flag: 'x' })).statusCode).toBe(200);
    expect((await submit({ challenge: 'web-notes', flag: 'x' })).statusCode).toBe(429);
    expect((await submit({ challenge: 'web-notes', flag: 'x' }, await auth('bob'))).statusCode).toBe(200);
  });

  it('lets the caller try again once the window has passed', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const { submit } = await setup({ wrongFlagsPerMinutePerUser: 30, wrongFlagsPerMinutePerSession: 1 });
    expect((await submit({ challenge: 'web-notes', flag: 'x' })).statusCode).toBe(200);
    const blocked = await submit({ challenge: 'web-notes', flag: 'y' });
    expect(blocked.headers['retry-after']).toBe('60');
    vi.setSystemTime(Date.now() + 60_001);
    expect((await submit({ challenge: 'web-notes', flag: 'y' })).statusCode).toBe(200);
  });

  it('applies to batches item by item', async () => {
    const { app, headers, service } = await setup({ wrongFlagsPerMinutePerUser: 30, wrongFlagsPerMinutePerSession: 2 });
    const submissions = ['a', 'b', 'c', 'd'].map((flag) => ({ challenge: 'web-notes', flag }));
    const res = await app.inject({ method: 'POST', url: '/api/flags/batch', headers, payload: { submissions } });
    const { results } = res.json<{ results: unknown[] }>();
    expect(results.slice(0, 2)).toEqual([{ correct: false }, { correct: false }]);
    expect(results[2]).toEqual({ error: expect.objectContaining({ status: 429, type: 'urn:challenge-engine:problem:rate-limited', retryAfterSeconds: expect.any(Number) as unknown }) as unknown });
    expect(results[3]).toMatchObject({ error: { status: 429 } });
    expect(service.callsOf('submitFlag')).toHaveLength(2);
  });

  it('cannot be overrun by concurrent requests', async () => {
    const { submit } = await setup({ wrongFlagsPerMinutePerUser: 30, wrongFlagsPerMinutePerSession: 5 });
    const statuses = (await Promise.all(Array.from({ length: 20 }, (_, i) => submit({ challenge: 'web-notes', flag: `w${i}` })))).map((r) => r.statusCode);
    expect(statuses.filter((s) => s === 200)).toHaveLength(5);
    expect(statuses.filter((s) => s === 429)).toHaveLength(15);
  });

  it('is off when rateLimit is false', async () => {
    const { submit } = await setup(false);
    for (let i = 0; i < 60; i++) expect((await submit({ challenge: 'web-notes', flag: `w${i}` })).statusCode).toBe(200);
  });

  it('defaults to 10 wrong flags per challenge per minute', async () => {
    const { submit } = await setup();
    for (let i = 0; i < 10; i++) expect((await submit({ challenge: 'web-notes', flag: `w${i}` })).statusCode).toBe(200);
    expect((await submit({ challenge: 'web-notes', flag: 'w10' })).statusCode).toBe(429);
  });
});
