import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { buildApp } from '../../src/http/app.js';
import { createTokenIssuer, createTokenVerifier } from '../../src/http/auth.js';
import { KubeSessionService } from '../../src/sessions/service.js';
import { createMetrics } from '../../src/metrics.js';
import type { Engine } from '../../src/engine.js';
import { ANNOTATION_EXPIRES_AT, CHALLENGE_PLURAL, GROUP, VERSION } from '../../src/api/group.js';
import type { ChallengeSession } from '../../src/api/session.js';
import { useCluster, waitUntil } from '../support/kube.js';
import { installSamples, listSessions, startTestEngine, TEST_TOKEN_SECRET } from '../support/engine.js';
import { loadSamples } from '../support/invalid-objects.js';

/**
 * The first-come queue against the real apiserver: the engine capped at CAP instances, a burst
 * over the cap answered at once with positions, admitted in request order as sessions stop; a
 * Pod the scheduler cannot place holds every admission until it goes.
 */
const cluster = useCluster(import.meta.filename);
const CAP = 2;
/** The default lifetime the sample challenge's sessions get (1 h). */
const LIFETIME_MS = 3_600_000;
let engine: Engine;
let app: FastifyInstance;
const issuer = createTokenIssuer(TEST_TOKEN_SECRET);
const auth = async (user: string) => ({ authorization: `Bearer ${await issuer.issue({ user, admin: false, ttlSeconds: 600 })}` });

interface View {
  id: string;
  phase: string;
  queue?: { position: number; ahead: number; reason: string };
}

beforeAll(async () => {
  await installSamples(cluster.kube, cluster.namespace);
  ({ engine } = await startTestEngine(cluster.kubeconfig, cluster.namespace, { CTF_MAX_INSTANCES: String(CAP), CTF_QUEUE_TIMEOUT: '10m' }));
  const log = pino({ level: 'silent' });
  const metrics = createMetrics();
  const service = new KubeSessionService({ kube: engine.kube, caches: engine.caches, writer: engine.writer, log, metrics, flagKey: engine.flagKey, maxSessionsPerUser: 3, maxInstances: CAP });
  app = await buildApp({ service, tokens: createTokenVerifier(TEST_TOKEN_SECRET), metrics, log, corsOrigins: [] });
});

afterAll(async () => {
  await app?.close();
  await engine?.stop();
});

async function spawn(user: string, challenge = 'web-notes'): Promise<{ status: number; ms: number; session: View }> {
  const t0 = Date.now();
  const r = await app.inject({ method: 'POST', url: '/api/challenges', headers: await auth(user), payload: { challenge } });
  return { status: r.statusCode, ms: Date.now() - t0, session: r.json<{ session: View }>().session };
}

async function view(user: string, id: string): Promise<View> {
  return (await app.inject({ method: 'GET', url: `/api/sessions/${id}`, headers: await auth(user) })).json<{ session: View }>().session;
}

async function stop(user: string, id: string): Promise<void> {
  const r = await app.inject({ method: 'DELETE', url: `/api/challenges/${id}`, headers: await auth(user) });
  expect(r.statusCode).toBe(204);
}

const live = async () => (await listSessions(cluster.kube, cluster.namespace)).filter((s) => !s.metadata.deletionTimestamp);
const admittedAt = (s: ChallengeSession) => (s.status)?.admittedAt;

