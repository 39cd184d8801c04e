import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { pino } from 'pino';
import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { buildApp } from '../../src/http/app.js';
import { createTokenIssuer, createTokenVerifier } from '../../src/http/auth.js';
import { Caches } from '../../src/read-model/caches.js';
import { KubeSessionService } from '../../src/sessions/service.js';
import { createMetrics } from '../../src/metrics.js';
import { createWriter } from '../../src/kube/writes.js';
import type { Engine } from '../../src/engine.js';
import { ANNOTATION_CLAIMED_AT, ANNOTATION_CLAIMED_USER, ANNOTATION_EXPIRES_AT, CHALLENGE_PLURAL, GROUP, VERSION } from '../../src/api/group.js';
import { isUnclaimedPool, type ChallengeSession } from '../../src/api/session.js';
import { isPoolName } from '../../src/reconcile/pool.js';
import { provisionedFromOf } from '../../src/reconcile/runtime.js';
import { useCluster, waitUntil } from '../support/kube.js';
import { installChallengeLike, listSessions, startTestEngine, TEST_TOKEN_SECRET } from '../support/engine.js';

/**
 * Warm pools over the real apiserver, controller and two API replicas: the pool fills and stays
 * unreachable, a spawn claims an instance in one write and gets a Running session with its own
 * flag, the pool refills, concurrent spawns on two replicas never share an instance, an empty
 * pool falls back to fresh instances, and editing the Challenge replaces only unclaimed ones.
 */
const cluster = useCluster(import.meta.filename);
let engine: Engine;
const apis: { app: FastifyInstance; caches: Caches; writes: string[] }[] = [];
const issuer = createTokenIssuer(TEST_TOKEN_SECRET);
const as = async (user: string) => ({ authorization: `Bearer ${await issuer.issue({ user, ttlSeconds: 600 })}` });

async function replica() {
  const log = pino({ level: 'silent' });
  const metrics = createMetrics();
  const caches = Caches.watching(engine.kube, cluster.namespace, log);
  await caches.start();
  const writes: string[] = [];
  const writer = createWriter(engine.kube, { component: 'test-api', instance: `api-${apis.length}` }, (verb, resource) => writes.push(`${verb} ${resource}`));
  const service = new KubeSessionService({ kube: engine.kube, caches, writer, log, metrics, flagKey: engine.flagKey, maxSessionsPerUser: 3 });
  const app = await buildApp({ service, tokens: createTokenVerifier(TEST_TOKEN_SECRET), metrics, log, corsOrigins: [], rateLimit: false });
  apis.push({ app, caches, writes });
}

const api = (i: number) => {
  const a = apis[i];
  if (!a) throw new Error(`no api ${i}`);
  return a;
};

type View = { id: string; user: string; phase: string; expiresAt: string; createdAt: string; endpoints: unknown[] };
const sessionOf = (r: LightMyRequestResponse) => r.json<{ session: View }>().session;

async function poolOf(challenge: string): Promise<ChallengeSession[]> {
  return (await listSessions(cluster.kube, cluster.namespace)).filter((s) => s.spec.challenge === challenge && isUnclaimedPool(s) && !s.metadata.deletionTimestamp);
}

/** Waits until the challenge has `size` unclaimed instances, all Running. */
async function poolReady(challenge: string, size: number): Promise<ChallengeSession[]> {
  return waitUntil(`${size} ready pool instances of ${challenge}`, async () => {
    const pool = await poolOf(challenge);
    return pool.length === size && pool.every((s) => s.status?.phase === 'Running') ? pool : undefined;
  }, 60_000, 200);
}

async function flagOf(sessionId: string): Promise<string> {
  const s = await cluster.kube.core.readNamespacedSecret({ name: `${sessionId}-flag`, namespace: cluster.namespace });
  return Buffer.from(s.data?.flag ?? '', 'base64').toString();
}

beforeAll(async () => {
  await installChallengeLike(cluster.kube, cluster.namespace, 'warm-notes', { pool: { size: 3 } });
  await installChallengeLike(cluster.kube, cluster.namespace, 'race-notes', { pool: { size: 6 } });
  await installChallengeLike(cluster.kube, cluster.namespace, 'tiny-pool', { pool: { size: 1 } });
  ({ engine } = await startTestEngine(cluster.kubeconfig, cluster.namespace, { CTF_MAX_SESSIONS_PER_USER: '3' }));
  await replica();
  await replica();
});

