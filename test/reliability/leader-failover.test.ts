import type { V1ManagedFieldsEntry } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIELD_MANAGER } from '../../src/kube/writes.js';
import { GROUP, LABEL_SESSION, SESSION_PLURAL, VERSION } from '../../src/api/group.js';
import { installSamples, listSessions, sessionBody } from '../support/engine.js';
import { apiProxy, type ApiProxy } from '../support/faults.js';
import { useCluster, waitUntil } from '../support/kube.js';
import { ApiEngine, conflictLines, leakReport, managedObjects, phaseOf } from './helpers.js';

/**
 * Two engine replicas with leader election and a 3 s lease; the leader is killed with SIGKILL
 * while sessions are being created. The other replica must take over within the lease (plus its
 * retry period), and the two must never have written concurrently.
 */
const cluster = useCluster(import.meta.filename);
const LEASE_SECONDS = 3;
const RETRY_MS = 500; // max(500, lease / 7.5), as src/engine.ts derives it
const LEASE = 'reliability-failover';
const inHour = () => new Date(Date.now() + 3600_000);
const replicas: ApiEngine[] = [];
let proxy: ApiProxy | undefined;

/**
 * Field managers that may own fields of the engine's objects: the engine's single manager, the
 * scheduler (binding), kwok (pod status, standing in for the kubelet) and the controller-manager
 * (endpoints, garbage collection); TEST_CLIENT is this test creating sessions, and nothing else.
 */
const TEST_CLIENT = 'reliability-test';
const ALLOWED_MANAGERS = new Set([FIELD_MANAGER, 'kube-scheduler', 'kwok', 'kube-controller-manager', TEST_CLIENT]);

async function createSession(name: string, challenge: string, user: string): Promise<void> {
  await cluster.kube.custom.createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace: cluster.namespace,
    plural: SESSION_PLURAL,
    body: sessionBody(name, challenge, user, inHour()),
    fieldManager: TEST_CLIENT,
  });
}

beforeAll(async () => {
  await installSamples(cluster.kube, cluster.namespace);
});

afterAll(async () => {
  await Promise.all(replicas.map((r) => r.kill()));
  await proxy?.close();
});

function createdLines(r: ApiEngine) {
  return r.logLines().filter((l) => typeof l.msg === 'string' && l.msg.startsWith('Created '));
}

