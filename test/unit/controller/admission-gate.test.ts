import { describe, expect, it } from 'vitest';
import { reconcileSession, type ReconcileContext } from '../../../src/controller/reconcile-session.js';
import { AdmissionTracker } from '../../../src/controller/admission-tracker.js';
import { createRecorder } from '../../../src/kube/recorder.js';
import { createMetrics } from '../../../src/metrics.js';
import { DEFAULT_POD_DEFAULTS } from '../../../src/reconcile/pod.js';
import { DEFAULT_NETWORK_OPTIONS } from '../../../src/reconcile/network-policy.js';
import { ANNOTATION_EXPIRES_AT, ANNOTATION_REQUESTED_AT } from '../../../src/api/group.js';
import type { ChallengeSession } from '../../../src/api/session.js';
import { apiError, memoryCaches, memoryChildren, RecordingWriter, silentLog } from '../../support/memory.js';
import { NAMESPACE, session, webChallenge } from '../reconcile/fixtures.js';

/**
 * The queue's step of the reconcile against in-memory caches and a recording writer: a session
 * over the cap gets a Queued status and no children; once capacity frees it is admitted with its
 * lifetime starting then; a wait past the timeout fails it; without caps nothing extra is written.
 */

const REQUESTED = '2030-01-01T10:00:00.250Z';
const EXPIRES = '2030-01-01T11:00:00Z';

function harness(opts: { maxInstances?: number; timeoutMs?: number; now?: string } = {}) {
  const mem = memoryCaches(NAMESPACE);
  const children = memoryChildren(NAMESPACE);
  const writer = new RecordingWriter();
  const metrics = createMetrics();
  const tracker = new AdmissionTracker({ caches: mem.caches, maxInstances: opts.maxInstances });
  const woken: string[] = [];
  tracker.start({ ...children, httproutes: undefined, tlsroutes: undefined }, (n) => woken.push(n));
  let now = new Date(opts.now ?? '2030-01-01T10:05:00Z');
  const ctx: ReconcileContext = {
    caches: mem.caches,
    children: { ...children, httproutes: undefined, tlsroutes: undefined },
    writer,
    events: createRecorder(writer, silentLog),
    log: silentLog,
    metrics,
    flagKey: Buffer.from('0123456789abcdef0123456789abcdef'),
    readStaticFlag: () => Promise.resolve(undefined),
    pod: DEFAULT_POD_DEFAULTS,
    network: DEFAULT_NETWORK_OPTIONS,
    clusterDomain: 'cluster.local',
    public: undefined,
    gateway: undefined,
    queue: { tracker, timeoutMs: opts.timeoutMs ?? 600_000 },
    now: () => now,
  };
  mem.challenges.put(webChallenge());
  const put = (name: string, status?: Record<string, unknown>, requestedAt = REQUESTED) => {
    const s = session({ name, user: `player-${name}`, expiresAt: EXPIRES, status });
    s.metadata.annotations = { ...s.metadata.annotations, [ANNOTATION_REQUESTED_AT]: requestedAt };
    s.metadata.uid = `uid-${name}`;
    s.metadata.resourceVersion = '7';
    return mem.sessions.put(s) as unknown as ChallengeSession;
  };
  const writes = () => writer.objectWrites().map((w) => `${w.verb} ${w.target}`);
  return { mem, writer, metrics, tracker, woken, ctx, put, writes, setNow: (iso: string) => (now = new Date(iso)) };
}

