import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChallengeSession } from '../../src/api/session.js';
import type { Engine } from '../../src/engine.js';
import { hostKey, publicHost } from '../../src/reconcile/public-host.js';
import { useCluster, waitUntil } from '../support/kube.js';
import { createSession, getSession, installSamples, startTestEngine, TEST_FLAG_KEY, type LogCapture } from '../support/engine.js';

/**
 * Routes against the real apiserver with the Gateway API CRDs installed (no gateway runs here;
 * test/e2e/gateway-access.e2e.ts goes through a real one).
 */

const cluster = useCluster(import.meta.filename);
let engine: Engine;
let logs: LogCapture;
const inHour = () => new Date(Date.now() + 3600_000);
const GW = { CTF_GATEWAY: 'ctf-gateway/ctf', CTF_EXTERNAL_DOMAIN: 'ctf.test', CTF_GATEWAY_AUTH_FILTER: 'traefik.io/Middleware/challenge-engine-access' };

type Route = { kind: string; metadata: { name: string; resourceVersion: string; ownerReferences?: { uid: string; controller?: boolean }[] }; spec: { hostnames: string[]; parentRefs: { name: string; sectionName: string }[] } };

async function route(plural: 'httproutes' | 'tlsroutes', name: string): Promise<Route | undefined> {
  try {
    return (await cluster.kube.custom.getNamespacedCustomObject({ group: 'gateway.networking.k8s.io', version: 'v1', namespace: cluster.namespace, plural, name })) as Route;
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined;
    throw err;
  }
}

async function running(name: string): Promise<ChallengeSession> {
  return waitUntil(`session ${name} Running`, async () => {
    const s = await getSession(cluster.kube, cluster.namespace, name);
    return s?.status?.phase === 'Running' ? s : undefined;
  }, 20_000);
}

beforeAll(async () => {
  await installSamples(cluster.kube, cluster.namespace);
  ({ engine, logs } = await startTestEngine(cluster.kubeconfig, cluster.namespace, GW));
});

afterAll(async () => {
  await engine?.stop();
});

describe('per-session routes', () => {
  it('publishes an http port with an owned HTTPRoute on its unguessable host, shown in the endpoint', async () => {
    const created = await createSession(cluster.kube, cluster.namespace, 'rt-web', 'web-notes', 'alice', inHour());
    const s = await running('rt-web');
    const host = publicHost(hostKey(Buffer.from(TEST_FLAG_KEY)), created.metadata.uid ?? '', 'http', 'ctf.test');
    const r = await waitUntil('HTTPRoute', () => route('httproutes', 'rt-web-http'));
    expect(r.spec.hostnames).toEqual([host]);
    expect(r.spec.parentRefs[0]).toMatchObject({ name: 'ctf', sectionName: 'http' });
    expect(r.metadata.ownerReferences).toEqual([expect.objectContaining({ uid: created.metadata.uid, controller: true })]);
    expect(s.status?.endpoints?.[0]).toMatchObject({ externalHost: host, url: `https://${host}`, route: 'HTTPRoute rt-web-http' });
    expect(host).not.toContain('rt-web');
    expect(s.status?.conditions?.find((c) => c.type === 'Routed')).toMatchObject({ status: 'True', reason: 'Routed' });
  });

  it('publishes a tcp port with a TLSRoute and a connect command, and leaves routes alone on a resync', async () => {
    await createSession(cluster.kube, cluster.namespace, 'rt-tcp', 'pwn-echo', 'bob', inHour());
    const s = await running('rt-tcp');
    const r = await waitUntil('TLSRoute', () => route('tlsroutes', 'rt-tcp-tcp'));
    expect(r.spec.parentRefs[0]).toMatchObject({ sectionName: 'tls' });
    expect(s.status?.endpoints?.[0]?.connect).toBe(`ncat --ssl ${r.spec.hostnames[0]} 443`);
    await engine.controller.idle();
    const before = r.metadata.resourceVersion;
    // Every session reconciled again from the caches: nothing changed, nothing written.
    (engine.controller as unknown as { enqueueAll(): void }).enqueueAll();
    await engine.controller.idle();
    expect((await route('tlsroutes', 'rt-tcp-tcp'))?.metadata.resourceVersion).toBe(before);
  });

  it('deletes the routes with their session', async () => {
    await createSession(cluster.kube, cluster.namespace, 'rt-del', 'web-notes', 'carol', inHour());
    await waitUntil('HTTPRoute', () => route('httproutes', 'rt-del-http'));
    await cluster.kubectl('delete', 'challengesession', 'rt-del', '--wait=false');
    await waitUntil('HTTPRoute collected', async () => (await route('httproutes', 'rt-del-http')) === undefined, 30_000);
  });

  it('logs nothing about a missing Gateway API where it is installed', () => {
    expect(logs.lines.some((l) => String(l.msg).includes('Gateway API'))).toBe(false);
  });
});
