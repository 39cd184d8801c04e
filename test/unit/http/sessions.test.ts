import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import type { SessionView } from '../../../src/sessions/types.js';
import { harness, problemOf } from './harness.js';

describe('POST /api/challenges', () => {
  it('creates a session (201 with Location) and then returns the same one (200)', async () => {
    const { app, service, auth } = await harness();
    const headers = await auth('alice');
    const first = await app.inject({ method: 'POST', url: '/api/challenges', headers, payload: { challenge: 'web-notes' } });
    expect(first.statusCode).toBe(201);
    const { session } = first.json<{ session: SessionView }>();
    expect(session).toMatchObject({ challenge: 'web-notes', user: 'alice', phase: 'Pending', ready: false });
    expect(first.headers.location).toBe(`/api/sessions/${session.id}`);
    const again = await app.inject({ method: 'POST', url: '/api/challenges', headers, payload: { challenge: 'web-notes' } });
    expect(again.statusCode).toBe(200);
    expect(again.json<{ session: SessionView }>().session.id).toBe(session.id);
    expect(again.headers.location).toBeUndefined();
    expect(service.callsOf('spawn')).toEqual([
      [{ user: 'alice', admin: false }, 'web-notes'],
      [{ user: 'alice', admin: false }, 'web-notes'],
    ]);
  });

  it('answers 429 without Retry-After when the player has too many sessions', async () => {
    const { app, service, auth } = await harness();
    service.maxPerUser = 1;
    const headers = await auth('alice');
    await app.inject({ method: 'POST', url: '/api/challenges', headers, payload: { challenge: 'web-notes' } });
    const res = await app.inject({ method: 'POST', url: '/api/challenges', headers, payload: { challenge: 'pwn-echo' } });
    expect(res.statusCode).toBe(429);
    expect(problemOf(res).type).toBe('urn:challenge-engine:problem:limit-reached');
    expect(res.headers['retry-after']).toBeUndefined();
  });
});

describe('GET /api/challenges', () => {
  it('lists the catalogue', async () => {
    const { app, auth, service } = await harness();
    service.disabled.add('pwn-echo');
    const res = await app.inject({ method: 'GET', url: '/api/challenges', headers: await auth() });
    expect(res.json<{ challenges: { name: string }[] }>().challenges.map((c) => c.name)).toEqual(['web-notes']);
  });
});

describe('sessions', () => {
  it('stops with 204 and an empty body', async () => {
    const { app, auth, service } = await harness();
    const s = service.addSession('alice', 'web-notes');
    const res = await app.inject({ method: 'DELETE', url: `/api/challenges/${s.id}`, headers: await auth() });
    expect(res.statusCode).toBe(204);
    expect(res.body).toBe('');
    expect(service.sessions.has(s.id)).toBe(false);
  });

  it('extends, and answers 409 at the maximum lifetime', async () => {
    const { app, auth, service } = await harness();
    const s = service.addSession('alice', 'web-notes');
    const headers = await auth();
    const ok = await app.inject({ method: 'POST', url: `/api/sessions/${s.id}/extend`, headers });
    expect(ok.json()).toMatchObject({ session: { id: s.id, expiresAt: '2026-01-01T01:00:00Z' } });
    service.atMaxLifetime.add(s.id);
    const full = await app.inject({ method: 'POST', url: `/api/sessions/${s.id}/extend`, headers });
    expect(full.statusCode).toBe(409);
    expect(problemOf(full).detail).toBe('the session has reached its maximum lifetime');
  });

  it('returns only the fields of the contract', async () => {
    const { app, auth, service } = await harness();
    const s = service.addSession('alice', 'web-notes');
    service.sessions.set(s.id, { ...s, internalUid: 'abc' } as SessionView);
    const res = await app.inject({ method: 'GET', url: `/api/sessions/${s.id}`, headers: await auth() });
    expect(res.statusCode).toBe(200);
    expect(res.json<{ session: object }>().session).not.toHaveProperty('internalUid');
  });
});

