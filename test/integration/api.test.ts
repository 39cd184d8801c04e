import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { buildApp } from '../../src/http/app.js';
import { createTokenIssuer, createTokenVerifier } from '../../src/http/auth.js';
import { Caches } from '../../src/read-model/caches.js';
import { KubeSessionService } from '../../src/sessions/service.js';
import { sessionName, slotOrder } from '../../src/sessions/spawn.js';
import { createMetrics } from '../../src/metrics.js';
import type { Engine } from '../../src/engine.js';
import { useCluster, waitUntil } from '../support/kube.js';
import { installSamples, listSessions, startTestEngine, TEST_TOKEN_SECRET } from '../support/engine.js';
import { apiProxy, type ApiProxy } from '../support/faults.js';
import { ANNOTATION_EXPIRES_AT, API_VERSION, GROUP, SESSION_KIND, SESSION_PLURAL, VERSION } from '../../src/api/group.js';
import { sessionLabels } from '../../src/reconcile/labels.js';
import { formatExpiry } from '../../src/reconcile/expiry.js';
import { createKube } from '../../src/kube/client.js';

/** The player API over the real service, caches and controller (two API replicas, one controller). */
const cluster = useCluster(import.meta.filename);
let engine: Engine;
const apis: { app: FastifyInstance; caches: Caches; metrics: ReturnType<typeof createMetrics> }[] = [];
/** Index in `apis` of a replica whose caches watch through a proxy that lags 1 s. */
const LAGGING = 2;
const WATCH_LAG_MS = 1_000;
let proxy: ApiProxy | undefined;
const issuer = createTokenIssuer(TEST_TOKEN_SECRET);
const auth = async (user: string, admin = false) => ({ authorization: `Bearer ${await issuer.issue({ user, admin, ttlSeconds: 600 })}` });

async function api(i = 0) {
  const a = apis[i];
  if (!a) throw new Error('no api');
  return a.app;
}

beforeAll(async () => {
  await installSamples(cluster.kube, cluster.namespace);
  await cluster.kubectl('create', 'secret', 'generic', 'crypto-baby-rsa-flag', '--from-literal=flag=CTF{static_flag_for_tests}');
  ({ engine } = await startTestEngine(cluster.kubeconfig, cluster.namespace, { CTF_MAX_SESSIONS_PER_USER: '3' }));
  proxy = await apiProxy(cluster.kubeconfig, () => 0, { watchLagMs: WATCH_LAG_MS });
  for (let i = 0; i < 3; i++) {
    const log = pino({ level: 'silent' });
    const metrics = createMetrics();
    const caches = Caches.watching(i === LAGGING ? createKube(proxy.kubeconfig) : engine.kube, cluster.namespace, log);
    await caches.start();
    const service = new KubeSessionService({ kube: engine.kube, caches, writer: engine.writer, log, metrics, flagKey: engine.flagKey, maxSessionsPerUser: 3 });
    const app = await buildApp({ service, tokens: createTokenVerifier(TEST_TOKEN_SECRET), metrics, log, corsOrigins: [], rateLimit: { wrongFlagsPerMinutePerUser: 100, wrongFlagsPerMinutePerSession: 100 } });
    apis.push({ app, caches, metrics });
  }
});

afterAll(async () => {
  for (const a of apis) {
    await a.app.close();
    await a.caches.stop();
  }
  await engine?.stop();
  await proxy?.close();
});

async function flagOf(sessionId: string): Promise<string> {
  const s = await cluster.kube.core.readNamespacedSecret({ name: `${sessionId}-flag`, namespace: cluster.namespace });
  return Buffer.from(s.data?.flag ?? '', 'base64').toString();
}

