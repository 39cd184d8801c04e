import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { pino } from 'pino';
import { buildApp } from '../../src/http/app.js';
import { createTokenIssuer, createTokenVerifier } from '../../src/http/auth.js';
import { Caches } from '../../src/read-model/caches.js';
import { KubeSessionService } from '../../src/sessions/service.js';
import { TEAM_REQUIRED } from '../../src/sessions/owner.js';
import { createMetrics } from '../../src/metrics.js';
import type { Engine } from '../../src/engine.js';
import { LABEL_TEAM_HASH } from '../../src/api/group.js';
import type { OwnerMode } from '../../src/api/common.js';
import { teamHash } from '../../src/reconcile/names.js';
import { useCluster, waitUntil } from '../support/kube.js';
import { installSamples, installTeamChallenge, listSessions, startTestEngine, TEST_TOKEN_SECRET } from '../support/engine.js';

/**
 * Team-owned instances over the real service, caches and controller: two members of one team
 * on two API replicas share one instance and both use it; another team does not see it; a token
 * without a team is refused.
 */
const cluster = useCluster(import.meta.filename);
let engine: Engine;
const apis: { app: FastifyInstance; caches: Caches; metrics: ReturnType<typeof createMetrics> }[] = [];
const issuer = createTokenIssuer(TEST_TOKEN_SECRET);
const as = async (user: string, team?: string) => ({ authorization: `Bearer ${await issuer.issue({ user, ...(team ? { team } : {}), ttlSeconds: 600 })}` });

async function replica(instanceOwner: OwnerMode = 'user') {
  const log = pino({ level: 'silent' });
  const metrics = createMetrics();
  const caches = Caches.watching(engine.kube, cluster.namespace, log);
  await caches.start();
  const service = new KubeSessionService({ kube: engine.kube, caches, writer: engine.writer, log, metrics, flagKey: engine.flagKey, maxSessionsPerUser: 3, instanceOwner });
  const app = await buildApp({ service, tokens: createTokenVerifier(TEST_TOKEN_SECRET), metrics, log, corsOrigins: [], rateLimit: false });
  apis.push({ app, caches, metrics });
  return app;
}

const api = (i: number) => {
  const a = apis[i];
  if (!a) throw new Error(`no api ${i}`);
  return a.app;
};