describe('leader failover between two replicas', () => {
  it('hands over within the lease duration when the leader is killed, with one field manager and no concurrent writers', async () => {
    // Both replicas talk to the apiserver through a proxy that answers Secret lists 1.5 s late,
    // as a large namespace would: a new leader must still wait for all its caches.
    const secretsList = new RegExp(`^/api/v1/namespaces/${cluster.namespace}/secrets\\?`);
    proxy = await apiProxy(cluster.kubeconfig, (method, path) => (method === 'GET' && secretsList.test(path) && !path.includes('watch=true') ? 1_500 : 0));
    const common = { KUBECONFIG: proxy.kubeconfig, CTF_LEADER_ELECTION: 'true', CTF_LEASE_SECONDS: String(LEASE_SECONDS), CTF_LEASE_NAME: LEASE };
    for (const id of ['replica-a', 'replica-b']) {
      const r = await ApiEngine.create(cluster, { ...common, CTF_IDENTITY: id });
      replicas.push(r);
    }
    await Promise.all(replicas.map((r) => r.start()));
    const lease = async () => (await cluster.kube.coord.readNamespacedLease({ name: LEASE, namespace: cluster.namespace }).catch(() => undefined))?.spec;
    const first = await waitUntil('a leader', async () => (await lease())?.holderIdentity || undefined, 30_000);
    const leader = replicas.find((_, i) => ['replica-a', 'replica-b'][i] === first);
    const follower = replicas.find((r) => r !== leader);
    if (!leader || !follower) throw new Error(`unexpected holder ${first}`);

    const early = Array.from({ length: 10 }, (_, i) => `fo-early-${i}`);
    await Promise.all(early.map((n, i) => createSession(n, i % 2 ? 'pwn-echo' : 'web-notes', `fo-user-${i}`)));
    // Kill the leader in the middle of its work: some sessions have children, not all are Running.
    await waitUntil('the leader at work', async () => {
      const pods = (await managedObjects(cluster.kube, cluster.namespace)).pods.length;
      const running = (await listSessions(cluster.kube, cluster.namespace)).filter((s) => phaseOf(s) === 'Running').length;
      return pods >= 3 && running < early.length;
    }, 60_000, 20);
    expect(createdLines(follower), 'the follower writes nothing while it follows').toEqual([]);

    const killedAt = Date.now();
    await leader.kill('SIGKILL');
    // What the dead leader had already written: the new leader has nothing to create there.
    const existing = new Set(
      (await managedObjects(cluster.kube, cluster.namespace)).all.filter((o) => o.metadata?.labels?.[LABEL_SESSION]).map((o) => `${o.metadata?.labels?.[LABEL_SESSION] ?? ''}/${o.kind ?? ''}`),
    );
    expect(existing.size).toBeGreaterThan(0);
    // Work arrives while nobody leads.
    const late = Array.from({ length: 10 }, (_, i) => `fo-late-${i}`);
    const creating = Promise.all(late.map((n, i) => createSession(n, i % 2 ? 'sql-two-tier' : 'web-notes', `fo-late-user-${i}`)));
    const next = await waitUntil('a new leader', async () => {
      const h = (await lease())?.holderIdentity;
      return h && h !== first ? h : undefined;
    }, 20_000, 25);
    const takeoverMs = Date.now() - killedAt;
    await creating;
    await waitUntil('all 20 sessions Running', async () => {
      const sessions = await listSessions(cluster.kube, cluster.namespace);
      return [...early, ...late].every((n) => sessions.some((s) => s.metadata.name === n && phaseOf(s) === 'Running'));
    }, 60_000, 250);
    const convergedMs = Date.now() - killedAt;

    expect(next).not.toBe(first);
    expect(takeoverMs, 'takeover within lease + retry periods').toBeLessThan(LEASE_SECONDS * 1000 + 2 * RETRY_MS + 1_000);

    // The follower wrote only after it became leader.
    const followerLines = follower.logLines();
    const becameLeader = followerLines.find((l) => l.msg === 'Became leader');
    expect(becameLeader).toBeDefined();
    const followerWrites = createdLines(follower);
    expect(followerWrites.length).toBeGreaterThan(0);
    expect(Math.min(...followerWrites.map((l) => Number(l.time)))).toBeGreaterThanOrEqual(Number(becameLeader?.time));
    // The dead leader wrote only before it died (it cannot do otherwise; this guards the clock of the check).
    expect(Math.max(0, ...createdLines(leader).map((l) => Number(l.time)))).toBeLessThanOrEqual(killedAt);

    // No object written by both: the new leader must not rewrite what the old one left. A
    // "Created" for an object that already existed means it reconciled before its child caches
    // had synced (soft, so the checks below still run).
    const rewritten = followerWrites.map((l) => `${String(l.session)}/${String(l.kind)}`).filter((k) => existing.has(k));
    const timeline = () =>
      ([[first, leader], [next, follower]] as const)
        .flatMap(([who, r]) =>
          r
            .logLines()
            .filter((l) => ['Became leader', 'Stopped leading', 'Controller started'].includes(String(l.msg)) || rewritten.includes(`${String(l.session)}/${String(l.kind)}`))
            .map((l) => ({ t: Number(l.time) - killedAt, line: `${who}: ${String(l.msg)} ${typeof l.session === 'string' ? l.session : ''}` })),
        )
        .sort((a, b) => a.t - b.t)
        .map((e) => `${e.t} ms ${e.line}`)
        .join('\n');
    expect.soft(rewritten, `the new leader re-applied objects that existed when it took over; log timeline relative to the kill:\n${timeline()}`).toEqual([]);

    // One field manager for everything the engine writes; the others are the cluster's own.
    const { all } = await managedObjects(cluster.kube, cluster.namespace);
    const sessions = await listSessions(cluster.kube, cluster.namespace);
    const managers = new Map<string, Set<string>>();
    const note = (what: string, entries: V1ManagedFieldsEntry[] | undefined) => {
      for (const e of entries ?? []) {
        const m = `${e.manager ?? '?'}${e.subresource ? `(${e.subresource})` : ''}:${e.operation ?? '?'}`;
        if (!managers.has(m)) managers.set(m, new Set());
        managers.get(m)?.add(what);
      }
    };
    for (const o of all) note(`${o.kind}/${o.metadata?.name}`, (o.metadata as { managedFields?: V1ManagedFieldsEntry[] }).managedFields);
    for (const s of sessions) note(`ChallengeSession/${s.metadata.name}`, (s.metadata as { managedFields?: V1ManagedFieldsEntry[] }).managedFields);
    const unexpected = [...managers.keys()].filter((m) => !ALLOWED_MANAGERS.has(m.split(/[(:]/)[0] ?? ''));
    // The test client only ever created sessions (spec and metadata), never touched a child or a status.
    expect([...managers].filter(([m]) => m.startsWith(TEST_CLIENT)).map(([m, objs]) => [m, [...objs].every((o) => o.startsWith('ChallengeSession/'))])).toEqual([[`${TEST_CLIENT}:Update`, true]]);
    expect(unexpected, `managers: ${[...managers.keys()].join(', ')}`).toEqual([]);
    expect([...managers.keys()].some((m) => m.startsWith(`${FIELD_MANAGER}:Apply`))).toBe(true);
    expect([...managers.keys()].some((m) => m.startsWith(`${FIELD_MANAGER}(status)`))).toBe(true);

    // Neither replica ever hit an apply or update conflict.
    expect(conflictLines(leader.logLines())).toEqual([]);
    expect(conflictLines(followerLines)).toEqual([]);
    const leaks = await leakReport(cluster.kube, cluster.namespace);
    expect(leaks.orphans).toEqual([]);
    expect(leaks.duplicatePods).toEqual([]);
    expect(leaks.incomplete).toEqual([]);

    console.log(
      `[reliability] failover: ${first} killed, ${next} leading after ${takeoverMs} ms (lease ${LEASE_SECONDS} s, retry ${RETRY_MS} ms); ` +
        `all 20 sessions Running ${convergedMs} ms after the kill; ${existing.size} children existed at the kill; ${createdLines(leader).length} creations by the old leader, ${followerWrites.length} by the new one (${rewritten.length} of them rewrites); managers ${[...managers.keys()].sort().join(', ')}`,
    );
  });
});