describe('a burst over the engine cap', () => {
  const users = ['q1', 'q2', 'q3', 'q4', 'q5', 'q6'];
  const ids: Record<string, string> = {};

  it('is answered at once, the sessions over the cap with their place', async () => {
    const answers = [];
    for (const u of users) {
      const a = await spawn(u);
      answers.push(a);
      ids[u] = a.session.id;
    }
    expect(answers.map((a) => a.status)).toEqual(users.map(() => 201));
    // The first CAP are admitted, the rest wait in request order.
    expect(answers.slice(0, CAP).map((a) => a.session.queue)).toEqual([undefined, undefined]);
    expect(answers.slice(CAP).map((a) => [a.session.phase, a.session.queue?.position, a.session.queue?.reason])).toEqual([
      ['Queued', 1, 'EngineCapacity'],
      ['Queued', 2, 'EngineCapacity'],
      ['Queued', 3, 'EngineCapacity'],
      ['Queued', 4, 'EngineCapacity'],
    ]);
    for (const a of answers) expect(a.ms).toBeLessThan(3_000);
  });

  it('runs CAP sessions and gives the others phase Queued and no Pod', async () => {
    await waitUntil('two Running and four Queued', async () => {
      const phases = (await live()).map((s) => s.status?.phase).sort();
      return JSON.stringify(phases) === JSON.stringify(['Queued', 'Queued', 'Queued', 'Queued', 'Running', 'Running']);
    }, 60_000);
    const pods = await cluster.kube.core.listNamespacedPod({ namespace: cluster.namespace });
    expect(pods.items.map((p) => p.metadata?.name).sort()).toEqual([ids.q1, ids.q2].sort());
    expect((await view('q5', ids.q5!)).queue).toEqual({ position: 3, ahead: 2, reason: 'EngineCapacity' });
  });

  it('admits the waiting sessions in request order as sessions stop, their lifetime starting then', async () => {
    const before = (await live()).find((s) => s.metadata.name === ids.q6)!;
    // The expiry is written to the second: let the clock pass the second q6's first expiry was
    // computed in, so a rewrite at admission is bound to show.
    const firstExpiry = Date.parse(before.metadata.annotations?.[ANNOTATION_EXPIRES_AT] ?? '');
    expect(firstExpiry).toBeGreaterThan(0);
    await new Promise((r) => setTimeout(r, Math.max(0, firstExpiry - LIFETIME_MS + 1_100 - Date.now())));
    const order: string[] = [];
    for (const [stopping, next] of [['q1', 'q3'], ['q2', 'q4'], ['q3', 'q5'], ['q4', 'q6']] as const) {
      await stop(stopping, ids[stopping]!);
      const admitted = await waitUntil(`${next} admitted`, async () => {
        const now = await live();
        const newly = now.filter((s) => admittedAt(s) && !order.includes(s.metadata.name) && s.metadata.name !== ids.q1 && s.metadata.name !== ids.q2);
        return newly.length > 0 ? newly : undefined;
      }, 30_000);
      expect(admitted.map((s) => s.metadata.name)).toEqual([ids[next]]);
      order.push(admitted[0]!.metadata.name);
      // Never more than CAP at once.
      expect((await live()).filter((s) => admittedAt(s) || s.status?.phase === 'Running').length).toBeLessThanOrEqual(CAP);
    }
    expect(order).toEqual([ids.q3, ids.q4, ids.q5, ids.q6]);
    const after = await waitUntil('q6 Running', async () => (await live()).find((s) => s.metadata.name === ids.q6 && s.status?.phase === 'Running'), 30_000);
    // Its expiry was written again at admission: the default lifetime from admittedAt.
    const expires = Date.parse(after.metadata.annotations?.[ANNOTATION_EXPIRES_AT] ?? '');
    expect(expires).toBeGreaterThan(Date.parse(before.metadata.annotations?.[ANNOTATION_EXPIRES_AT] ?? ''));
    expect(Math.abs(expires - (Date.parse(admittedAt(after)!) + LIFETIME_MS))).toBeLessThan(1_000);
  });

  it('cleans up', async () => {
    await stop('q5', ids.q5!);
    await stop('q6', ids.q6!);
    await waitUntil('no sessions', async () => (await live()).length === 0, 30_000);
  });
});

describe('a Pod the scheduler cannot place', () => {
  it('holds the admissions of its challenge (ClusterFull) until it goes, and not those of others', async () => {
    const sample = loadSamples().find((s) => (s.object as { metadata?: { name?: string } }).metadata?.name === 'web-notes');
    const o = structuredClone(sample!.object) as { metadata: { name: string }; spec: { containers: { resources?: unknown }[] } };
    o.metadata = { name: 'too-big' };
    o.spec.containers = o.spec.containers.map((c) => ({ ...c, resources: { requests: { cpu: '100000' }, limits: { cpu: '100000' } } }));
    await cluster.kube.custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: cluster.namespace, plural: CHALLENGE_PLURAL, body: o });
    await waitUntil('the Challenge cached', () => engine.caches.challenge('too-big')?.ok);
    const big = await spawn('u-big', 'too-big');
    expect(big.status).toBe(201);
    await waitUntil('the big Pod unschedulable', async () => (await live()).find((s) => s.metadata.name === big.session.id && s.status?.conditions?.some((c) => c.reason === 'Unschedulable')), 30_000);
    const next = await spawn('u-next', 'too-big');
    expect(next.session.queue).toMatchObject({ position: 1, reason: 'ClusterFull' });
    await waitUntil('the next one Queued', async () => (await live()).find((s) => s.metadata.name === next.session.id && s.status?.phase === 'Queued'), 30_000);
    // Another challenge is not held back by a Pod that could never fit anywhere.
    const small = await spawn('u-small');
    expect(small.session.queue).toBeUndefined();
    await waitUntil('the small one Running', async () => (await live()).find((s) => s.metadata.name === small.session.id && s.status?.phase === 'Running'), 30_000);
    await stop('u-big', big.session.id);
    await waitUntil('the next one admitted', async () => (await live()).find((s) => s.metadata.name === next.session.id && s.status?.admittedAt !== undefined), 30_000);
    await stop('u-next', next.session.id);
    await stop('u-small', small.session.id);
  });
});