describe('player journey', () => {
  it('lists, spawns, waits, submits wrong and right flags, sees solved, extends and stops', async () => {
    const app = await api();
    const h = await auth('alice');
    const cat = await app.inject({ method: 'GET', url: '/api/challenges', headers: h });
    expect(cat.statusCode).toBe(200);
    const names = (cat.json<{ challenges: { name: string }[] }>()).challenges.map((c) => c.name);
    expect(names).toEqual(expect.arrayContaining(['web-notes', 'pwn-echo', 'sql-two-tier']));
    expect(cat.body).not.toMatch(/secretRef|flag-key|CTF\{/);

    const spawn = await app.inject({ method: 'POST', url: '/api/challenges', headers: h, payload: { challenge: 'web-notes' } });
    expect(spawn.statusCode).toBe(201);
    const id = (spawn.json<{ session: { id: string } }>()).session.id;
    const again = await app.inject({ method: 'POST', url: '/api/challenges', headers: h, payload: { challenge: 'web-notes' } });
    expect(again.statusCode).toBe(200);
    expect((again.json<{ session: { id: string } }>()).session.id).toBe(id);

    const waited = await app.inject({ method: 'GET', url: `/api/sessions/${id}?wait=20`, headers: h });
    const view = (waited.json<{ session: { phase: string; ready: boolean; endpoints: { host: string; port: number }[]; expiresAt: string } }>()).session;
    expect(view).toMatchObject({ phase: 'Running', ready: true });
    expect(view.endpoints[0]).toMatchObject({ host: `${id}.${cluster.namespace}.svc.cluster.local`, port: 8080 });

    const wrong = await app.inject({ method: 'POST', url: '/api/flags', headers: h, payload: { sessionId: id, flag: 'CTF{nope}' } });
    expect(wrong.json()).toEqual({ correct: false });
    const flag = await flagOf(id);
    const right = await app.inject({ method: 'POST', url: '/api/flags', headers: h, payload: { sessionId: id, flag } });
    expect(right.json()).toEqual({ correct: true });
    const solved = await waitUntil('solved visible', async () => {
      const r = await app.inject({ method: 'GET', url: `/api/sessions/${id}`, headers: h });
      const s = (r.json<{ session: { solved: boolean; solvedAt?: string } }>()).session;
      return s.solved ? s : undefined;
    });
    expect(solved.solvedAt).toBeTruthy();
    // solving twice keeps the first time
    await app.inject({ method: 'POST', url: '/api/flags', headers: h, payload: { challenge: 'web-notes', flag } });
    await new Promise((r) => setTimeout(r, 300));
    const later = (await app.inject({ method: 'GET', url: `/api/sessions/${id}`, headers: h })).json<{ session: { solvedAt?: string } }>();
    expect(later.session.solvedAt).toBe(solved.solvedAt);
    // One recorded solve, counted once, however often the right flag comes back.
    const solves = (await apis[0]?.metrics.solves.get())?.values.find((v) => v.labels.challenge === 'web-notes')?.value;
    expect(solves).toBe(1);

    const ext = await app.inject({ method: 'POST', url: `/api/sessions/${id}/extend`, headers: h });
    expect(ext.statusCode).toBe(200);
    const extended = (ext.json<{ session: { expiresAt: string } }>()).session.expiresAt;
    expect(Date.parse(extended) - Date.parse(view.expiresAt)).toBe(30 * 60_000);

    const stop = await app.inject({ method: 'DELETE', url: `/api/challenges/${id}`, headers: h });
    expect(stop.statusCode).toBe(204);
    await waitUntil('session gone from the API', async () => (await app.inject({ method: 'GET', url: `/api/sessions/${id}`, headers: h })).statusCode === 404);
  });

  it('verifies a static flag read from the referenced Secret', async () => {
    const app = await api();
    const h = await auth('stan');
    const spawn = await app.inject({ method: 'POST', url: '/api/challenges', headers: h, payload: { challenge: 'crypto-baby-rsa' } });
    expect(spawn.statusCode).toBe(201);
    const id = (spawn.json<{ session: { id: string } }>()).session.id;
    await waitUntil('flag secret', async () => (await flagOf(id).catch(() => '')) === 'CTF{static_flag_for_tests}');
    expect((await app.inject({ method: 'POST', url: '/api/flags', headers: h, payload: { sessionId: id, flag: 'CTF{static_flag_for_tests}' } })).json()).toEqual({ correct: true });
  });
});

describe('long-polling the list', () => {
  it('holds GET /api/sessions?wait until the sessions spawned Pending are Running, and refuses wait=61', async () => {
    const app = await api();
    const h = await auth('list-waiter');
    const t0 = Date.now();
    expect((await app.inject({ method: 'GET', url: '/api/sessions?wait=20', headers: h })).json()).toEqual({ sessions: [] });
    expect(Date.now() - t0).toBeLessThan(1_000);

    const spawned: string[] = [];
    for (const challenge of ['web-notes', 'pwn-echo']) {
      const spawn = await app.inject({ method: 'POST', url: '/api/challenges', headers: h, payload: { challenge } });
      expect(spawn.statusCode).toBe(201);
      const { session } = spawn.json<{ session: { id: string; phase: string; ready: boolean } }>();
      expect(session).toMatchObject({ phase: 'Pending', ready: false });
      spawned.push(session.id);
    }
    const waited = await app.inject({ method: 'GET', url: '/api/sessions?wait=30', headers: h });
    expect(waited.statusCode).toBe(200);
    const sessions = waited.json<{ sessions: { id: string; phase: string; ready: boolean }[] }>().sessions;
    expect(sessions.map((s) => s.id).sort()).toEqual([...spawned].sort());
    for (const s of sessions) expect(s, s.id).toMatchObject({ phase: 'Running', ready: true });

    const bad = await app.inject({ method: 'GET', url: '/api/sessions?wait=61', headers: h });
    expect(bad.statusCode).toBe(400);
    expect(bad.json<{ detail: string }>().detail).toBe('query.wait: must be a whole number of seconds from 0 to 60');
  });
});

describe('read-your-writes', () => {
  it('finds a new session immediately on the replica that created it, and via ?wait on the other', async () => {
    const h = await auth('eager');
    const spawn = await (await api(0)).inject({ method: 'POST', url: '/api/challenges', headers: h, payload: { challenge: 'pwn-echo' } });
    expect(spawn.statusCode).toBe(201);
    const id = spawn.json<{ session: { id: string } }>().session.id;
    expect((await (await api(0)).inject({ method: 'GET', url: `/api/sessions/${id}`, headers: h })).statusCode).toBe(200);
    const other = await (await api(1)).inject({ method: 'GET', url: `/api/sessions/${id}?wait=5`, headers: h });
    expect(other.statusCode).toBe(200);
    expect((await (await api(1)).inject({ method: 'GET', url: '/api/sessions/s-0000000000000000-0?wait=1', headers: h })).statusCode).toBe(404);
  });
});

describe('read-your-writes on a replica whose cache lags the apiserver', () => {
  it('shows a solve, an extension and a stop in the very next request', async () => {
    const app = await api(LAGGING);
    const h = await auth('laggard');
    const spawn = await app.inject({ method: 'POST', url: '/api/challenges', headers: h, payload: { challenge: 'web-notes' } });
    expect(spawn.statusCode).toBe(201);
    const id = spawn.json<{ session: { id: string } }>().session.id;
    expect((await app.inject({ method: 'GET', url: `/api/sessions/${id}`, headers: h })).statusCode).toBe(200);
    const flag = await waitUntil('the flag secret', () => flagOf(id).catch(() => undefined));
    // Let the cache catch up with the controller's own writes, so only the player's write is new.
    await new Promise((r) => setTimeout(r, 2 * WATCH_LAG_MS));

    const started = Date.now();
    expect((await app.inject({ method: 'POST', url: '/api/flags', headers: h, payload: { sessionId: id, flag } })).json()).toEqual({ correct: true });
    const answeredIn = Date.now() - started;
    const afterSolve = (await app.inject({ method: 'GET', url: `/api/sessions/${id}`, headers: h })).json<{ session: { solved: boolean } }>();
    expect(afterSolve.session.solved).toBe(true);
    // The answer waited for the lagging watch rather than for a fixed time or the 2 s bound.
    expect(answeredIn).toBeGreaterThanOrEqual(WATCH_LAG_MS * 0.9);

    const ext = await app.inject({ method: 'POST', url: `/api/sessions/${id}/extend`, headers: h });
    expect(ext.statusCode).toBe(200);
    const expiresAt = ext.json<{ session: { expiresAt: string } }>().session.expiresAt;
    const afterExtend = (await app.inject({ method: 'GET', url: `/api/sessions/${id}`, headers: h })).json<{ session: { expiresAt: string } }>();
    expect(afterExtend.session.expiresAt).toBe(expiresAt);

    expect((await app.inject({ method: 'DELETE', url: `/api/challenges/${id}`, headers: h })).statusCode).toBe(204);
    expect((await app.inject({ method: 'GET', url: `/api/sessions/${id}`, headers: h })).statusCode).toBe(404);
    const listed = (await app.inject({ method: 'GET', url: '/api/sessions', headers: h })).json<{ sessions: { id: string }[] }>();
    expect(listed.sessions.map((s) => s.id)).not.toContain(id);
  });
});

describe('idempotent spawn when a stop frees a slot in between', () => {
  it('keeps the older of two sessions of one challenge created in different slots, and answers with it', async () => {
    const user = 'slot-shifter';
    const h = await auth(user);
    // Another replica created web-notes in the challenge's second slot a moment ago (its first
    // slot was taken then); the lagging replica has not seen it and finds the first slot free.
    const [first, second] = slotOrder('web-notes', 3);
    const olderName = sessionName(user, second ?? 0);
    await cluster.kube.custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: cluster.namespace,
      plural: SESSION_PLURAL,
      body: {
        apiVersion: API_VERSION,
        kind: SESSION_KIND,
        metadata: {
          name: olderName,
          labels: sessionLabels({ metadata: { name: olderName }, spec: { challenge: 'web-notes', user } }),
          annotations: { [ANNOTATION_EXPIRES_AT]: formatExpiry(new Date(Date.now() + 3600_000)) },
        },
        spec: { challenge: 'web-notes', user },
      },
    });
    const res = await (await api(LAGGING)).inject({ method: 'POST', url: '/api/challenges', headers: h, payload: { challenge: 'web-notes' } });
    expect(res.statusCode).toBe(200);
    expect(res.json<{ session: { id: string } }>().session.id).toBe(olderName);
    const mine = await waitUntil('only the older session left', async () => {
      const live = (await listSessions(cluster.kube, cluster.namespace)).filter((s) => s.spec.user === user);
      return live.length === 1 ? live : undefined;
    });
    expect(mine.map((s) => s.metadata.name)).toEqual([olderName]);
    expect(sessionName(user, first ?? 0)).not.toBe(olderName);
  });
});