const body = (h: ReturnType<typeof harness>, verb: string) => h.writer.objectWrites().find((w) => w.verb === verb)?.body as Record<string, unknown> | undefined;
const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('the admission gate of a reconcile', () => {
  it('writes admittedAt in the one status write when nothing is capped', async () => {
    const h = harness();
    h.put('s-new');
    await reconcileSession(h.ctx, 's-new');
    expect(h.writes().filter((w) => w.startsWith('patch'))).toEqual(['patch-status ChallengeSession s-new']);
    expect(body(h, 'patch-status')).toMatchObject({ phase: 'Provisioning', admittedAt: '2030-01-01T10:05:00.000Z' });
    expect(h.writes()).toContain('apply Pod s-new');
  });

  it('keeps the admission time when the next pass runs before the cache shows it', async () => {
    const h = harness();
    const s = h.put('s-new');
    await reconcileSession(h.ctx, 's-new');
    const first = body(h, 'patch-status')?.admittedAt;
    // Its children are cached, its status not yet: the second pass must not move admittedAt.
    const owner = [{ apiVersion: 'x', kind: 'ChallengeSession', name: 's-new', uid: s.metadata.uid!, controller: true }];
    (h.ctx.children.pods as unknown as { put: (o: unknown) => void }).put({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 's-new', namespace: NAMESPACE, ownerReferences: owner } });
    h.writer.writes.length = 0;
    h.setNow('2030-01-01T10:05:03Z');
    await reconcileSession(h.ctx, 's-new');
    expect(first).toBe('2030-01-01T10:05:00.000Z');
    expect(body(h, 'patch-status')?.admittedAt).toBe(first);
  });

  it('queues a session over the engine cap: a Queued status, no children, no runtime snapshot', async () => {
    const h = harness({ maxInstances: 1 });
    h.put('s-run', { phase: 'Running', admittedAt: '2030-01-01T09:00:00.000Z' });
    h.put('s-new');
    const out = await reconcileSession(h.ctx, 's-new');
    expect(h.writes()).toEqual(['patch-status ChallengeSession s-new']);
    const status = body(h, 'patch-status')!;
    expect(status.phase).toBe('Queued');
    expect(status.message).toContain('CTF_MAX_INSTANCES');
    expect(status.provisionedFrom).toBeUndefined();
    expect(status.admittedAt).toBeUndefined();
    expect((status.conditions as { type: string; reason: string }[]).find((c) => c.type === 'Ready')?.reason).toBe('EngineCapacity');
    // Looked at again when its wait would time out: 10 min after the request.
    expect(out.requeueAfterMs).toBe(Date.parse('2030-01-01T10:10:00.250Z') - Date.parse('2030-01-01T10:05:00Z'));
  });

  it('is not deleted by an expiry passed while it waited', async () => {
    const h = harness({ maxInstances: 1, now: '2030-01-01T11:05:00Z', timeoutMs: 7_200_000 });
    h.put('s-run', { phase: 'Running', admittedAt: '2030-01-01T09:00:00.000Z' });
    h.put('s-new', { phase: 'Queued' });
    await reconcileSession(h.ctx, 's-new');
    expect(h.writes().some((w) => w.startsWith('delete'))).toBe(false);
  });

  it('admits the head of the queue when an instance goes, starting its lifetime then', async () => {
    const h = harness({ maxInstances: 1, timeoutMs: 3_600_000 });
    const run = h.put('s-run', { phase: 'Running', admittedAt: '2030-01-01T09:00:00.000Z' });
    h.put('s-new', { phase: 'Queued', conditions: [{ type: 'Ready', status: 'False', reason: 'EngineCapacity', message: 'queued', lastTransitionTime: '2030-01-01T10:00:00Z' }] });
    h.put('s-later', { phase: 'Queued', conditions: [{ type: 'Ready', status: 'False', reason: 'EngineCapacity', message: 'queued', lastTransitionTime: '2030-01-01T10:00:00Z' }] }, '2030-01-01T10:00:01.000Z');
    h.mem.sessions.remove(run);
    await wait(60);
    // Only the head is woken: the one behind it still waits for the same reason.
    expect(h.woken).toEqual(['s-new']);
    h.setNow('2030-01-01T10:20:00Z');
    await reconcileSession(h.ctx, 's-new');
    expect(h.writes().slice(0, 2)).toEqual(['patch-metadata ChallengeSession s-new', 'apply Secret s-new-flag']);
    const restamp = h.writer.objectWrites()[0]!;
    expect(restamp).toMatchObject({ resourceVersion: '7', body: { metadata: { annotations: { [ANNOTATION_EXPIRES_AT]: '2030-01-01T11:20:00Z' } } } });
    expect(body(h, 'patch-status')).toMatchObject({ phase: 'Provisioning', admittedAt: '2030-01-01T10:20:00.000Z', expiresAt: '2030-01-01T11:20:00Z' });
    // The next one is still over the cap: the admission counts before its status is cached.
    h.writer.writes.length = 0;
    await reconcileSession(h.ctx, 's-later');
    expect(h.writes()).toEqual(['patch-status ChallengeSession s-later']);
    expect(body(h, 'patch-status')?.message).toMatch(/^queued: /);
    expect(body(h, 'patch-status')?.admittedAt).toBeUndefined();
    const metrics = await h.metrics.registry.getSingleMetricAsString('challenge_engine_queue_wait_seconds');
    expect(metrics).toMatch(/challenge_engine_queue_wait_seconds_count 1/);
  });

  it('admits a fresh spawn only once earlier ones had time to reach the cache, where capacity is capped', async () => {
    const h = harness({ maxInstances: 1, now: '2030-01-01T10:00:00.350Z' });
    h.put('s-new');
    const out = await reconcileSession(h.ctx, 's-new');
    expect(h.writer.objectWrites()).toEqual([]);
    expect(out.requeueAfterMs).toBe(150);
    // An earlier request shows up meanwhile: it goes first.
    h.put('s-earlier', undefined, '2030-01-01T10:00:00.100Z');
    h.setNow('2030-01-01T10:00:00.600Z');
    await reconcileSession(h.ctx, 's-earlier');
    expect(body(h, 'patch-status')).toMatchObject({ admittedAt: '2030-01-01T10:00:00.600Z' });
    h.writer.writes.length = 0;
    await reconcileSession(h.ctx, 's-new');
    expect(body(h, 'patch-status')).toMatchObject({ phase: 'Queued' });
    // Uncapped, nothing waits.
    const free = harness({ now: '2030-01-01T10:00:00.300Z' });
    free.put('s-new');
    await reconcileSession(free.ctx, 's-new');
    expect(body(free, 'patch-status')).toMatchObject({ admittedAt: '2030-01-01T10:00:00.300Z' });
  });

  it('widens the settle time to the slowest recent request-to-cache time, within bounds', () => {
    const h = harness({ maxInstances: 1 });
    expect(h.tracker.settleMs()).toBe(250);
    h.put('s-slow', undefined, new Date(Date.now() - 1_200).toISOString());
    expect(h.tracker.settleMs()).toBeGreaterThanOrEqual(1_300);
    expect(h.tracker.settleMs()).toBeLessThan(1_400);
    // A relisted old session (or a clock far off) is no delivery time; the wait never passes 3 s.
    h.put('s-old', undefined, new Date(Date.now() - 60_000).toISOString());
    h.put('s-slower', undefined, new Date(Date.now() - 5_000).toISOString());
    expect(h.tracker.settleMs()).toBe(3_000);
  });

  it('retries an admission whose expiry write lost to a concurrent change, creating nothing', async () => {
    const h = harness({ maxInstances: 1 });
    h.put('s-new', { phase: 'Queued' });
    h.writer.fail = (w) => (w.verb === 'patch-metadata' ? apiError(409, 'Conflict') : undefined);
    const out = await reconcileSession(h.ctx, 's-new');
    expect(out.requeueAfterMs).toBe(100);
    expect(h.writer.objectWrites()).toEqual([]);
  });

  it('fails a session that waited past CTF_QUEUE_TIMEOUT, which then holds no place', async () => {
    const h = harness({ maxInstances: 1, timeoutMs: 60_000 });
    h.put('s-run', { phase: 'Running', admittedAt: '2030-01-01T09:00:00.000Z' });
    h.put('s-new', { phase: 'Queued' });
    await reconcileSession(h.ctx, 's-new');
    const status = body(h, 'patch-status')!;
    expect(status.phase).toBe('Failed');
    expect(status.message).toMatch(/^waited 5m in the queue \(CTF_QUEUE_TIMEOUT 1m\)/);
    expect((status.conditions as { type: string; reason: string }[]).find((c) => c.type === 'Ready')?.reason).toBe('QueueTimeout');
    expect(await h.metrics.registry.getSingleMetricAsString('challenge_engine_queue_timeouts_total')).toMatch(/challenge="web-notes"} 1/);
    // Once that status is stored, the session no longer waits (and takes no place).
    expect(h.tracker.isWaiting(h.put('s-new', status))).toBe(false);
  });

  it('counts a session with children but no admittedAt (cut short by a crash) as admitted', async () => {
    const h = harness({ maxInstances: 1 });
    const s = h.put('s-crashed');
    const owner = [{ apiVersion: 'x', kind: 'ChallengeSession', name: 's-crashed', uid: s.metadata.uid!, controller: true }];
    (h.ctx.children.pods as unknown as { put: (o: unknown) => void }).put({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 's-crashed', namespace: NAMESPACE, ownerReferences: owner } });
    h.put('s-new', undefined, '2030-01-01T10:00:01.000Z');
    expect(h.tracker.isAdmitted(s)).toBe(true);
    await reconcileSession(h.ctx, 's-new');
    expect(body(h, 'patch-status')).toMatchObject({ phase: 'Queued' });
  });
});