afterAll(async () => {
  for (const a of apis) {
    await a.app.close();
    await a.caches.stop();
  }
  await engine?.stop();
});

describe('a warm pool', () => {
  it('fills, stays unreachable, is claimed in one write, serves the claimant, and refills', async () => {
    const pool = await poolReady('warm-notes', 3);
    for (const s of pool) {
      expect(isPoolName(s.metadata.name)).toBe(true);
      expect(s.metadata.annotations?.[ANNOTATION_EXPIRES_AT]).toBeUndefined();
      // No entry-point ingress: only the session's own Pods may connect.
      const np = await cluster.kube.net.readNamespacedNetworkPolicy({ name: s.metadata.name, namespace: cluster.namespace });
      expect(np.spec?.ingress).toHaveLength(1);
      expect(s.status?.endpoints?.every((e) => e.externalHost === undefined)).toBe(true);
    }

    const a = api(0);
    const before = a.writes.length;
    const res = await a.app.inject({ method: 'POST', url: '/api/challenges', headers: await as('wendy'), payload: { challenge: 'warm-notes' } });
    expect(res.statusCode, res.body).toBe(201);
    const id = sessionOf(res).id;
    expect(pool.map((s) => s.metadata.name)).toContain(id);
    // The hot path: one write, the claim itself.
    expect(a.writes.slice(before)).toEqual(['patch challengesessions']);

    const ready = await a.app.inject({ method: 'GET', url: `/api/sessions/${id}?wait=20`, headers: await as('wendy') });
    const view = sessionOf(ready);
    expect(view.phase).toBe('Running');
    expect(view.user).toBe('wendy');
    const stored = (await listSessions(cluster.kube, cluster.namespace)).find((s) => s.metadata.name === id);
    const claimed = Date.parse(stored?.metadata.annotations?.[ANNOTATION_CLAIMED_AT] ?? '');
    expect(stored?.metadata.annotations?.[ANNOTATION_CLAIMED_USER]).toBe('wendy');
    expect(stored?.status?.claimedAt).toBe(stored?.metadata.annotations?.[ANNOTATION_CLAIMED_AT]);
    // The lifetime counts from the claim (1h default), not from the instance's creation.
    expect(Math.abs(Date.parse(view.expiresAt) - (claimed + 3_600_000))).toBeLessThan(2_000);
    expect(view.createdAt).toBe(stored?.metadata.annotations?.[ANNOTATION_CLAIMED_AT]);
    // Its own flag, written before the claim, is the claimant's now; another player's is not.
    const flag = await flagOf(id);
    const other = await a.app.inject({ method: 'POST', url: '/api/flags', headers: await as('mallory'), payload: { challenge: 'warm-notes', flag } });
    expect(other.json()).toMatchObject({ correct: false });
    const right = await api(1).app.inject({ method: 'POST', url: '/api/flags', headers: await as('wendy'), payload: { challenge: 'warm-notes', flag } });
    expect(right.json()).toMatchObject({ correct: true });
    // The other replica lists it among wendy's; the pool is back at three unclaimed instances.
    const listed = await api(1).app.inject({ method: 'GET', url: '/api/sessions', headers: await as('wendy') });
    expect(listed.json<{ sessions: View[] }>().sessions.map((s) => s.id)).toEqual([id]);
    const refilled = await poolReady('warm-notes', 3);
    expect(refilled.map((s) => s.metadata.name)).not.toContain(id);
  });

  it('never gives one instance to two players: 12 players spawning twice each on two replicas at once', async () => {
    await poolReady('race-notes', 6);
    const users = Array.from({ length: 12 }, (_, i) => `racer-${i}`);
    const results = await Promise.all(users.flatMap((u) => [0, 1].map(async (i) => ({ user: u, res: await api(i).app.inject({ method: 'POST', url: '/api/challenges', headers: await as(u), payload: { challenge: 'race-notes' } }) }))));
    const userOf = new Map<string, string>();
    for (const { user, res } of results) {
      expect([200, 201], res.body).toContain(res.statusCode);
      const { id, user: shown } = sessionOf(res);
      expect(shown).toBe(user);
      // No session was ever handed to two players.
      expect(userOf.get(id) ?? user, id).toBe(user);
      userOf.set(id, user);
    }
    // The apiserver agrees: every racer ends with exactly one live session, owned by them alone
    // (a player whose two spawns claimed two instances on two replicas at once has the later one
    // released by the controller).
    await waitUntil('duplicates gone', async () => {
      const live = (await listSessions(cluster.kube, cluster.namespace)).filter((s) => s.spec.challenge === 'race-notes' && !isUnclaimedPool(s) && !s.metadata.deletionTimestamp);
      return live.length === users.length ? live : undefined;
    }, 30_000);
    const live = (await listSessions(cluster.kube, cluster.namespace)).filter((s) => s.spec.challenge === 'race-notes' && !isUnclaimedPool(s) && !s.metadata.deletionTimestamp);
    const owners = live.map((s) => s.metadata.annotations?.[ANNOTATION_CLAIMED_USER] ?? s.spec.user);
    expect(owners.sort()).toEqual([...users].sort());
    // Six came warm from the pool, at least; the rest started fresh.
    expect(live.filter((s) => isPoolName(s.metadata.name)).length).toBeGreaterThanOrEqual(1);
    expect(live.filter((s) => !isPoolName(s.metadata.name)).length).toBeGreaterThanOrEqual(users.length - 6);
  });

  it('falls back to fresh instances when the pool is empty, and they run', async () => {
    await poolReady('tiny-pool', 1);
    const res = await Promise.all(['tp-a', 'tp-b', 'tp-c'].map(async (u) => api(0).app.inject({ method: 'POST', url: '/api/challenges', headers: await as(u), payload: { challenge: 'tiny-pool' } })));
    const ids = res.map((r) => sessionOf(r).id);
    expect(ids.filter(isPoolName)).toHaveLength(1);
    for (const [i, id] of ids.entries()) {
      const ready = await api(1).app.inject({ method: 'GET', url: `/api/sessions/${id}?wait=30`, headers: await as(['tp-a', 'tp-b', 'tp-c'][i] ?? '') });
      expect(sessionOf(ready).phase).toBe('Running');
    }
  });

  it('replaces unclaimed instances when the Challenge’s runtime changes and leaves claimed ones alone', async () => {
    const before = await poolReady('warm-notes', 3);
    const claimed = (await listSessions(cluster.kube, cluster.namespace)).find((s) => s.spec.challenge === 'warm-notes' && !isUnclaimedPool(s));
    expect(claimed).toBeDefined();
    const patch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
    const chal = (await cluster.kube.custom.getNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: cluster.namespace, plural: CHALLENGE_PLURAL, name: 'warm-notes' })) as { spec: { containers: { env?: { name: string; value: string }[] }[] } };
    const containers = structuredClone(chal.spec.containers);
    containers[0]!.env = [...(containers[0]!.env ?? []), { name: 'EDITION', value: '2' }];
    await cluster.kube.custom.patchNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: cluster.namespace, plural: CHALLENGE_PLURAL, name: 'warm-notes', body: { spec: { containers } } }, patch);
    const after = await waitUntil('a replaced pool', async () => {
      const pool = await poolOf('warm-notes');
      const fresh = pool.filter((s) => s.status?.phase === 'Running' && provisionedFromOf(s)?.runtime.containers[0]?.env?.some((e) => e.name === 'EDITION'));
      return pool.length === 3 && fresh.length === 3 ? pool : undefined;
    }, 60_000, 250);
    expect(after.map((s) => s.metadata.name).filter((n) => before.some((b) => b.metadata.name === n))).toEqual([]);
    const still = (await listSessions(cluster.kube, cluster.namespace)).find((s) => s.metadata.name === claimed?.metadata.name);
    expect(still?.metadata.uid).toBe(claimed?.metadata.uid);
    expect(provisionedFromOf(still!)?.runtime.containers[0]?.env?.some((e) => e.name === 'EDITION')).toBe(false);
  });
});