beforeAll(async () => {
  await installSamples(cluster.kube, cluster.namespace);
  await installTeamChallenge(cluster.kube, cluster.namespace, 'team-notes');
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

async function flagOf(sessionId: string): Promise<string> {
  const s = await cluster.kube.core.readNamespacedSecret({ name: `${sessionId}-flag`, namespace: cluster.namespace });
  return Buffer.from(s.data?.flag ?? '', 'base64').toString();
}

type View = { id: string; owner: string; team?: string; user: string; phase: string; expiresAt: string; solved: boolean };
const sessionOf = (r: LightMyRequestResponse) => r.json<{ session: View }>().session;
const ids = (r: LightMyRequestResponse) => r.json<{ sessions: View[] }>().sessions.map((s) => s.id);

describe('a team\u2019s instance', () => {
  it('is one for two members on two replicas: both see, extend and solve it; another team does not see it', async () => {
    const ann = await as('ann', 'red');
    const ben = await as('ben', 'red');
    const cat = await as('cat', 'blue');
    const cat0 = (await api(0).inject({ method: 'GET', url: '/api/challenges', headers: ann })).json<{ challenges: { name: string; owner: string }[] }>().challenges;
    expect(cat0.find((c) => c.name === 'team-notes')?.owner).toBe('team');
    expect(cat0.find((c) => c.name === 'web-notes')?.owner).toBe('user');

    const first = await api(0).inject({ method: 'POST', url: '/api/challenges', headers: ann, payload: { challenge: 'team-notes' } });
    expect(first.statusCode, first.body).toBe(201);
    const id = sessionOf(first).id;
    expect(sessionOf(first)).toMatchObject({ owner: 'team', team: 'red', user: 'ann' });
    // The other replica may not have seen it yet: the apiserver's AlreadyExists answers.
    const second = await api(1).inject({ method: 'POST', url: '/api/challenges', headers: ben, payload: { challenge: 'team-notes' } });
    expect([second.statusCode, sessionOf(second).id]).toEqual([200, id]);

    const ready = sessionOf(await api(1).inject({ method: 'GET', url: `/api/sessions/${id}?wait=20`, headers: ben }));
    expect(ready).toMatchObject({ phase: 'Running', owner: 'team' });
    for (const [i, h] of [[0, ann], [1, ben]] as const) expect(ids(await api(i).inject({ method: 'GET', url: '/api/sessions', headers: h }))).toEqual([id]);
    const [stored] = (await listSessions(cluster.kube, cluster.namespace)).filter((s) => s.metadata.name === id);
    expect(stored?.spec).toEqual({ challenge: 'team-notes', user: 'ann', team: 'red', owner: 'team' });
    expect(stored?.metadata.labels?.[LABEL_TEAM_HASH]).toBe(teamHash('red'));
    const pod = await cluster.kube.core.readNamespacedPod({ name: id, namespace: cluster.namespace });
    expect(pod.metadata?.labels?.[LABEL_TEAM_HASH]).toBe(teamHash('red'));

    // Another team: nothing of red's instance, and an instance of its own.
    expect(ids(await api(0).inject({ method: 'GET', url: '/api/sessions', headers: cat }))).toEqual([]);
    for (const req of [
      { method: 'GET' as const, url: `/api/sessions/${id}` },
      { method: 'POST' as const, url: `/api/sessions/${id}/extend` },
      { method: 'DELETE' as const, url: `/api/challenges/${id}` },
    ]) {
      expect((await api(0).inject({ ...req, headers: cat })).statusCode, `${req.method} ${req.url}`).toBe(404);
    }
    const blue = await api(1).inject({ method: 'POST', url: '/api/challenges', headers: cat, payload: { challenge: 'team-notes' } });
    expect(blue.statusCode).toBe(201);
    expect(sessionOf(blue).id).not.toBe(id);

    // Both members extend it, each by one step.
    const byAnn = sessionOf(await api(0).inject({ method: 'POST', url: `/api/sessions/${id}/extend`, headers: ann }));
    const byBen = sessionOf(await api(1).inject({ method: 'POST', url: `/api/sessions/${id}/extend`, headers: ben }));
    expect(Date.parse(byAnn.expiresAt) - Date.parse(ready.expiresAt)).toBe(30 * 60_000);
    expect(Date.parse(byBen.expiresAt) - Date.parse(byAnn.expiresAt)).toBe(30 * 60_000);

    // Red's flag: sharing when blue submits it, a solve when ben (who did not start it) does.
    const flag = await waitUntil('the flag Secret', () => flagOf(id).catch(() => undefined));
    const shared = await api(1).inject({ method: 'POST', url: '/api/flags', headers: cat, payload: { challenge: 'team-notes', flag } });
    expect(shared.json()).toEqual({ correct: false });
    const ev = await waitUntil('FlagShared event', async () => {
      const list = await cluster.kube.core.listNamespacedEvent({ namespace: cluster.namespace, fieldSelector: `involvedObject.name=${id}` });
      return list.items.find((e) => e.reason === 'FlagShared');
    });
    expect(ev.message).toContain('of team blue');
    expect(ev.message).toContain('(team red)');
    expect((await api(1).inject({ method: 'POST', url: '/api/flags', headers: ben, payload: { sessionId: id, flag } })).json()).toEqual({ correct: true });
    await waitUntil('solved for ann on the other replica', async () => sessionOf(await api(0).inject({ method: 'GET', url: `/api/sessions/${id}`, headers: ann })).solved);
    const sharing = await apis[1]?.metrics.registry.getSingleMetricAsString('challenge_engine_flag_sharing_suspected_total');
    expect(sharing).toMatch(/challenge_engine_flag_sharing_suspected_total 1/);

    // Ben stops it; ann no longer finds it.
    expect((await api(1).inject({ method: 'DELETE', url: `/api/challenges/${id}`, headers: ben })).statusCode).toBe(204);
    await waitUntil('gone for ann', async () => (await api(0).inject({ method: 'GET', url: `/api/sessions/${id}`, headers: ann })).statusCode === 404);
  });

  it('refuses a token without a team with 403 team-required, and leaves the team\u2019s instance alone', async () => {
    const dee = await as('dee', 'green');
    const lou = await as('lou');
    const id = sessionOf(await api(0).inject({ method: 'POST', url: '/api/challenges', headers: dee, payload: { challenge: 'team-notes' } })).id;
    for (const req of [
      { method: 'POST' as const, url: '/api/challenges', payload: { challenge: 'team-notes' } },
      { method: 'GET' as const, url: `/api/sessions/${id}` },
      { method: 'POST' as const, url: `/api/sessions/${id}/extend` },
      { method: 'DELETE' as const, url: `/api/challenges/${id}` },
      { method: 'POST' as const, url: '/api/flags', payload: { sessionId: id, flag: 'CTF{x}' } },
    ]) {
      const r = await api(1).inject({ ...req, headers: lou });
      expect([r.statusCode, r.json<{ type: string; detail: string }>()], `${req.method} ${req.url}`).toEqual([403, expect.objectContaining({ type: 'urn:challenge-engine:problem:team-required', detail: TEAM_REQUIRED })]);
    }
    const mine = (await listSessions(cluster.kube, cluster.namespace)).filter((s) => s.spec.challenge === 'team-notes' && s.spec.team === 'green');
    expect(mine.map((s) => s.metadata.name)).toEqual([id]);
    // A user challenge is still theirs to play.
    expect((await api(1).inject({ method: 'POST', url: '/api/challenges', headers: lou, payload: { challenge: 'pwn-echo' } })).statusCode).toBe(201);
  });

  it('follows CTF_INSTANCE_OWNER=team for a Challenge without spec.owner', async () => {
    const app = await replica('team');
    const r = await app.inject({ method: 'POST', url: '/api/challenges', headers: await as('eve', 'violet'), payload: { challenge: 'pwn-echo' } });
    expect(r.statusCode).toBe(201);
    expect(sessionOf(r)).toMatchObject({ owner: 'team', team: 'violet' });
    expect(sessionOf(r).id).toMatch(/^t-/);
    const again = await app.inject({ method: 'POST', url: '/api/challenges', headers: await as('fay', 'violet'), payload: { challenge: 'pwn-echo' } });
    expect([again.statusCode, sessionOf(again).id]).toEqual([200, sessionOf(r).id]);
  });
});

describe('a team under concurrency', () => {
  it('gets exactly one instance from 40 concurrent spawns by four members across two replicas', async () => {
    const members = await Promise.all(['m1', 'm2', 'm3', 'm4'].map((u) => as(u, 'racers')));
    const results = await Promise.all(Array.from({ length: 40 }, (_, i) => api(i % 2).inject({ method: 'POST', url: '/api/challenges', headers: members[i % 4], payload: { challenge: 'team-notes' } })));
    expect(results.map((r) => r.statusCode).filter((s) => s !== 200 && s !== 201)).toEqual([]);
    expect(results.filter((r) => r.statusCode === 201)).toHaveLength(1);
    expect(new Set(results.map((r) => sessionOf(r).id)).size).toBe(1);
    const stored = (await listSessions(cluster.kube, cluster.namespace)).filter((s) => s.spec.team === 'racers');
    expect(stored).toHaveLength(1);
  });
});