describe('authorisation', () => {
  it('hides other users\u2019 sessions (404), lets admins list and stop them, and rejects bad tokens (401)', async () => {
    const app = await api();
    const owner = await auth('olivia');
    const other = await auth('mallory');
    const admin = await auth('root-admin', true);
    const spawn = await app.inject({ method: 'POST', url: '/api/challenges', headers: owner, payload: { challenge: 'pwn-echo' } });
    const id = (spawn.json<{ session: { id: string } }>()).session.id;
    for (const req of [
      { method: 'GET' as const, url: `/api/sessions/${id}` },
      { method: 'POST' as const, url: `/api/sessions/${id}/extend` },
      { method: 'DELETE' as const, url: `/api/challenges/${id}` },
    ]) {
      const r = await app.inject({ ...req, headers: other });
      expect(r.statusCode, `${req.method} ${req.url}`).toBe(404);
    }
    const sub = await app.inject({ method: 'POST', url: '/api/flags', headers: other, payload: { sessionId: id, flag: 'x' } });
    expect(sub.statusCode).toBe(404);
    expect((await app.inject({ method: 'GET', url: '/api/sessions', headers: other })).json()).toEqual({ sessions: [] });
    expect(((await app.inject({ method: 'GET', url: '/api/sessions?all=true', headers: other })).json<{ sessions: unknown[] }>()).sessions).toEqual([]);
    const all = (await app.inject({ method: 'GET', url: '/api/sessions?all=true', headers: admin })).json<{ sessions: { id: string }[] }>();
    expect(all.sessions.map((s) => s.id)).toContain(id);
    expect((await app.inject({ method: 'DELETE', url: `/api/challenges/${id}`, headers: admin })).statusCode).toBe(204);

    const expired = `Bearer ${await createTokenIssuer(TEST_TOKEN_SECRET, () => new Date(Date.now() - 3600_000)).issue({ user: 'olivia', ttlSeconds: 60 })}`;
    const forged = `Bearer ${await createTokenIssuer('another-secret-that-is-long-enough-123456').issue({ user: 'olivia', ttlSeconds: 60 })}`;
    for (const authorization of [undefined, 'Bearer', 'Bearer not.a.jwt', expired, forged]) {
      const r = await app.inject({ method: 'GET', url: '/api/sessions', headers: authorization ? { authorization } : {} });
      expect(r.statusCode, String(authorization)).toBe(401);
      expect(r.headers['content-type']).toMatch(/application\/problem\+json/);
    }
  });
});

