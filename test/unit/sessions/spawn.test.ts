import { describe, it, expect } from 'vitest';
import type { ChallengeSession } from '../../../src/api/session.js';
import { sessionSchema } from '../../../src/api/session.js';
import type { LiveReads } from '../../../src/kube/live-reads.js';
import { createRecorder } from '../../../src/kube/recorder.js';
import { createMetrics } from '../../../src/metrics.js';
import { desiredSession } from '../../../src/reconcile/desired-session.js';
import { formatExpiry, initialExpiry } from '../../../src/reconcile/expiry.js';
import type { PlayerDeps } from '../../../src/sessions/deps.js';
import { SessionWaits } from '../../../src/sessions/read-your-writes.js';
import { sessionName, slotOrder, slotsToTry, spawnSession } from '../../../src/sessions/spawn.js';
import { DomainError } from '../../../src/sessions/types.js';
import { apiError, memoryCaches, RecordingWriter, selectByOwner, silentLog } from '../../support/memory.js';
import { desiredPoolInstance, poolInstanceName } from '../../../src/reconcile/pool.js';
import { runtimeOf } from '../../../src/reconcile/runtime.js';
import { ANNOTATION_CLAIMED_USER } from '../../../src/api/group.js';
import { NAMESPACE, pwnChallenge, webChallenge } from '../reconcile/fixtures.js';

/**
 * Spawn arbitration against in-memory caches, a recording writer and an in-memory view of what
 * the apiserver holds: which creates a spawn tries, and what it answers.
 */

const NOW = new Date('2030-01-01T10:05:00Z');
const ALICE = { user: 'alice@example.org', admin: false };
const LIMIT = 3;

function harness() {
  const mem = memoryCaches(NAMESPACE);
  const writer = new RecordingWriter();
  /** Sessions the apiserver holds, by name (what live reads and creates see). */
  const server = new Map<string, ChallengeSession>();
  const live: LiveReads = {
    session: (name) => Promise.resolve(server.get(name)),
    sessionsAt: (owner, challenge) => Promise.resolve(selectByOwner(server.values(), owner, challenge)),
    secretValue: () => Promise.resolve(undefined),
    ping: () => Promise.resolve(),
  };
  writer.fail = (w) => (w.verb === 'create' && server.has(w.target.split(' ')[1] ?? '') ? apiError(409, 'AlreadyExists') : undefined);
  // The replica's own watch shows what it created.
  writer.onCreated = (obj) => {
    const s = sessionSchema.parse(obj);
    server.set(s.metadata.name, s);
    mem.sessions.put(s);
  };
  const d: PlayerDeps = {
    live,
    caches: mem.caches,
    writer,
    events: createRecorder(writer, silentLog),
    waits: new SessionWaits(mem.caches),
    log: silentLog,
    metrics: createMetrics(),
    flagKey: Buffer.alloc(32, 1),
    instanceOwner: 'user',
    now: () => NOW,
  };
  mem.challenges.put(webChallenge());
  mem.challenges.put(pwnChallenge());
  const held = (slot: number, challenge: string, user = ALICE.user, uid = `held-${slot}`) => {
    const body = desiredSession({ name: sessionName(user, slot), namespace: NAMESPACE, challenge, user, expiresAt: '2030-01-01T11:00:00Z' });
    const s = sessionSchema.parse({ ...body, metadata: { ...body.metadata, uid, resourceVersion: '7', creationTimestamp: '2030-01-01T09:00:00Z' } });
    server.set(s.metadata.name, s);
    return s;
  };
  return { mem, writer, server, d, held, spawn: (challenge: string) => spawnSession(d, LIMIT, ALICE, challenge) };
}

const creates = (w: RecordingWriter) => w.writes.filter((x) => x.verb === 'create').map((x) => x.target.split(' ')[1]);

describe('slot order', () => {
  it('is a rotation of all slots that depends on the challenge only', () => {
    for (const c of ['web-notes', 'pwn-echo', 'a']) {
      const order = slotOrder(c, 5);
      expect([...order].sort()).toEqual([0, 1, 2, 3, 4]);
      expect(slotOrder(c, 5)).toEqual(order);
    }
  });

  it('tries slots the cache shows taken last', () => {
    const order = slotOrder('web-notes', 4);
    expect(slotsToTry('web-notes', 4, (s) => s === order[0])).toEqual([...order.slice(1), order[0]]);
  });
});

