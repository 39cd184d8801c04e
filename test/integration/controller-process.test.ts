import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LABEL_MANAGED_BY, LABEL_SESSION, MANAGED_BY } from '../../src/api/group.js';
import { useCluster, waitUntil } from '../support/kube.js';
import { createSession, EngineProcess, engineEnv, getSession, installSamples, listSessions } from '../support/engine.js';

/** The engine as real processes: killed with SIGKILL, restarted, and run as two replicas. */
const cluster = useCluster(import.meta.filename);
const procs: EngineProcess[] = [];
const inHour = () => new Date(Date.now() + 3600_000);

function engine(extra: Record<string, string> = {}): EngineProcess {
  const p = new EngineProcess(engineEnv(cluster.kubeconfig, cluster.namespace, extra));
  procs.push(p);
  p.start();
  return p;
}

/** The process's exit code, once it has exited. */
function exitCode(p: EngineProcess): Promise<number | null> {
  const child = p.child;
  if (!child) throw new Error('the engine was not started');
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

afterEach(async () => {
  await Promise.all(procs.splice(0).map((p) => p.kill()));
});

async function children() {
  const ns = cluster.namespace;
  const sel = { namespace: ns, labelSelector: `${LABEL_MANAGED_BY}=${MANAGED_BY},${LABEL_SESSION}` };
  const [pods, svcs, secrets, nps] = await Promise.all([
    cluster.kube.core.listNamespacedPod(sel),
    cluster.kube.core.listNamespacedService(sel),
    cluster.kube.core.listNamespacedSecret(sel),
    cluster.kube.net.listNamespacedNetworkPolicy(sel),
  ]);
  return { pods: pods.items, all: [...pods.items, ...svcs.items, ...secrets.items, ...nps.items] };
}

describe('the engine process', () => {
  it('converges after being killed with SIGKILL in the middle of a burst, with no duplicates or orphans', async () => {
    await installSamples(cluster.kube, cluster.namespace);
    const names = Array.from({ length: 40 }, (_, i) => `burst-${i}`);
    let p = engine();
    const creating = (async () => {
      for (let i = 0; i < names.length; i += 8) {
        await Promise.all(names.slice(i, i + 8).map((n, j) => createSession(cluster.kube, cluster.namespace, n, 'web-notes', `burst-user-${i + j}`, inHour())));
      }
    })();
    for (const delay of [700, 400, 600]) {
      await new Promise((r) => setTimeout(r, delay));
      await p.kill('SIGKILL');
      p = engine();
    }
    await creating;
    await waitUntil('every burst session Running', async () => {
      const sessions = await listSessions(cluster.kube, cluster.namespace);
      return names.every((n) => sessions.find((s) => s.metadata.name === n)?.status?.phase === 'Running');
    }, 60_000, 250);

    const sessions = await listSessions(cluster.kube, cluster.namespace);
    const uids = new Set(sessions.map((s) => s.metadata.uid));
    const { pods, all } = await children();
    const podsPerSession = new Map<string, number>();
    for (const pod of pods) {
      const s = pod.metadata?.labels?.[LABEL_SESSION] ?? '';
      podsPerSession.set(s, (podsPerSession.get(s) ?? 0) + 1);
    }
    for (const n of names) expect(podsPerSession.get(n), `pods of ${n}`).toBe(1);
    const orphans = all.filter((o) => !o.metadata?.ownerReferences?.some((r) => r.controller && uids.has(r.uid)));
    expect(orphans.map((o) => o.metadata?.name)).toEqual([]);
    expect(all).toHaveLength(names.length * 4);
  });

  it('deletes at start a session that expired while the engine was down', async () => {
    await createSession(cluster.kube, cluster.namespace, 'expired-offline', 'web-notes', 'offline-user', new Date(Date.now() - 5_000));
    const started = Date.now();
    engine();
    await waitUntil('expired session deleted', async () => (await getSession(cluster.kube, cluster.namespace, 'expired-offline')) === undefined, 20_000, 50);
    // process start (tsx compile, cache sync) dominates; the deletion itself follows the first list
    expect(Date.now() - started).toBeLessThan(15_000);
  });

  it('runs two replicas with one leader; the other takes over within the lease duration when it dies', async () => {
    const leaseSeconds = 3;
    const common = { CTF_LEADER_ELECTION: 'true', CTF_LEASE_SECONDS: String(leaseSeconds), CTF_LEASE_NAME: 'engine-test' };
    const a = engine({ ...common, CTF_IDENTITY: 'replica-a' });
    const b = engine({ ...common, CTF_IDENTITY: 'replica-b' });
    const holder = async () => (await cluster.kube.coord.readNamespacedLease({ name: 'engine-test', namespace: cluster.namespace }).catch(() => undefined))?.spec?.holderIdentity;
    const first = await waitUntil('a leader', async () => (await holder()) || undefined, 30_000);
    expect(['replica-a', 'replica-b']).toContain(first);
    const [leader, follower] = first === 'replica-a' ? [a, b] : [b, a];

    await createSession(cluster.kube, cluster.namespace, 'lead-1', 'web-notes', 'lead-user-1', inHour());
    await waitUntil('lead-1 Running', async () => (await getSession(cluster.kube, cluster.namespace, 'lead-1'))?.status?.phase === 'Running', 30_000);
    const wrote = (p: EngineProcess) => p.logLines().filter((l) => typeof l.msg === 'string' && l.msg.startsWith('Created '));
    expect(wrote(leader).length).toBeGreaterThan(0);
    expect(wrote(follower)).toEqual([]);

    const killedAt = Date.now();
    await leader.kill('SIGKILL');
    const next = await waitUntil('a new leader', async () => {
      const h = await holder();
      return h && h !== first ? h : undefined;
    }, 20_000, 50);
    const takeoverMs = Date.now() - killedAt;
    expect(next).not.toBe(first);
    expect(takeoverMs).toBeLessThan(leaseSeconds * 1000 * 2);
    await createSession(cluster.kube, cluster.namespace, 'lead-2', 'web-notes', 'lead-user-2', inHour());
    await waitUntil('lead-2 Running', async () => (await getSession(cluster.kube, cluster.namespace, 'lead-2'))?.status?.phase === 'Running', 30_000);
    expect(wrote(follower).length).toBeGreaterThan(0);
  });

  it('refuses to start while the flag-key Secret holds the shipped placeholder, saying so in its termination message', async () => {
    const placeholder = 'CHANGE-ME-flag-key-generate-with-openssl-rand-hex-32';
    const name = 'challenge-engine-flag-key';
    await cluster.kube.core.createNamespacedSecret({ namespace: cluster.namespace, body: { metadata: { name }, stringData: { 'flag-key': placeholder } } });
    const dir = mkdtempSync(join(tmpdir(), 'challenge-engine-termination-'));
    try {
      const log = join(dir, 'termination-log');
      writeFileSync(log, '');
      const env = { CTF_FLAG_SECRET: name, CTF_ENGINE_NAMESPACE: cluster.namespace, CTF_TERMINATION_LOG: log };
      const refused = engine(env);
      expect(await exitCode(refused)).toBe(1);
      const message = readFileSync(log, 'utf8');
      expect(message).toBe(`challenge-engine: Secret ${cluster.namespace}/${name} key "flag-key" holds a placeholder (it starts with CHANGE-ME): replace it with the output of openssl rand -hex 32\n`);
      expect(refused.output).toContain(message);
      expect(refused.output).not.toContain(placeholder);

      // The same engine starts once the value is replaced.
      await cluster.kube.core.replaceNamespacedSecret({ name, namespace: cluster.namespace, body: { metadata: { name }, stringData: { 'flag-key': randomBytes(32).toString('hex') } } });
      const started = engine(env);
      await waitUntil('the engine synced its caches', () => started.logLines().some((l) => l.msg === 'Caches synced'), 20_000);
      expect(started.child?.exitCode).toBeNull();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
