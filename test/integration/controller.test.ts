import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiException, type V1NetworkPolicy } from '@kubernetes/client-node';
import { CHALLENGE_PLURAL, GROUP, LABEL_CHALLENGE, LABEL_SESSION, LABEL_USER_HASH, VERSION } from '../../src/api/group.js';
import type { ChallengeSession } from '../../src/api/session.js';
import type { Engine } from '../../src/engine.js';
import { deriveFlag } from '../../src/flags/derive.js';
import { userHash } from '../../src/reconcile/names.js';
import { useCluster, waitUntil } from '../support/kube.js';
import { createSession, getSession, installSamples, startTestEngine, TEST_FLAG_KEY, type LogCapture } from '../support/engine.js';

const cluster = useCluster(import.meta.filename);
let engine: Engine;
let logs: LogCapture;
const inHour = () => new Date(Date.now() + 3600_000);

async function waitPhase(name: string, phase: string, timeoutMs = 20_000): Promise<ChallengeSession> {
  return waitUntil(`session ${name} ${phase}`, async () => {
    const s = await getSession(cluster.kube, cluster.namespace, name);
    return s?.status?.phase === phase ? s : undefined;
  }, timeoutMs);
}

async function gone(read: () => Promise<unknown>): Promise<boolean> {
  try {
    await read();
    return false;
  } catch (err) {
    return err instanceof ApiException && err.code === 404;
  }
}

beforeAll(async () => {
  await installSamples(cluster.kube, cluster.namespace);
  ({ engine, logs } = await startTestEngine(cluster.kubeconfig, cluster.namespace));
});

afterAll(async () => {
  await engine?.stop();
});

