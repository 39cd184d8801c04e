import { describe, expect, it } from 'vitest';
import { PHASES, type ChallengeSession, type Phase } from '../../../src/api/session.js';
import type { LiveReads } from '../../../src/kube/live-reads.js';
import { createMetrics } from '../../../src/metrics.js';
import { SessionWaits } from '../../../src/sessions/read-your-writes.js';
import { KubeSessionService } from '../../../src/sessions/service.js';
import { hasSettled } from '../../../src/sessions/views.js';
import { memoryCaches, RecordingWriter, silentLog } from '../../support/memory.js';
import { NAMESPACE, session, webChallenge } from '../reconcile/fixtures.js';

/** The list long poll: what counts as settled, and the wait over a changing list of sessions. */

const ALICE = { user: 'alice@example.org', admin: false };
const BOB = { user: 'bob@example.org', admin: false };

function sessionIn(name: string, phase: Phase | undefined, user = ALICE.user, uid = `uid-${name}`): ChallengeSession {
  const s = session({ name, user, expiresAt: '2030-01-01T11:00:00Z', ...(phase ? { status: { phase } } : {}) });
  return { ...s, metadata: { ...s.metadata, uid } };
}

function harness() {
  const mem = memoryCaches(NAMESPACE);
  mem.challenges.put(webChallenge());
  const waits = new SessionWaits(mem.caches);
  const live: LiveReads = { session: () => Promise.resolve(undefined), sessionsAt: () => Promise.resolve([]), secretValue: () => Promise.resolve(undefined), ping: () => Promise.resolve() };
  const service = new KubeSessionService({
    // Never reached: every read past the cache goes through `live`.
    kube: undefined as never,
    live,
    caches: mem.caches,
    writer: new RecordingWriter(),
    log: silentLog,
    metrics: createMetrics(),
    flagKey: Buffer.alloc(32, 5),
    maxSessionsPerUser: 3,
  });
  const mine = () => mem.caches.sessionsOfUser(ALICE.user);
  const settled = (s: ChallengeSession) => hasSettled({ phase: s.status?.phase ?? 'Pending' });
  return { mem, waits, service, mine, settled };
}

/** Resolves with how long `p` took, and its value. */
async function timed<T>(p: Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = Date.now();
  const value = await p;
  return { ms: Date.now() - t0, value };
}

const later = (ms: number, f: () => void) => setTimeout(f, ms);

describe('hasSettled', () => {
  const expected: Record<Phase, boolean> = { Pending: false, Queued: false, Provisioning: false, Running: true, Failed: true, Expired: true };
  it.each(PHASES.map((p) => [p, expected[p]] as const))('%s -> %s', (phase, settled) => {
    expect(hasSettled({ phase })).toBe(settled);
  });
});

