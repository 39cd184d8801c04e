import { pino } from 'pino';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Caches } from '../../src/read-model/caches.js';
import type { Engine } from '../../src/engine.js';
import { buildApp } from '../../src/http/app.js';
import { createTokenVerifier } from '../../src/http/auth.js';
import { createKube } from '../../src/kube/client.js';
import { createWriter } from '../../src/kube/writes.js';
import { createMetrics } from '../../src/metrics.js';
import { userHash } from '../../src/reconcile/names.js';
import { KubeSessionService } from '../../src/sessions/service.js';
import { createSession, getSession, installSamples, LogCapture, startTestEngine, TEST_FLAG_KEY, TEST_TOKEN_SECRET } from '../support/engine.js';
import { apiProxy, type ApiProxy } from '../support/faults.js';
import { useCluster, waitUntil } from '../support/kube.js';
import { phaseOf, token } from './helpers.js';

/**
 * A watch event the apiserver never delivers (its watch cache can lose one around an etcd
 * restart) would leave the engine's cache behind for good: the Pod is Running, nobody writes it
 * again, and its session stays Provisioning. The engine reaches the apiserver through a proxy
 * that swallows the watch event in which one session's Pod becomes Running; the pod-cache audit
 * must notice and relist. With the audit off, the same loss leaves the session stuck, which
 * shows that the proxy really hides the event.
 */
const cluster = useCluster(import.meta.filename);
const inHour = () => new Date(Date.now() + 3600_000);
let proxy: ApiProxy | undefined;
let engine: Engine | undefined;

beforeAll(async () => {
  await installSamples(cluster.kube, cluster.namespace);
});

afterEach(async () => {
  await engine?.stop();
  engine = undefined;
  await proxy?.close();
  proxy = undefined;
});

/** An engine behind a proxy that drops every watch event showing pod `lost` Running. */
async function engineLosing(lost: string, auditSeconds: number): Promise<LogCapture> {
  const podsWatch = `/api/v1/namespaces/${cluster.namespace}/pods?`;
  proxy = await apiProxy(cluster.kubeconfig, () => 0, {
    dropWatchEvent: (path, ev) => path.startsWith(podsWatch) && ev.object.metadata?.name === lost && ev.object.status?.phase === 'Running',
  });
  const started = await startTestEngine(proxy.kubeconfig, cluster.namespace, { CTF_CACHE_AUDIT_SECONDS: String(auditSeconds) });
  engine = started.engine;
  return started.logs;
}

/**
 * An API replica whose caches reach the apiserver through `cacheKubeconfig` (writes go straight
 * to it), with a confirmation period of `confirmLossMs` for suspected session events.
 */
async function apiReplica(cacheKubeconfig: string, confirmLossMs: number) {
  const logs = new LogCapture();
  const log = pino({ level: 'info' }, logs.stream);
  const metrics = createMetrics();
  const caches = Caches.watching(createKube(cacheKubeconfig), cluster.namespace, log, metrics, { confirmLossMs });
  await caches.start();
  const kube = cluster.kube;
  const service = new KubeSessionService({ kube, caches, writer: createWriter(kube, { component: 'test', instance: 'lost-events' }), log, metrics, flagKey: Buffer.from(TEST_FLAG_KEY), maxSessionsPerUser: 3 });
  const app = await buildApp({ service, tokens: createTokenVerifier(TEST_TOKEN_SECRET), metrics, log, corsOrigins: [], rateLimit: false });
  return {
    app,
    logs,
    metrics,
    close: async () => {
      await app.close();
      await caches.stop();
    },
  };
}

async function sessionPhase(name: string): Promise<string | undefined> {
  const s = await getSession(cluster.kube, cluster.namespace, name);
  return s && phaseOf(s);
}

async function podPhase(name: string): Promise<string | undefined> {
  return (await cluster.kube.core.readNamespacedPod({ name, namespace: cluster.namespace }).catch(() => undefined))?.status?.phase;
}