describe('long-poll GET /api/sessions/:id?wait=', () => {
  it.each([
    [undefined, 'get', undefined],
    ['0', 'get', undefined],
    ['1', 'waitReady', 1_000],
    ['60', 'waitReady', 60_000],
  ])('wait=%s reads through %s', async (wait, method, timeoutMs) => {
    const { app, auth, service } = await harness();
    const s = service.addSession('alice', 'web-notes');
    const res = await app.inject({ method: 'GET', url: `/api/sessions/${s.id}${wait === undefined ? '' : `?wait=${wait}`}`, headers: await auth() });
    expect(res.statusCode).toBe(200);
    expect(service.callsOf('waitReady')).toHaveLength(method === 'waitReady' ? 1 : 0);
    if (timeoutMs !== undefined) {
      const [, id, ms, signal] = service.callsOf('waitReady')[0] ?? [];
      expect([id, ms]).toEqual([s.id, timeoutMs]);
      expect(signal).toBeInstanceOf(AbortSignal);
    }
  });

  it('answers 404 from waitReady for a session of another player', async () => {
    const { app, auth, service } = await harness();
    const s = service.addSession('bob', 'web-notes');
    const res = await app.inject({ method: 'GET', url: `/api/sessions/${s.id}?wait=5`, headers: await auth('alice') });
    expect(res.statusCode).toBe(404);
  });

  it('aborts the wait when the client disconnects', async () => {
    const { app, auth, service } = await harness();
    const s = service.addSession('alice', 'web-notes', { ready: false, phase: 'Provisioning' });
    let waiting!: () => void;
    const started = new Promise<void>((r) => (waiting = r));
    let aborted!: (v: boolean) => void;
    const abortSeen = new Promise<boolean>((r) => (aborted = r));
    service.waitReadyImpl = (_c, id, ms, signal) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          aborted(false);
          resolve(service.sessions.get(id) as SessionView);
        }, ms);
        signal?.addEventListener('abort', () => {
          clearTimeout(timer);
          aborted(true);
          reject(new DOMException('aborted', 'AbortError'));
        });
        waiting();
      });
    await app.listen({ host: '127.0.0.1', port: 0 });
    try {
      const { port } = app.server.address() as AddressInfo;
      const req = httpRequest({ host: '127.0.0.1', port, path: `/api/sessions/${s.id}?wait=30`, headers: await auth() });
      req.on('error', () => undefined);
      req.end();
      await started;
      req.destroy();
      expect(await abortSeen).toBe(true);
    } finally {
      await app.close();
    }
  });

  it('releases waiting clients when the server closes', async () => {
    const { app, auth, service } = await harness();
    const s = service.addSession('alice', 'web-notes', { ready: false, phase: 'Provisioning' });
    let waiting!: () => void;
    const started = new Promise<void>((r) => (waiting = r));
    service.waitReadyImpl = (_c, id, ms, signal) =>
      new Promise((resolve) => {
        const timer = setTimeout(() => resolve(service.sessions.get(id) as SessionView), ms);
        signal?.addEventListener('abort', () => {
          clearTimeout(timer);
          resolve(service.sessions.get(id) as SessionView);
        });
        waiting();
      });
    const pending = app.inject({ method: 'GET', url: `/api/sessions/${s.id}?wait=60`, headers: await auth() });
    await started;
    const t0 = Date.now();
    await app.close();
    const res = await pending;
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ session: { id: s.id, ready: false } });
  });
});

describe('long-poll GET /api/sessions?wait=', () => {
  it.each([
    [undefined, 'list', undefined],
    ['0', 'list', undefined],
    ['1', 'waitList', 1_000],
    ['60', 'waitList', 60_000],
  ])('wait=%s reads through %s', async (wait, method, timeoutMs) => {
    const { app, auth, service } = await harness();
    const s = service.addSession('alice', 'web-notes', { phase: 'Pending', ready: false });
    const res = await app.inject({ method: 'GET', url: `/api/sessions${wait === undefined ? '' : `?wait=${wait}`}`, headers: await auth() });
    expect(res.statusCode).toBe(200);
    expect(res.json<{ sessions: SessionView[] }>().sessions.map((v) => v.id)).toEqual([s.id]);
    expect(service.callsOf('waitList')).toHaveLength(method === 'waitList' ? 1 : 0);
    if (timeoutMs !== undefined) {
      const [caller, all, ms, signal] = service.callsOf('waitList')[0] ?? [];
      expect([caller, all, ms]).toEqual([{ user: 'alice', admin: false }, false, timeoutMs]);
      expect(signal).toBeInstanceOf(AbortSignal);
    }
  });

  it('passes all=true on for admins only', async () => {
    const { app, auth, service } = await harness();
    await app.inject({ method: 'GET', url: '/api/sessions?all=true&wait=3', headers: await auth('root', { admin: true }) });
    await app.inject({ method: 'GET', url: '/api/sessions?all=true&wait=3', headers: await auth('alice') });
    expect(service.callsOf('waitList').map(([, all]) => all)).toEqual([true, false]);
  });

  it('releases waiting clients with the current list when the server closes', async () => {
    const { app, auth, service } = await harness();
    const s = service.addSession('alice', 'web-notes', { ready: false, phase: 'Provisioning' });
    let waiting!: () => void;
    const started = new Promise<void>((r) => (waiting = r));
    service.waitListImpl = (_c, _all, _ms, signal) =>
      new Promise((_resolve, reject) => {
        signal?.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError')));
        waiting();
      });
    const pending = app.inject({ method: 'GET', url: '/api/sessions?wait=60', headers: await auth() });
    await started;
    const t0 = Date.now();
    await app.close();
    const res = await pending;
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ sessions: [{ id: s.id, ready: false }] });
  });

  it('aborts the wait when the client disconnects', async () => {
    const { app, auth, service } = await harness();
    service.addSession('alice', 'web-notes', { ready: false, phase: 'Provisioning' });
    let waiting!: () => void;
    const started = new Promise<void>((r) => (waiting = r));
    let aborted!: () => void;
    const abortSeen = new Promise<void>((r) => (aborted = r));
    service.waitListImpl = (_c, _all, _ms, signal) =>
      new Promise((_resolve, reject) => {
        signal?.addEventListener('abort', () => {
          aborted();
          reject(new DOMException('aborted', 'AbortError'));
        });
        waiting();
      });
    await app.listen({ host: '127.0.0.1', port: 0 });
    try {
      const { port } = app.server.address() as AddressInfo;
      const req = httpRequest({ host: '127.0.0.1', port, path: '/api/sessions?wait=30', headers: await auth() });
      req.on('error', () => undefined);
      req.end();
      await started;
      req.destroy();
      await abortSeen;
    } finally {
      await app.close();
    }
  });
});