describe('spawnSession arbitration', () => {
  it('creates exactly the desired session in the first slot of the challenge', async () => {
    const h = harness();
    const out = await h.spawn('web-notes');
    const first = slotOrder('web-notes', LIMIT)[0] ?? 0;
    expect(out.created).toBe(true);
    expect(h.writer.writes).toEqual([
      {
        verb: 'create',
        target: `ChallengeSession ${sessionName(ALICE.user, first)}`,
        body: desiredSession({ name: sessionName(ALICE.user, first), namespace: NAMESPACE, challenge: 'web-notes', user: ALICE.user, expiresAt: formatExpiry(initialExpiry(webChallenge().spec, NOW)), requestedAt: NOW.toISOString() }),
      },
    ]);
  });

  it('returns the cached session of the same challenge without writing', async () => {
    const h = harness();
    h.mem.sessions.put(h.held(1, 'web-notes'));
    const out = await h.spawn('web-notes');
    expect(out).toMatchObject({ created: false, session: { metadata: { name: sessionName(ALICE.user, 1) } } });
    expect(h.writer.writes).toEqual([]);
  });

  it('answers with the winner when a concurrent spawn took the slot (the cache has not seen it)', async () => {
    const h = harness();
    const first = slotOrder('web-notes', LIMIT)[0] ?? 0;
    h.held(first, 'web-notes', ALICE.user, 'winner');
    const out = await h.spawn('web-notes');
    expect(out.created).toBe(false);
    expect(out.session.metadata.uid).toBe('winner');
    expect(creates(h.writer)).toEqual([sessionName(ALICE.user, first)]);
  });

  it('moves on to the next slot when the one tried holds another challenge', async () => {
    const h = harness();
    const [a, b] = slotOrder('web-notes', LIMIT);
    h.held(a ?? 0, 'pwn-echo');
    const out = await h.spawn('web-notes');
    expect(out.created).toBe(true);
    expect(creates(h.writer)).toEqual([sessionName(ALICE.user, a ?? 0), sessionName(ALICE.user, b ?? 0)]);
  });

  it('refuses once every slot is held, after trying each once', async () => {
    const h = harness();
    for (let slot = 0; slot < LIMIT; slot++) h.held(slot, 'pwn-echo');
    const err = await h.spawn('web-notes').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DomainError);
    expect((err as DomainError).kind).toBe('LimitReached');
    expect(creates(h.writer).sort()).toEqual([0, 1, 2].map((s) => sessionName(ALICE.user, s)));
  });

  it('gives way to an older session of the same challenge in another slot: deletes its own, returns the older', async () => {
    const h = harness();
    const order = slotOrder('web-notes', LIMIT);
    const older = h.held(order[2] ?? 0, 'web-notes', ALICE.user, 'older');
    const out = await h.spawn('web-notes');
    expect(out).toMatchObject({ created: false, session: { metadata: { uid: 'older' } } });
    const mine = sessionName(ALICE.user, order[0] ?? 0);
    expect(h.writer.writes.map((w) => `${w.verb} ${w.target}`)).toEqual([`create ChallengeSession ${mine}`, `delete ChallengeSession ${mine}`]);
    expect(h.writer.writes[1]?.body).toEqual({ uid: 'uid-1' });
    expect(older.metadata.name).not.toBe(mine);
  });

  it('treats a disabled or unknown challenge as not found, without writing', async () => {
    const h = harness();
    h.mem.challenges.put(webChallenge({ enabled: false }));
    for (const c of ['web-notes', 'no-such']) await expect(h.spawn(c)).rejects.toMatchObject({ kind: 'NotFound' });
    expect(h.writer.writes).toEqual([]);
  });
});