describe('limits under concurrency', () => {
  it('creates exactly one session for 50 concurrent spawns of one challenge across two replicas', async () => {
    const h = await auth('racer-one');
    const results = await Promise.all(
      Array.from({ length: 50 }, async (_, i) => (await api(i % 2)).inject({ method: 'POST', url: '/api/challenges', headers: h, payload: { challenge: 'web-notes' } })),
    );
    const ids = new Set(results.map((r) => (r.json<{ session: { id: string } }>()).session.id));
    expect(ids.size).toBe(1);
    expect(results.filter((r) => r.statusCode === 201)).toHaveLength(1);
    expect(results.every((r) => r.statusCode === 201 || r.statusCode === 200)).toBe(true);
    const stored = (await listSessions(cluster.kube, cluster.namespace)).filter((s) => s.spec.user === 'racer-one');
    expect(stored).toHaveLength(1);
  });

  it('creates exactly the per-user limit for 50 concurrent spawns of many challenges across two replicas', async () => {
    const h = await auth('racer-many');
    const challenges = ['web-notes', 'pwn-echo', 'sql-two-tier', 'crypto-baby-rsa'];
    const results = await Promise.all(
      Array.from({ length: 50 }, async (_, i) =>
        (await api(i % 2)).inject({ method: 'POST', url: '/api/challenges', headers: h, payload: { challenge: challenges[i % challenges.length] } }),
      ),
    );
    const stored = (await listSessions(cluster.kube, cluster.namespace)).filter((s) => s.spec.user === 'racer-many');
    expect(stored).toHaveLength(3);
    expect(new Set(stored.map((s) => s.spec.challenge)).size).toBe(3);
    expect(results.filter((r) => r.statusCode === 201)).toHaveLength(3);
    expect(results.filter((r) => r.statusCode === 429).length).toBeGreaterThan(0);
    expect(results.every((r) => [200, 201, 429].includes(r.statusCode))).toBe(true);
  });
});

