import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { API_VERSION, CHALLENGE_KIND, CHALLENGE_PLURAL, GROUP, VERSION } from '../../src/api/group.js';
import type { ChallengeSession } from '../../src/api/session.js';
import type { Engine } from '../../src/engine.js';
import { buildApp } from '../../src/http/app.js';
import { createTokenVerifier } from '../../src/http/auth.js';
import { createMetrics } from '../../src/metrics.js';
import { KubeSessionService } from '../../src/sessions/service.js';
import { createSession, getSession, installSamples, startTestEngine, TEST_TOKEN_SECRET } from '../support/engine.js';
import { useCluster, waitUntil } from '../support/kube.js';
import { phaseOf, readyReason, token } from './helpers.js';

/**
 * Challenges that pass the CRD schema but are hostile to the engine or the cluster. Each affected
 * session must end in a clear condition, and a normal session started at the same time must
 * still become Running.
 */
const cluster = useCluster(import.meta.filename);
const inHour = () => new Date(Date.now() + 3600_000);
let engine: Engine;
let app: FastifyInstance;

const ODD = '\u202e\u0000\u200d\ud83d\udc69\u200d\ud83d\udcbb e\u0301\u0327 \ufeff<script>alert(1)</script> ${{7*7}} %s%n \u0645\u0631\u062d\u0628\u0627 \ud800\udc00';
const TITLE = (ODD + ODD + ODD).slice(0, 100);
const DESCRIPTION = ODD.repeat(200).slice(0, 10_000);

function challenge(name: string, spec: Record<string, unknown>) {
  return {
    apiVersion: API_VERSION,
    kind: CHALLENGE_KIND,
    metadata: { name },
    spec: { title: name, category: 'hostile', points: 1, flag: { dynamic: {} }, ...spec },
  };
}

const app8080 = { name: 'app', image: 'challenge-engine/app:1.0', ports: [{ containerPort: 8080 }] };
const hostile = [
  challenge('max-containers', {
    // 8 containers (the maximum), 16 ports and 64 variables each, 8 scratch paths, 16 exposed ports.
    containers: Array.from({ length: 8 }, (_, c) => ({
      name: `c${c}`,
      image: `challenge-engine/many-${c}:1.0`,
      ports: Array.from({ length: 16 }, (_, p) => ({ containerPort: 10_000 + c * 100 + p })),
      env: Array.from({ length: 64 }, (_, e) => ({ name: `V_${e}`, value: ODD.repeat(4) })),
      args: Array.from({ length: 64 }, (_, a) => `--arg-${a}=${'x'.repeat(100)}`),
      scratchPaths: Array.from({ length: 8 }, (_, s) => `/scratch/${s}`),
    })),
    expose: Array.from({ length: 16 }, (_, p) => ({ port: 10_000 + p, protocol: 'tcp' })),
  }),
  challenge('odd-unicode', { title: TITLE, description: DESCRIPTION, tags: ['\u202e', '\ud83d\ude00'.repeat(10)], containers: [app8080], expose: [{ port: 8080, protocol: 'http' }] }),
  challenge('never-starts', { containers: [{ ...app8080, image: 'registry.invalid/does-not-exist:never' }], expose: [{ port: 8080, protocol: 'http' }] }),
  challenge('port-clash', {
    containers: [
      { name: 'one', image: 'challenge-engine/one:1.0', ports: [{ name: 'http', containerPort: 8080 }] },
      { name: 'two', image: 'challenge-engine/two:1.0', ports: [{ name: 'http', containerPort: 8080 }] },
    ],
    expose: [{ port: 8080, protocol: 'http' }],
  }),
  challenge('absurd-resources', {
    containers: [{ ...app8080, resources: { requests: { cpu: '1000', memory: '10Ti' }, limits: { cpu: '1000', memory: '10Ti' } } }],
    expose: [{ port: 8080, protocol: 'http' }],
  }),
  challenge('absurd-limits-only', { containers: [{ ...app8080, resources: { limits: { cpu: '1000', memory: '10Ti' } } }], expose: [{ port: 8080, protocol: 'http' }] }),
  challenge('huge-quantity', { containers: [{ ...app8080, resources: { requests: { cpu: '9999999999999999999' } } }], expose: [{ port: 8080, protocol: 'http' }] }),
];

beforeAll(async () => {
  await installSamples(cluster.kube, cluster.namespace);
  for (const c of hostile) await cluster.kube.custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: cluster.namespace, plural: CHALLENGE_PLURAL, body: c });
  ({ engine } = await startTestEngine(cluster.kubeconfig, cluster.namespace, { CTF_MAX_SESSIONS_PER_USER: '10' }));
  const log = pino({ level: 'silent' });
  const metrics = createMetrics();
  const service = new KubeSessionService({ kube: engine.kube, caches: engine.caches, writer: engine.writer, log, metrics, flagKey: engine.flagKey, maxSessionsPerUser: 10 });
  app = await buildApp({ service, tokens: createTokenVerifier(TEST_TOKEN_SECRET), metrics, log, corsOrigins: [] });
});

afterAll(async () => {
  await app?.close();
  await engine?.stop();
});

async function settled(name: string, ok: (s: ChallengeSession) => boolean, timeoutMs = 45_000): Promise<ChallengeSession> {
  return waitUntil(`${name} to settle`, async () => {
    const s = await getSession(cluster.kube, cluster.namespace, name);
    return s && ok(s) ? s : undefined;
  }, timeoutMs, 200);
}

