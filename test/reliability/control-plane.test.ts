import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createSession, installSamples, listSessions } from '../support/engine.js';
import { freeze, localControlPlane, outage, type ClusterState } from '../support/faults.js';
import { useCluster, waitUntil } from '../support/kube.js';
import { LABEL_SESSION } from '../../src/api/group.js';
import { FAKE_NODE } from '../../scripts/lib/control-plane.js';
import { ApiEngine, conflictLines, leakReport, managedObjects, phaseOf, readyReason } from './helpers.js';

/**
 * Faults in the control plane under a running engine process: kube-apiserver stopped for 10 s,
 * etcd stopped for 5 s, and the apiserver frozen (SIGSTOP) so that watches go silent. The engine
 * must recover by itself, in the same process, and finish all work.
 */
const cluster = useCluster(import.meta.filename);
const inHour = () => new Date(Date.now() + 3600_000);
const LEASE = 'reliability-control-plane';
let state: ClusterState;
let engine: ApiEngine | undefined;

beforeAll(async () => {
  // Precondition: these tests stop and freeze processes of the control plane this run started.
  state = await localControlPlane(cluster.kubeconfig);
  await installSamples(cluster.kube, cluster.namespace);
});

afterEach(async () => {
  await engine?.kill();
  engine = undefined;
});

afterAll(async () => {
  await engine?.kill();
});

async function createMany(prefix: string, n: number): Promise<string[]> {
  const names = Array.from({ length: n }, (_, i) => `${prefix}-${i}`);
  const challenges = ['web-notes', 'pwn-echo', 'sql-two-tier'];
  await Promise.all(names.map((name, i) => createSession(cluster.kube, cluster.namespace, name, challenges[i % challenges.length] ?? 'web-notes', `${prefix}-user-${i}`, inHour())));
  return names;
}

async function allRunning(names: string[], timeoutMs: number): Promise<number> {
  const t0 = Date.now();
  await waitUntil(`${names.length} sessions Running`, async () => {
    const sessions = await listSessions(cluster.kube, cluster.namespace);
    return names.every((n) => sessions.some((s) => s.metadata.name === n && phaseOf(s) === 'Running'));
  }, timeoutMs, 250).catch(async (err: unknown) => {
    throw new Error(`${err instanceof Error ? err.message : String(err)}\n${await stuckReport(names)}`);
  });
  return Date.now() - t0;
}

/** Where the sessions that are not Running stand, their Pods, and the engine's last log lines. */
async function stuckReport(names: string[]): Promise<string> {
  const sessions = await listSessions(cluster.kube, cluster.namespace);
  const { pods } = await managedObjects(cluster.kube, cluster.namespace);
  const stuck = names
    .map((n) => sessions.find((s) => s.metadata.name === n) ?? n)
    .filter((s) => typeof s === 'string' || phaseOf(s) !== 'Running')
    .map((s) => {
      if (typeof s === 'string') return `${s}: missing`;
      const pod = pods.find((p) => p.metadata?.labels?.[LABEL_SESSION] === s.metadata.name);
      const podState = pod ? `pod node=${pod.spec?.nodeName ?? '-'} phase=${pod.status?.phase ?? '-'}` : 'no pod';
      return `${s.metadata.name}: ${phaseOf(s)} ${readyReason(s) ?? ''} observedGeneration=${s.status?.observedGeneration ?? '-'}; ${podState}`;
    });
  const tail = (engine?.logLines() ?? []).slice(-25).map((l) => JSON.stringify(l).slice(0, 300));
  return `not Running:\n${stuck.join('\n')}\nengine log tail:\n${tail.join('\n')}`;
}

/** Waits until some of the sessions are being worked on and not all are done: the moment to pull the plug. */
async function midProvisioning(names: string[]): Promise<Record<string, number>> {
  return waitUntil('provisioning under way', async () => {
    const p = await phases(names);
    return (p.Provisioning ?? 0) + (p.Running ?? 0) > 0 && (p.Running ?? 0) < names.length ? p : undefined;
  }, 30_000, 20);
}