describe('spawnSession with a warm pool', () => {
  /** A ready, unclaimed instance of a pooled web-notes, in the cache and on the server. */
  function poolHarness(instances: number) {
    const h = harness();
    h.mem.challenges.put(webChallenge({ pool: { size: instances } }));
    const names: string[] = [];
    for (let i = 0; i < instances; i++) {
      const body = desiredPoolInstance(poolInstanceName('web-notes'), NAMESPACE, 'web-notes');
      const s = sessionSchema.parse({
        ...body,
        metadata: { ...body.metadata, uid: `pool-${i}`, resourceVersion: String(50 + i), creationTimestamp: '2030-01-01T09:00:00Z' },
        status: {
          phase: 'Running',
          conditions: [{ type: 'Ready', status: 'True', reason: 'Running', message: '', lastTransitionTime: '2030-01-01T09:00:00Z' }],
          provisionedFrom: { generation: 3, runtime: runtimeOf(webChallenge({ pool: { size: instances } }).spec) },
        },
      });
      h.server.set(s.metadata.name, s);
      h.mem.sessions.put(s);
      names.push(s.metadata.name);
    }
    // A successful claim shows on the server and in this replica's cache, as the watch would.
    h.writer.patched = (name, patch, rv) => {
      const cur = h.server.get(name);
      if (!cur) return undefined;
      const m = (patch as { metadata: { labels: Record<string, string>; annotations: Record<string, string> } }).metadata;
      const next = sessionSchema.parse({ ...cur, metadata: { ...cur.metadata, resourceVersion: `${rv ?? ''}1`, labels: { ...cur.metadata.labels, ...m.labels }, annotations: { ...cur.metadata.annotations, ...m.annotations } } });
      h.server.set(name, next);
      h.mem.sessions.put(next);
      return next;
    };
    return { ...h, names };
  }

  const claims = (w: RecordingWriter) => w.writes.filter((x) => x.verb === 'patch-metadata');

  it('claims a ready instance in one write over the resourceVersion it read', async () => {
    const h = poolHarness(2);
    const out = await h.spawn('web-notes');
    expect(out.created).toBe(true);
    expect(h.names).toContain(out.session.metadata.name);
    expect(h.writer.objectWrites()).toHaveLength(1);
    const [claim] = claims(h.writer);
    expect(claim?.resourceVersion).toBe(h.server.get(out.session.metadata.name)?.metadata.resourceVersion?.slice(0, -1));
    expect(out.session.metadata.annotations?.[ANNOTATION_CLAIMED_USER]).toBe(ALICE.user);
    // The next spawn of the same challenge returns it without writing.
    const again = await h.spawn('web-notes');
    expect(again).toMatchObject({ created: false, session: { metadata: { name: out.session.metadata.name } } });
    expect(h.writer.objectWrites()).toHaveLength(1);
  });

  it('tries another instance when a claim loses a race, and starts a fresh one when every try does', async () => {
    const h = poolHarness(4);
    let refused = 0;
    h.writer.fail = (w) => (w.verb === 'patch-metadata' && refused++ < 1 ? apiError(409, 'Conflict') : undefined);
    const out = await h.spawn('web-notes');
    expect(claims(h.writer)).toHaveLength(2);
    expect(h.names).toContain(out.session.metadata.name);

    const lost = poolHarness(4);
    lost.writer.fail = (w) => (w.verb === 'patch-metadata' ? apiError(409, 'Conflict') : w.verb === 'create' && lost.server.has(w.target.split(' ')[1] ?? '') ? apiError(409, 'AlreadyExists') : undefined);
    const fresh = await lost.spawn('web-notes');
    expect(claims(lost.writer).map((c) => c.refused?.includes('Conflict'))).toEqual([true, true, true]);
    expect(fresh.session.metadata.name).toBe(sessionName(ALICE.user, slotOrder('web-notes', LIMIT)[0] ?? 0));
  });

  it('counts claimed instances against the limit', async () => {
    const h = poolHarness(1);
    h.mem.sessions.put(h.held(0, 'pwn-echo'));
    h.mem.sessions.put(h.held(1, 'pwn-echo-2'));
    h.mem.sessions.put(h.held(2, 'pwn-echo-3'));
    const err = await h.spawn('web-notes').catch((e: unknown) => e);
    expect((err as DomainError).kind).toBe('LimitReached');
    expect(h.writer.objectWrites()).toEqual([]);
  });
});