describe('SessionWaits.untilEach', () => {
  it('holds at once when nothing is listed or everything has settled', async () => {
    const h = harness();
    expect(await h.waits.untilEach(h.mine, h.settled, 5_000)).toBe(true);
    h.mem.sessions.put(sessionIn('s-1', 'Running'));
    h.mem.sessions.put(sessionIn('s-2', 'Failed'));
    const { ms, value } = await timed(h.waits.untilEach(h.mine, h.settled, 5_000));
    expect(value).toBe(true);
    expect(ms).toBeLessThan(50);
  });

  it('resolves when the last of the starting sessions settles, not the first', async () => {
    const h = harness();
    h.mem.sessions.put(sessionIn('s-1', undefined));
    h.mem.sessions.put(sessionIn('s-2', 'Provisioning'));
    let settledAt = 0;
    later(20, () => h.mem.sessions.put(sessionIn('s-1', 'Running')));
    later(40, () => h.mem.sessions.put(sessionIn('s-2', 'Provisioning')));
    later(80, () => {
      settledAt = Date.now();
      h.mem.sessions.put(sessionIn('s-2', 'Failed'));
    });
    expect(await h.waits.untilEach(h.mine, h.settled, 5_000)).toBe(true);
    expect(settledAt).toBeGreaterThan(0);
    expect(Date.now() - settledAt).toBeLessThan(50);
  });

  it('waits for a session that joins the list meanwhile, within the same deadline', async () => {
    const h = harness();
    h.mem.sessions.put(sessionIn('s-1', 'Pending'));
    later(20, () => {
      h.mem.sessions.put(sessionIn('s-2', 'Pending'));
      h.mem.sessions.put(sessionIn('s-1', 'Running'));
    });
    const { ms, value } = await timed(h.waits.untilEach(h.mine, h.settled, 150));
    expect(value).toBe(false);
    expect(ms).toBeGreaterThanOrEqual(140);
    expect(ms).toBeLessThan(400);
  });

  it('ends a session\'s wait when it is gone or replaced by another uid', async () => {
    const h = harness();
    h.mem.sessions.put(sessionIn('s-1', 'Pending'));
    h.mem.sessions.put(sessionIn('s-2', 'Pending'));
    later(20, () => h.mem.sessions.remove(sessionIn('s-1', 'Pending')));
    later(40, () => h.mem.sessions.put(sessionIn('s-2', 'Running', ALICE.user, 'uid-new')));
    const { ms, value } = await timed(h.waits.untilEach(h.mine, h.settled, 5_000));
    expect(value).toBe(true);
    expect(ms).toBeLessThan(1_000);
  });

  it('gives up after the timeout, or at once when the signal aborts', async () => {
    const h = harness();
    h.mem.sessions.put(sessionIn('s-1', 'Pending'));
    const out = await timed(h.waits.untilEach(h.mine, h.settled, 60));
    expect(out.value).toBe(false);
    expect(out.ms).toBeGreaterThanOrEqual(55);
    const abort = new AbortController();
    later(20, () => abort.abort());
    const aborted = await timed(h.waits.untilEach(h.mine, h.settled, 5_000, { signal: abort.signal }));
    expect(aborted.value).toBe(false);
    expect(aborted.ms).toBeLessThan(1_000);
    expect(await h.waits.untilEach(h.mine, h.settled, 5_000, { signal: abort.signal })).toBe(false);
  });
});

describe('KubeSessionService.waitList', () => {
  it('answers with the list once the caller\'s sessions settled, unmoved by other players\' sessions', async () => {
    const h = harness();
    h.mem.sessions.put(sessionIn('s-a', 'Pending'));
    h.mem.sessions.put(sessionIn('s-b', 'Pending', BOB.user));
    later(20, () => h.mem.sessions.put(sessionIn('s-a', 'Running')));
    const { ms, value } = await timed(h.service.waitList(ALICE, false, 5_000));
    expect(value.map((v) => [v.id, v.phase, v.ready])).toEqual([['s-a', 'Running', true]]);
    expect(ms).toBeLessThan(1_000);
  });

  it('is not held up by a session being deleted', async () => {
    const h = harness();
    const s = sessionIn('s-a', 'Provisioning');
    h.mem.sessions.put(s);
    const deleting: ChallengeSession = { ...s, metadata: { ...s.metadata, deletionTimestamp: '2030-01-01T10:06:00Z' } };
    later(20, () => h.mem.sessions.put(deleting));
    const { ms, value } = await timed(h.service.waitList(ALICE, false, 5_000));
    expect(value).toEqual([]);
    expect(ms).toBeLessThan(1_000);
  });

  it('waits for every session when an admin lists all', async () => {
    const h = harness();
    h.mem.sessions.put(sessionIn('s-b', 'Pending', BOB.user));
    const out = await timed(h.service.waitList({ user: 'root', admin: true }, true, 60));
    expect(out.ms).toBeGreaterThanOrEqual(55);
    expect(out.value.map((v) => v.phase)).toEqual(['Pending']);
  });
});
