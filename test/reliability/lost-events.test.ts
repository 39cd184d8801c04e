import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../src/engine.js';
import { createSession, getSession, installSamples, startTestEngine, type LogCapture } from '../support/engine.js';
import { apiProxy, type ApiProxy } from '../support/faults.js';
import { useCluster, waitUntil } from '../support/kube.js';
import { phaseOf } from './helpers.js';

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
});