describe('session reconcile', () => {
  it('provisions a hardened pod, service, network policy and flag secret, then reports Running with endpoints', async () => {
    const s = await createSession(cluster.kube, cluster.namespace, 'web-a', 'web-notes', 'alice', inHour());
    const running = await waitPhase('web-a', 'Running');
    const ns = cluster.namespace;
    expect(running.status?.endpoints).toEqual([
      expect.objectContaining({ name: 'http', protocol: 'http', host: `web-a.${ns}.svc.cluster.local`, port: 8080 }),
    ]);
    expect(running.status?.readyAt).toBeTruthy();
    expect(running.status?.conditions?.find((c) => c.type === 'Ready')).toMatchObject({ status: 'True' });

    const pod = await cluster.kube.core.readNamespacedPod({ name: 'web-a', namespace: ns });
    const svc = await cluster.kube.core.readNamespacedService({ name: 'web-a', namespace: ns });
    const secret = await cluster.kube.core.readNamespacedSecret({ name: 'web-a-flag', namespace: ns });
    const np = await cluster.kube.net.readNamespacedNetworkPolicy({ name: 'web-a', namespace: ns });
    for (const child of [pod, svc, secret, np]) {
      expect(child.metadata?.labels).toMatchObject({ [LABEL_SESSION]: 'web-a', [LABEL_CHALLENGE]: 'web-notes', [LABEL_USER_HASH]: userHash('alice') });
      expect(child.metadata?.ownerReferences).toEqual([expect.objectContaining({ kind: 'ChallengeSession', name: 'web-a', uid: s.metadata.uid, controller: true })]);
    }
    // hardening
    expect(pod.spec?.automountServiceAccountToken).toBe(false);
    expect(pod.spec?.enableServiceLinks).toBe(false);
    expect(pod.spec?.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
    for (const c of pod.spec?.containers ?? []) {
      expect(c.securityContext).toMatchObject({ allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] }, readOnlyRootFilesystem: true });
      expect(c.resources?.limits?.cpu).toBeTruthy();
      expect(c.resources?.limits?.memory).toBeTruthy();
    }
    expect(pod.spec?.volumes?.some((v) => v.projected?.sources?.some((p) => p.serviceAccountToken))).toBeFalsy();
    // flag
    const flag = Buffer.from(secret.data?.flag ?? '', 'base64').toString();
    expect(flag).toBe(deriveFlag(TEST_FLAG_KEY, { challenge: 'web-notes', sessionUid: s.metadata.uid ?? '', user: 'alice' }, { format: 'CTF{%s}', length: 32 }));
    const app = pod.spec?.containers.find((c) => c.name === 'app');
    expect(app?.env?.find((e) => e.name === 'FLAG')?.valueFrom?.secretKeyRef).toEqual({ name: 'web-a-flag', key: 'flag' });
    // service
    expect(svc.spec?.selector).toEqual({ [LABEL_SESSION]: 'web-a' });
    expect(svc.spec?.ports?.map((p) => p.port)).toEqual([8080]);
    // network policy
    expect(np.spec?.policyTypes).toEqual(['Ingress', 'Egress']);
    expect(np.spec?.podSelector?.matchLabels).toEqual({ [LABEL_SESSION]: 'web-a' });
    // events
    await waitUntil('Created events', async () => {
      const ev = await cluster.kube.core.listNamespacedEvent({ namespace: ns, fieldSelector: 'involvedObject.name=web-a' });
      return ev.items.some((e) => e.reason === 'Created' && e.message?.includes('Pod')) ? true : undefined;
    });
  });

  it('delivers a file flag only to the listed containers', async () => {
    await createSession(cluster.kube, cluster.namespace, 'sql-a', 'sql-two-tier', 'alice', inHour());
    await waitPhase('sql-a', 'Running');
    const pod = await cluster.kube.core.readNamespacedPod({ name: 'sql-a', namespace: cluster.namespace });
    expect(pod.spec?.containers.map((c) => c.name).sort()).toEqual(['app', 'db']);
    const hasFlag = (name: string) => pod.spec?.containers.find((c) => c.name === name)?.env?.some((e) => e.valueFrom?.secretKeyRef?.name === 'sql-a-flag');
    expect([hasFlag('app'), hasFlag('db')].filter(Boolean)).toHaveLength(1);
  });

  it('writes nothing when a reconcile finds nothing to change', async () => {
    await waitPhase('web-a', 'Running');
    await engine.controller.idle();
    const before = await getSession(cluster.kube, cluster.namespace, 'web-a');
    const pod = await cluster.kube.core.readNamespacedPod({ name: 'web-a', namespace: cluster.namespace });
    const np = await cluster.kube.net.readNamespacedNetworkPolicy({ name: 'web-a', namespace: cluster.namespace });
    // force a full pass over every session
    (engine.controller as unknown as { enqueueAll(): void }).enqueueAll();
    await new Promise((r) => setTimeout(r, 300));
    await engine.controller.idle();
    const after = await getSession(cluster.kube, cluster.namespace, 'web-a');
    expect(after?.metadata.resourceVersion).toBe(before?.metadata.resourceVersion);
    expect((await cluster.kube.core.readNamespacedPod({ name: 'web-a', namespace: cluster.namespace })).metadata?.resourceVersion).toBe(pod.metadata?.resourceVersion);
    expect((await cluster.kube.net.readNamespacedNetworkPolicy({ name: 'web-a', namespace: cluster.namespace })).metadata?.resourceVersion).toBe(np.metadata?.resourceVersion);
  });

  it('marks a session Failed with a reason when its pod fails or its image cannot be pulled', async () => {
    await createSession(cluster.kube, cluster.namespace, 'fail-a', 'web-notes', 'bob', inHour());
    await createSession(cluster.kube, cluster.namespace, 'pull-a', 'web-notes', 'carol', inHour());
    await waitPhase('fail-a', 'Running');
    await waitPhase('pull-a', 'Running');
    const ns = cluster.namespace;
    const patchStatus = (name: string, status: object) =>
      cluster.kubectl('patch', 'pod', name, '--subresource=status', '--type=merge', '-p', JSON.stringify({ status }));
    await patchStatus('fail-a', { phase: 'Failed', reason: 'Error', message: 'container exited with code 1' });
    await patchStatus('pull-a', {
      conditions: [{ type: 'Ready', status: 'False' }],
      containerStatuses: [{ name: 'app', image: 'challenge-engine/web-notes:1.0', imageID: '', ready: false, restartCount: 0, state: { waiting: { reason: 'ImagePullBackOff', message: 'Back-off pulling image' } } }],
    });
    const failed = await waitPhase('fail-a', 'Failed');
    expect(failed.status?.conditions?.find((c) => c.type === 'Ready')).toMatchObject({ status: 'False', reason: 'PodFailed' });
    const pull = await waitPhase('pull-a', 'Failed');
    expect(pull.status?.conditions?.find((c) => c.type === 'Ready')?.reason).toBe('ImagePullFailed');
    // The Warning Event follows the status write.
    await waitUntil('the ImagePullFailed Warning event', async () => {
      const ev = await cluster.kube.core.listNamespacedEvent({ namespace: ns, fieldSelector: 'involvedObject.name=pull-a' });
      return ev.items.some((e) => e.type === 'Warning' && e.reason === 'ImagePullFailed');
    });
  });

  it('reports an unknown challenge as Failed with reason UnknownChallenge', async () => {
    await createSession(cluster.kube, cluster.namespace, 'ghost-a', 'no-such-challenge', 'dave', inHour());
    const s = await waitPhase('ghost-a', 'Failed');
    expect(s.status?.conditions?.find((c) => c.type === 'Ready')?.reason).toBe('UnknownChallenge');
  });

  it('runs the sessions namespace under Pod Security restricted: a non-compliant pod is rejected', async () => {
    const nsObj = await cluster.kube.core.readNamespace({ name: cluster.namespace });
    expect(nsObj.metadata?.labels?.['pod-security.kubernetes.io/enforce']).toBe('restricted');
    const err = await cluster.kube.core
      .createNamespacedPod({ namespace: cluster.namespace, body: { metadata: { name: 'rogue' }, spec: { containers: [{ name: 'c', image: 'busybox', securityContext: { runAsUser: 0, capabilities: { add: ['NET_ADMIN'] } } }] } } })
      .then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(ApiException);
    expect((err as ApiException<string>).code).toBe(403);
    expect(String((err as ApiException<string>).body)).toMatch(/violates PodSecurity \\?"restricted/);
  });

  it('deletes every child through garbage collection when the session is deleted', async () => {
    await createSession(cluster.kube, cluster.namespace, 'del-a', 'pwn-echo', 'erin', inHour());
    await waitPhase('del-a', 'Running');
    await cluster.kubectl('delete', 'challengesession', 'del-a', '--wait=false');
    const ns = cluster.namespace;
    await waitUntil('children collected', async () =>
      (await gone(() => cluster.kube.core.readNamespacedPod({ name: 'del-a', namespace: ns }))) &&
      (await gone(() => cluster.kube.core.readNamespacedService({ name: 'del-a', namespace: ns }))) &&
      (await gone(() => cluster.kube.core.readNamespacedSecret({ name: 'del-a-flag', namespace: ns }))) &&
      (await gone(() => cluster.kube.net.readNamespacedNetworkPolicy({ name: 'del-a', namespace: ns }))),
    );
  });

  it('deletes sessions within a second of their expiry', async () => {
    const t0 = Date.now();
    const expiries = [2500, 3500, 4500].map((ms) => new Date(Math.ceil((t0 + ms) / 1000) * 1000));
    await Promise.all(expiries.map((at, i) => createSession(cluster.kube, cluster.namespace, `exp-${i}`, 'web-notes', `exp-user-${i}`, at)));
    const lateness = await Promise.all(
      expiries.map(async (at, i) => {
        await waitUntil(`exp-${i} deleted`, async () => (await getSession(cluster.kube, cluster.namespace, `exp-${i}`)) === undefined, 15_000, 25);
        return Date.now() - at.getTime();
      }),
    );
    for (const late of lateness) {
      expect(late).toBeGreaterThanOrEqual(-50);
      expect(late).toBeLessThan(1000);
    }
    expect(logs.lines.some((l) => l.msg?.toString().startsWith('Session expired'))).toBe(true);
  });

  it('leaves running sessions alone when their Challenge is edited; new sessions use the new definition', async () => {
    await waitPhase('web-a', 'Running');
    const podBefore = await cluster.kube.core.readNamespacedPod({ name: 'web-a', namespace: cluster.namespace });
    await cluster.kube.custom.patchNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: cluster.namespace,
      plural: CHALLENGE_PLURAL,
      name: 'web-notes',
      body: [{ op: 'replace', path: '/spec/containers/0/image', value: 'challenge-engine/web-notes:2.0' }],
    });
    // The engine provisions from its cache: wait until it has seen the edit.
    await waitUntil('the engine to see the edit', () => {
      const c = engine.caches.challenge('web-notes');
      return c?.ok && c.value.spec.containers[0]?.image === 'challenge-engine/web-notes:2.0';
    });
    await createSession(cluster.kube, cluster.namespace, 'web-new', 'web-notes', 'frank', inHour());
    await waitPhase('web-new', 'Running');
    const fresh = await cluster.kube.core.readNamespacedPod({ name: 'web-new', namespace: cluster.namespace });
    expect(fresh.spec?.containers[0]?.image).toBe('challenge-engine/web-notes:2.0');
    await engine.controller.idle();
    const podAfter = await cluster.kube.core.readNamespacedPod({ name: 'web-a', namespace: cluster.namespace });
    expect(podAfter.metadata?.uid).toBe(podBefore.metadata?.uid);
    expect(podAfter.spec?.containers[0]?.image).toBe('challenge-engine/web-notes:1.0');
    expect((await getSession(cluster.kube, cluster.namespace, 'web-a'))?.status?.phase).toBe('Running');
  });

  it('ends the sessions of a deleted Challenge', async () => {
    await createSession(cluster.kube, cluster.namespace, 'pwn-b', 'pwn-echo', 'gina', inHour());
    await waitPhase('pwn-b', 'Running');
    await cluster.kubectl('delete', 'challenge', 'pwn-echo');
    await waitUntil('pwn-b deleted', async () => (await getSession(cluster.kube, cluster.namespace, 'pwn-b')) === undefined, 15_000);
  });

  it('keeps the baseline default-deny policy in the namespace', async () => {
    const list = await cluster.kube.net.listNamespacedNetworkPolicy({ namespace: cluster.namespace });
    const base = list.items.find((p: V1NetworkPolicy) => p.metadata?.name === 'challenge-engine-default-deny');
    expect(base?.spec?.policyTypes?.sort()).toEqual(['Egress', 'Ingress']);
    expect(base?.spec?.ingress ?? []).toEqual([]);
    expect(base?.spec?.egress ?? []).toEqual([]);
  });

  it('never runs a session pod as root or with a service-account token', async () => {
    const pods = await cluster.kube.core.listNamespacedPod({ namespace: cluster.namespace, labelSelector: LABEL_SESSION });
    expect(pods.items.length).toBeGreaterThan(0);
    for (const p of pods.items) {
      expect(p.spec?.automountServiceAccountToken).toBe(false);
      expect(p.spec?.securityContext?.runAsNonRoot).toBe(true);
      expect(p.spec?.securityContext?.runAsUser).not.toBe(0);
    }
  });

  it('never writes a flag into the logs, and logs reconciles with ids in Kubernetes style', async () => {
    const secrets = await cluster.kube.core.listNamespacedSecret({ namespace: cluster.namespace, labelSelector: LABEL_SESSION });
    const flags = secrets.items.map((s) => Buffer.from(s.data?.flag ?? '', 'base64').toString()).filter((f) => f.length > 0);
    expect(flags.length).toBeGreaterThan(2);
    const all = logs.raw.join('\n');
    for (const f of flags) expect(all).not.toContain(f);
    const created = logs.lines.filter((l) => l.msg === 'Created Pod');
    expect(created.length).toBeGreaterThan(0);
    expect(created.every((l) => typeof l.reconcileID === 'string' && typeof l.session === 'string')).toBe(true);
  });

  it('explains a session to kubectl describe: conditions and Events', async () => {
    // Events are recorded after the status write; give the last one a moment.
    const out = await waitUntil('the ImagePullFailed event', async () => {
      const text = await cluster.kubectl('describe', 'challengesession', 'pull-a');
      return /Warning\s+ImagePullFailed/.test(text) ? text : undefined;
    });
    expect(out).toMatch(/Conditions:/);
    expect(out).toMatch(/Reason:\s+ImagePullFailed/);
    // Events with timestamps in the same second may be listed in either order.
    const events = out.slice(out.indexOf('Events:'));
    expect(events).toMatch(/Normal\s+Created/);
    expect(events).toMatch(/Warning\s+ImagePullFailed/);
  });

  it('exports controller-runtime and domain metrics', async () => {
    const text = await engine.metrics.registry.metrics();
    expect(text).toMatch(/challenge_engine_sessions\{challenge="web-notes",phase="Running"\} [1-9]/);
    expect(text).toMatch(/challenge_engine_sessions\{challenge="web-notes",phase="Failed"\} [1-9]/);
    expect(text).toMatch(/challenge_engine_spawn_to_ready_seconds_count [1-9]/);
    expect(text).toMatch(/controller_runtime_reconcile_total\{controller="challengesession",result="requeue_after"\} [1-9]/);
    expect(text).toMatch(/challenge_engine_sessions_ended_total\{reason="expired"\} [1-9]/);
    expect(text).toMatch(/workqueue_adds_total\{name="challengesession"\} [1-9]/);
    expect(text).toContain('process_resident_memory_bytes');
  });

  it('reports a Challenge whose pod the apiserver rejects as Failed with the reason, and keeps serving others', async () => {
    const bad = {
      apiVersion: 'ctf.challenge-engine.io/v1alpha1',
      kind: 'Challenge',
      metadata: { name: 'dup-mounts' },
      spec: {
        title: 'Duplicate mounts',
        category: 'misc',
        points: 1,
        containers: [{ name: 'a', image: 'example.org/a:1', ports: [{ containerPort: 8080 }], scratchPaths: ['/tmp', '/tmp'] }],
        expose: [{ port: 8080, protocol: 'http' }],
        flag: { dynamic: {} },
      },
    };
    await cluster.kube.custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: cluster.namespace, plural: CHALLENGE_PLURAL, body: bad });
    await waitUntil('the engine to see the challenge', () => engine.caches.challenge('dup-mounts')?.ok);
    await createSession(cluster.kube, cluster.namespace, 'dup-a', 'dup-mounts', 'hank', inHour());
    await createSession(cluster.kube, cluster.namespace, 'fine-a', 'web-notes', 'hank', inHour());
    const failed = await waitPhase('dup-a', 'Failed');
    const ready = failed.status?.conditions?.find((c) => c.type === 'Ready');
    expect(ready?.reason).toBe('InvalidChallenge');
    expect(ready?.message).toMatch(/mountPath|must be unique/);
    await waitPhase('fine-a', 'Running');
  });
});