async function phases(names: string[]): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const s of await listSessions(cluster.kube, cluster.namespace)) if (names.includes(s.metadata.name)) counts[phaseOf(s)] = (counts[phaseOf(s)] ?? 0) + 1;
  return counts;
}

const holder = async () => (await cluster.kube.coord.readNamespacedLease({ name: LEASE, namespace: cluster.namespace }).catch(() => undefined))?.spec;

/** Starts an engine process with leader election (5 s lease) and waits until it leads. */
async function startLeadingEngine(identity: string): Promise<ApiEngine> {
  const e = await ApiEngine.create(cluster, { CTF_LEADER_ELECTION: 'true', CTF_LEASE_SECONDS: '5', CTF_LEASE_NAME: LEASE, CTF_IDENTITY: identity });
  engine = e;
  await e.start();
  await waitUntil('the engine leads', async () => (await holder())?.holderIdentity === identity, 30_000);
  return e;
}

describe('control-plane outages under a running engine', () => {
  it('recovers from a 10 s kube-apiserver outage during provisioning in the same process: relists, re-leads, finishes all work', async () => {
    engine = await startLeadingEngine('engine-outage');
    const pid = engine.pid;

    const before = await createMany('apiout', 24);
    const atStop = await midProvisioning(before);
    const out = await outage(state, 'kube-apiserver', 10_000);
    const upAt = Date.now();
    const after = await createMany('apiafter', 6);
    const recoveryMs = await allRunning([...before, ...after], 120_000);

    // The work was in flight when the apiserver went away.
    expect(atStop.Running ?? 0, `phases when stopped: ${JSON.stringify(atStop)}`).toBeLessThan(before.length);
    // The engine's informers retry with a backoff capped at 5 s; the scheduler's (client-go) back
    // off to 30 s, and Pods wait unscheduled until it relists: a minute covers both.
    expect(recoveryMs).toBeLessThan(60_000);
    expect(out.newPid).not.toBe(out.oldPid);
    // Same process, still leading, lease renewed after the outage.
    expect(engine.pid).toBe(pid);
    expect(engine.proc.child?.exitCode).toBeNull();
    const lease = await holder();
    expect(lease?.holderIdentity).toBe('engine-outage');
    expect(new Date(String(lease?.renewTime)).getTime()).toBeGreaterThan(upAt);
    const lines = engine.logLines();
    expect(lines.some((l) => l.msg === 'Watch failed; retrying'), 'the informers saw the outage').toBe(true);
    expect(conflictLines(lines)).toEqual([]);
    const leaks = await leakReport(cluster.kube, cluster.namespace);
    expect(leaks.orphans).toEqual([]);
    expect(leaks.duplicatePods).toEqual([]);
    expect(leaks.incomplete).toEqual([]);
    const leadership = lines.filter((l) => l.msg === 'Became leader' || l.msg === 'Stopped leading').map((l) => String(l.msg));
    console.log(
      `[reliability] apiserver outage: phases at stop ${JSON.stringify(atStop)}; stop ${out.stopMs} ms, down 10 s, ready ${out.readyMs} ms after restart; ` +
        `all ${before.length + after.length} sessions Running ${recoveryMs} ms after the apiserver was ready; leadership ${leadership.join(' -> ')}; same pid ${pid}`,
    );
  });

  it('recovers from a 5 s etcd outage: the apiserver reconnects and the engine finishes all work in the same process', async () => {
    engine = await startLeadingEngine('engine-etcd');
    const pid = engine.pid;

    const before = await createMany('etcdout', 15);
    const atStop = await midProvisioning(before);
    const out = await outage(state, 'etcd', 5_000);
    // kwok (the stand-in for the kubelets) sometimes misses a pod bound around an etcd restart
    // and never relists: the pod stays Pending on its node, and its session rightly Provisioning.
    // A kubelet relists on reconnect; restarting kwok does the same, so only the engine is tested.
    // A restarted kubelet holds its node's Lease under the same name at once; a new kwok has a new
    // identity and would wait 40 s for the old Lease to expire before it manages the node's pods,
    // so the old Lease goes while kwok is down.
    await outage(state, 'kwok', 0, async () => {
      await cluster.kube.coord.deleteNamespacedLease({ name: FAKE_NODE, namespace: 'kube-node-lease' }).catch(() => undefined);
    });
    const after = await createMany('etcdafter', 5);
    const recoveryMs = await allRunning([...before, ...after], 120_000);

    expect(atStop.Running ?? 0, `phases when stopped: ${JSON.stringify(atStop)}`).toBeLessThan(before.length);
    expect(recoveryMs).toBeLessThan(60_000);
    expect(engine.pid).toBe(pid);
    expect(engine.proc.child?.exitCode).toBeNull();
    expect((await holder())?.holderIdentity).toBe('engine-etcd');
    // Nothing written before the outage was lost.
    const names = new Set((await listSessions(cluster.kube, cluster.namespace)).map((s) => s.metadata.name));
    expect([...before, ...after].filter((n) => !names.has(n))).toEqual([]);
    expect(conflictLines(engine.logLines())).toEqual([]);
    const leaks = await leakReport(cluster.kube, cluster.namespace);
    expect(leaks.orphans).toEqual([]);
    expect(leaks.duplicatePods).toEqual([]);
    // Pod events the apiserver lost around the restart, found and repaired by the cache audit.
    const lines = engine.logLines();
    const waitedFrom = Date.now() - recoveryMs;
    const at = (l: Record<string, unknown>) => `${((Number(l.time) - waitedFrom) / 1000).toFixed(1)}s`;
    const timeline = lines
      .filter((l) => l.msg === 'Became leader' || l.msg === 'Stopped leading' || l.msg === 'Controller started' || l.msg === 'Watch failed; retrying')
      .map((l) => `${String(l.msg === 'Watch failed; retrying' ? `watch ${String(l.informer)} failed` : l.msg)} ${at(l)}`);
    const failures = lines.filter((l) => l.msg === 'Reconcile failed; will retry');
    const repaired = lines.filter((l) => l.msg === 'Cache missed an update the apiserver has; relisting').flatMap((l) => l.objects as string[]);
    console.log(
      `[reliability] etcd outage: phases at stop ${JSON.stringify(atStop)}; stop ${out.stopMs} ms, down 5 s, apiserver ready ${out.readyMs} ms after etcd restart; ` +
        `all ${before.length + after.length} sessions Running ${recoveryMs} ms later; lost Pod events repaired: ${repaired.length ? repaired.join(', ') : 'none'}; same pid ${pid}; ` +
        `reconcile failures ${failures.length} (last ${failures.length ? at(failures[failures.length - 1] ?? {}) : '-'}); timeline relative to the start of the wait: ${timeline.join(', ')}`,
    );
  });

  it('restarts watches that go silent while the apiserver is frozen, and reconciles sessions created afterwards', async () => {
    engine = await ApiEngine.create(cluster, { CTF_WATCH_STALL_SECONDS: '3', CTF_WATCH_TIMEOUT_SECONDS: '3600' });
    await engine.start();
    const pid = engine.pid;
    const warm = await createMany('prefreeze', 3);
    await allRunning(warm, 60_000);

    const frozenAt = Date.now();
    await freeze(state, 'kube-apiserver', 6_000);
    const thawedAt = Date.now();
    const after = await createMany('postfreeze', 8);
    const recoveryMs = await allRunning(after, 90_000);

    const silent = engine.logLines().filter((l) => l.msg === 'Watch went silent; restarting it' && Number(l.time) >= frozenAt && Number(l.time) <= thawedAt + 1_000);
    expect(silent.length, 'watchdog restarts while frozen').toBeGreaterThan(0);
    expect(Math.min(...silent.map((l) => Number(l.quietMs)))).toBeGreaterThanOrEqual(3_000);
    expect(engine.pid).toBe(pid);
    console.log(
      `[reliability] frozen apiserver: ${thawedAt - frozenAt} ms SIGSTOP; ${silent.length} silent-watch restarts during the freeze ` +
        `(informers ${[...new Set(silent.map((l) => String(l.informer)))].join(', ')}); ${after.length} new sessions Running ${recoveryMs} ms after SIGCONT`,
    );
  });
});