describe('a Pod event lost by the apiserver', () => {
  it('without the audit, leaves the session Provisioning although its Pod is Running (the proxy hides the event)', async () => {
    await engineLosing('lost-a', 0);
    await createSession(cluster.kube, cluster.namespace, 'lost-a', 'web-notes', 'lost-user-a', inHour());
    await createSession(cluster.kube, cluster.namespace, 'kept-a', 'web-notes', 'kept-user-a', inHour());
    // The control session, whose events all arrive, gets Running.
    await waitUntil('kept-a Running', async () => (await sessionPhase('kept-a')) === 'Running', 60_000, 100);
    await waitUntil('pod lost-a Running in the apiserver', async () => (await podPhase('lost-a')) === 'Running', 60_000, 100);
    await new Promise((r) => setTimeout(r, 5_000));
    expect((await sessionPhase('lost-a'))).toBe('Provisioning');
  });

  it('with the audit, is noticed within a few rounds: the pod cache is relisted and the session gets Running', async () => {
    const logs = await engineLosing('lost-b', 1);
    await createSession(cluster.kube, cluster.namespace, 'lost-b', 'web-notes', 'lost-user-b', inHour());
    await waitUntil('pod lost-b Running in the apiserver', async () => (await podPhase('lost-b')) === 'Running', 60_000, 100);
    const podRunningAt = Date.now();
    await waitUntil('lost-b Running', async () => (await sessionPhase('lost-b')) === 'Running', 30_000, 100);
    const healedMs = Date.now() - podRunningAt;

    const stale = logs.lines.filter((l) => l.msg === 'Cache missed an update the apiserver has; relisting');
    expect(stale.length).toBeGreaterThanOrEqual(1);
    expect(stale[0]?.objects).toEqual([`${cluster.namespace}/lost-b`]);
    const metrics = await engine?.metrics.registry.getSingleMetricAsString('challenge_engine_cache_stale_total');
    expect(metrics).toMatch(/challenge_engine_cache_stale_total\{informer="pods"\} [1-9]/);
    // Candidates are sessions older than two rounds; a loss is confirmed over two more.
    expect(healedMs).toBeLessThan(15_000);
    console.log(`[reliability] lost Pod event: session Running ${healedMs} ms after its Pod (audit every 1 s)`);
  });

  it('in the session cache, after the API wrote it: shown at once from the answer; a later write whose answer is not kept times out, relists and then shows', async () => {
    // An API replica whose session cache hears nothing about one player's sessions.
    const user = 'lost-session-player';
    const prefix = `s-${userHash(user)}-`;
    proxy = await apiProxy(cluster.kubeconfig, () => 0, {
      dropWatchEvent: (path, ev) => path.includes('/challengesessions?') && (ev.object.metadata?.name ?? '').startsWith(prefix),
    });
    const { app, logs, metrics, close } = await apiReplica(proxy.kubeconfig, 1_000);
    try {
      const headers = { authorization: `Bearer ${await token(user)}` };
      const spawn = await app.inject({ method: 'POST', url: '/api/challenges', headers, payload: { challenge: 'web-notes' } });
      expect(spawn.statusCode, spawn.body).toBe(201);
      const id = spawn.json<{ session: { id: string } }>().session.id;
      // The create's answer is in the cache though its watch event was lost.
      expect((await app.inject({ method: 'GET', url: `/api/sessions/${id}`, headers })).statusCode).toBe(200);
      // A stop (a delete: its answer holds no object) waits for the watch, which never tells.
      const stop = await app.inject({ method: 'DELETE', url: `/api/challenges/${id}`, headers });
      expect([200, 202, 204]).toContain(stop.statusCode);
      const t0 = Date.now();
      await waitUntil('the replica to show the stop', async () => (await app.inject({ method: 'GET', url: `/api/sessions/${id}`, headers })).statusCode === 404, 10_000, 100);
      const healedMs = Date.now() - t0;
      const stale = logs.lines.filter((l) => l.msg === 'Cache missed an update the apiserver has; relisting');
      expect(stale.map((l) => l.objects)).toEqual([[`${cluster.namespace}/${id}`]]);
      expect(await metrics.registry.getSingleMetricAsString('challenge_engine_cache_stale_total')).toMatch(/informer="challengesessions"\} 1/);
      console.log(`[reliability] lost session event: stop shown ${healedMs} ms after its answer (confirmation after 1 s)`);
    } finally {
      await close();
    }
  });

  it('is not suspected when a player waits on an id of theirs that does not exist', async () => {
    const { app, logs, close } = await apiReplica(cluster.kubeconfig, 500);
    try {
      const user = 'guessing-player';
      const res = await app.inject({ method: 'GET', url: `/api/sessions/s-${userHash(user)}-2?wait=3`, headers: { authorization: `Bearer ${await token(user)}` } });
      expect(res.statusCode).toBe(404);
      await new Promise((r) => setTimeout(r, 1_500));
      expect(logs.lines.filter((l) => l.msg === 'Cache missed an update the apiserver has; relisting')).toEqual([]);
    } finally {
      await close();
    }
  });
});