describe('hostile challenges that pass the schema', () => {
  it('accepts all of them at the apiserver (they are valid Challenges)', async () => {
    for (const c of hostile) {
      const p = engine.caches.challenge(c.metadata.name);
      expect(p?.ok, `${c.metadata.name}: ${p && !p.ok ? p.error : 'not cached'}`).toBe(true);
    }
  });

  it('gives each affected session a clear condition while a normal session started alongside becomes Running', async () => {
    const names = hostile.map((c) => c.metadata.name);
    const t0 = Date.now();
    await Promise.all([...names, 'web-notes'].map((c) => createSession(cluster.kube, cluster.namespace, `h-${c}`, c, `h-user-${c}`, inHour())));

    const normal = await settled('h-web-notes', (s) => phaseOf(s) === 'Running');
    const normalMs = Date.now() - t0;
    expect(readyReason(normal)).toBe('Ready');

    // The biggest Pod and Service the schema allows are built and run.
    const max = await settled('h-max-containers', (s) => phaseOf(s) === 'Running');
    expect(max.status?.endpoints).toHaveLength(16);
    const maxPod = await cluster.kube.core.readNamespacedPod({ name: 'h-max-containers', namespace: cluster.namespace });
    expect(maxPod.spec?.containers).toHaveLength(8);

    // Odd text is stored and served byte for byte, and does not disturb the session.
    await settled('h-odd-unicode', (s) => phaseOf(s) === 'Running');
    const catalogue = await app.inject({ method: 'GET', url: '/api/challenges', headers: { authorization: `Bearer ${await token('reader')}` } });
    expect(catalogue.statusCode).toBe(200);
    const odd = catalogue.json<{ challenges: { name: string; title: string; description: string }[] }>().challenges.find((c) => c.name === 'odd-unicode');
    expect(odd?.title).toBe(TITLE);
    expect(odd?.description).toBe(DESCRIPTION);

    // Absurd requests cannot be scheduled: the session waits with reason Unschedulable.
    const absurd = await settled('h-absurd-resources', (s) => readyReason(s) === 'Unschedulable');
    expect(phaseOf(absurd)).toBe('Provisioning');
    expect(absurd.status?.conditions?.find((c) => c.type === 'Ready')?.message).toMatch(/Insufficient (cpu|memory)/);
    const huge = await settled('h-huge-quantity', (s) => readyReason(s) === 'Unschedulable');
    expect(phaseOf(huge)).toBe('Provisioning');
    // Absurd limits alone are legal (requests default to 50m/64Mi) and the node overcommits.
    const limitsOnly = await settled('h-absurd-limits-only', (s) => phaseOf(s) === 'Running');
    const limitsPod = await cluster.kube.core.readNamespacedPod({ name: limitsOnly.metadata.name, namespace: cluster.namespace });
    expect(limitsPod.spec?.containers[0]?.resources?.requests).toEqual({ cpu: '50m', memory: '64Mi' });

    // An image that never starts: the kubelet (here kwok's status, set by hand) reports a pull back-off.
    await settled('h-never-starts', (s) => phaseOf(s) !== 'Pending');
    await cluster.kubectl('patch', 'pod', 'h-never-starts', '--subresource=status', '--type=merge', '-p', JSON.stringify({
      status: { phase: 'Pending', conditions: [{ type: 'Ready', status: 'False' }], containerStatuses: [{ name: 'app', image: 'registry.invalid/does-not-exist:never', imageID: '', ready: false, restartCount: 0, state: { waiting: { reason: 'ImagePullBackOff', message: 'Back-off pulling image "registry.invalid/does-not-exist:never"' } } }] },
    }));
    const never = await settled('h-never-starts', (s) => phaseOf(s) === 'Failed');
    expect(readyReason(never)).toBe('ImagePullFailed');
    expect(never.status?.message).toContain('registry.invalid/does-not-exist:never');

    // Two containers on one port: admitted (the apiserver only warns); a real kubelet crash-loops
    // the second one, which fails the session with a reason.
    await settled('h-port-clash', (s) => phaseOf(s) === 'Running');
    await cluster.kubectl('patch', 'pod', 'h-port-clash', '--subresource=status', '--type=merge', '-p', JSON.stringify({
      status: { conditions: [{ type: 'Ready', status: 'False' }], containerStatuses: [
        { name: 'one', image: 'challenge-engine/one:1.0', imageID: '', ready: true, restartCount: 0, state: { running: { startedAt: new Date().toISOString() } } },
        { name: 'two', image: 'challenge-engine/two:1.0', imageID: '', ready: false, restartCount: 5, state: { waiting: { reason: 'CrashLoopBackOff', message: 'listen tcp :8080: bind: address already in use' } } },
      ] },
    }));
    const clash = await settled('h-port-clash', (s) => phaseOf(s) === 'Failed');
    expect(readyReason(clash)).toBe('CrashLoop');
    expect(clash.status?.message).toContain('container two');

    // And the engine still serves a newcomer after all that.
    await createSession(cluster.kube, cluster.namespace, 'h-late-normal', 'pwn-echo', 'h-late-user', inHour());
    await settled('h-late-normal', (s) => phaseOf(s) === 'Running');
    console.log(`[reliability] hostile challenges: normal session Running after ${normalMs} ms alongside ${names.length} hostile ones; absurd requests -> Unschedulable, pull back-off -> ImagePullFailed, port clash -> CrashLoop`);
  });
});