describe('flag sharing', () => {
  it('treats another user\u2019s flag as wrong and records it (metric, Event naming both sessions)', async () => {
    const app = await api();
    const a = await auth('sharer-a');
    const b = await auth('sharer-b');
    const sa = ((await app.inject({ method: 'POST', url: '/api/challenges', headers: a, payload: { challenge: 'sql-two-tier' } })).json<{ session: { id: string } }>()).session.id;
    const sb = ((await app.inject({ method: 'POST', url: '/api/challenges', headers: b, payload: { challenge: 'sql-two-tier' } })).json<{ session: { id: string } }>()).session.id;
    await waitUntil('both provisioned', async () => (await flagOf(sa).catch(() => '')) !== '' && (await flagOf(sb).catch(() => '')) !== '');
    await waitUntil('both cached with uids', () => apis[0]?.caches.session(sa)?.ok && apis[0]?.caches.session(sb)?.ok);
    const flagA = await flagOf(sa);
    const r = await app.inject({ method: 'POST', url: '/api/flags', headers: b, payload: { sessionId: sb, flag: flagA } });
    expect(r.json()).toEqual({ correct: false });
    const metrics = await apis[0]?.metrics.registry.getSingleMetricAsString('challenge_engine_flag_sharing_suspected_total');
    expect(metrics).toMatch(/challenge_engine_flag_sharing_suspected_total 1/);
    const ev = await waitUntil('FlagShared event', async () => {
      const list = await cluster.kube.core.listNamespacedEvent({ namespace: cluster.namespace, fieldSelector: `involvedObject.name=${sa}` });
      return list.items.find((e) => e.reason === 'FlagShared');
    });
    expect(ev.message).toContain(sa);
    expect(ev.message).toContain(sb);
    expect(ev.related?.name).toBe(sb);
    // B's own session stays unsolved
    const bView = (await app.inject({ method: 'GET', url: `/api/sessions/${sb}`, headers: b })).json<{ session: { solved: boolean } }>();
    expect(bView.session.solved).toBe(false);
  });
});

describe('operations', () => {
  it('serves health, readiness, metrics and the OpenAPI document', async () => {
    const app = await api();
    expect((await app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
    expect((await app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(200);
    const m = await app.inject({ method: 'GET', url: '/metrics' });
    expect(m.body).toContain('http_request_duration_seconds');
    const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json<{ paths: Record<string, unknown> }>();
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/api/challenges', '/api/sessions', '/api/flags', '/api/flags/batch']));
  });
});
