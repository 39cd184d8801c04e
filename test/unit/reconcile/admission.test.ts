import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { API_VERSION, ANNOTATION_REQUESTED_AT, SESSION_KIND } from '../../../src/api/group.js';
import type { ChallengeSession } from '../../../src/api/session.js';
import { decideAdmission, isUnclaimedPool, isWaiting, queueOrder, queueTime, QueueReason, type Admission, type Caps } from '../../../src/reconcile/admission.js';

/** The admission decision as a pure function: caps, first-come order, pool spares last, no revocation. */

const T0 = Date.parse('2030-01-01T10:00:00Z');

interface Opts {
  challenge?: string;
  at?: number;
  admitted?: boolean;
  pool?: boolean;
  claimed?: boolean;
  phase?: string;
  deleting?: boolean;
  legacy?: boolean;
}

function s(name: string, o: Opts = {}): ChallengeSession {
  const annotations: Record<string, string> = {};
  if (o.at !== undefined) annotations[ANNOTATION_REQUESTED_AT] = new Date(T0 + o.at).toISOString();
  if (o.claimed) annotations['ctf.challenge-engine.io/claimed-user'] = 'alice';
  const status: Record<string, unknown> = {};
  if (o.admitted) status.admittedAt = new Date(T0).toISOString();
  if (o.legacy) status.provisionedFrom = { generation: 1, runtime: {} };
  if (o.phase) status.phase = o.phase;
  return {
    apiVersion: API_VERSION,
    kind: SESSION_KIND,
    metadata: { name, creationTimestamp: '2030-01-01T10:00:00Z', annotations, ...(o.deleting ? { deletionTimestamp: '2030-01-01T10:00:01Z' } : {}) },
    spec: { challenge: o.challenge ?? 'web', user: name, ...(o.pool ? { pool: true } : {}) },
    status: status,
  };
}

const caps = (engine?: number, perChallenge: Record<string, number> = {}): Caps => ({ engine, challenge: (c) => perChallenge[c] });
const none = new Set<string>();
const decide = (sessions: ChallengeSession[], c: Caps, unschedulable: ReadonlySet<string> = none) => decideAdmission({ sessions, caps: c, unschedulable });
const admittedNames = (m: Map<string, Admission>) => [...m].filter(([, d]) => d.admitted).map(([n]) => n);
const queued = (m: Map<string, Admission>, n: string) => {
  const d = m.get(n);
  if (!d || d.admitted) throw new Error(`${n} is not queued`);
  return d;
};

describe('decideAdmission', () => {
  it('admits everything without caps or unschedulable pods', () => {
    const m = decide([s('a', { at: 1 }), s('b', { at: 2 }), s('c', { admitted: true })], caps());
    expect(admittedNames(m)).toEqual(['a', 'b']);
    expect(m.has('c')).toBe(false);
  });

  it('fills the engine cap first come, and queues the rest with positions', () => {
    const m = decide([s('late', { at: 30 }), s('first', { at: 10 }), s('run', { admitted: true }), s('second', { at: 20 }), s('third', { at: 25 })], caps(3));
    expect(admittedNames(m)).toEqual(['first', 'second']);
    expect(queued(m, 'third')).toEqual({ admitted: false, position: 1, ahead: 0, reason: QueueReason.EngineCap });
    expect(queued(m, 'late')).toEqual({ admitted: false, position: 2, ahead: 1, reason: QueueReason.EngineCap });
  });

  it('orders by the millisecond stamp, ties by name, and falls back to creationTimestamp', () => {
    const noStamp = s('nostamp');
    expect(queueTime(noStamp)).toBe(T0);
    expect([s('b', { at: 5 }), s('a', { at: 5 }), noStamp, s('c', { at: 1 })].sort(queueOrder).map((x) => x.metadata.name)).toEqual(['nostamp', 'c', 'a', 'b']);
  });

  it('counts sessions from before the queue (a runtime snapshot) as admitted', () => {
    const m = decide([s('old', { legacy: true, phase: 'Running' }), s('new', { at: 1 })], caps(1));
    expect(queued(m, 'new').reason).toBe(QueueReason.EngineCap);
    // ...and so does a session the caller knows has children.
    const again = decideAdmission({ sessions: [s('crashed', { at: 0 }), s('new', { at: 1 })], caps: caps(1), unschedulable: none, admittedElsewhere: (x) => x.metadata.name === 'crashed' });
    expect(again.has('crashed')).toBe(false);
    expect(queued(again, 'new').position).toBe(1);
  });

  it('frees capacity when an admitted session is being deleted, not when it merely failed', () => {
    expect(admittedNames(decide([s('gone', { admitted: true, deleting: true }), s('next', { at: 1 })], caps(1)))).toEqual(['next']);
    expect(queued(decide([s('broken', { admitted: true, phase: 'Failed' }), s('next', { at: 1 })], caps(1)), 'next').reason).toBe(QueueReason.EngineCap);
  });

  it('gives no place to sessions that ended without admission (queue timeout)', () => {
    const timedOut = s('timedout', { at: 0, phase: 'Failed' });
    expect(isWaiting(timedOut)).toBe(false);
    const m = decide([timedOut, s('next', { at: 1 })], caps(1));
    expect(admittedNames(m)).toEqual(['next']);
  });

  it('holds back only the challenge whose own cap is full', () => {
    const m = decide([s('w1', { admitted: true }), s('w2', { at: 1 }), s('w3', { at: 2 }), s('p1', { at: 3, challenge: 'pwn' })], caps(10, { web: 1 }));
    expect(admittedNames(m)).toEqual(['p1']);
    expect(queued(m, 'w2')).toEqual({ admitted: false, position: 1, ahead: 0, reason: QueueReason.ChallengeCap });
    expect(queued(m, 'w3')).toEqual({ admitted: false, position: 2, ahead: 1, reason: QueueReason.ChallengeCap });
  });

  it('admits nothing of a challenge while one of its admitted Pods is unschedulable, resumes when it schedules, and leaves other challenges alone', () => {
    const sessions = [s('run', { admitted: true }), s('a', { at: 1 }), s('other', { at: 2, challenge: 'pwn' }), s('b', { at: 3 })];
    const blocked = decide(sessions, caps(), new Set(['run']));
    expect(queued(blocked, 'a')).toEqual({ admitted: false, position: 1, ahead: 0, reason: QueueReason.Unschedulable });
    expect(queued(blocked, 'b').position).toBe(2);
    expect(blocked.get('other')).toEqual({ admitted: true });
    expect(admittedNames(decide(sessions, caps())).sort()).toEqual(['a', 'b', 'other']);
    // An unschedulable Pod of a session being deleted no longer blocks.
    expect(admittedNames(decide([s('run', { admitted: true, deleting: true }), s('a', { at: 1 })], caps(), new Set(['run'])))).toEqual(['a']);
  });

  it('puts every player before every unclaimed pool spare, and claimed instances among players', () => {
    const spare = s('spare', { at: 0, pool: true });
    const claimed = s('claimed', { at: 5, pool: true, claimed: true });
    expect(isUnclaimedPool(spare)).toBe(true);
    expect(isUnclaimedPool(claimed)).toBe(false);
    const m = decide([spare, s('player', { at: 10 }), claimed, s('run', { admitted: true, pool: true })], caps(3));
    expect(admittedNames(m).sort()).toEqual(['claimed', 'player']);
    expect(queued(m, 'spare')).toEqual({ admitted: false, position: 1, ahead: 0, reason: QueueReason.EngineCap });
  });
});

describe('decideAdmission properties', () => {
  const arbSession = fc.record({
    challenge: fc.constantFrom('a', 'b', 'c'),
    at: fc.integer({ min: 0, max: 50 }),
    admitted: fc.boolean(),
    pool: fc.boolean(),
    claimed: fc.boolean(),
    deleting: fc.boolean(),
    failed: fc.boolean(),
  });
  const arbWorld = fc.record({
    sessions: fc.array(arbSession, { maxLength: 30 }),
    engine: fc.option(fc.integer({ min: 0, max: 12 }), { nil: undefined }),
    per: fc.record({ a: fc.integer({ min: 1, max: 6 }), b: fc.integer({ min: 1, max: 6 }) }, { requiredKeys: [] }),
  });
  const sessionsOf = (xs: { challenge: string; at: number; admitted: boolean; pool: boolean; claimed: boolean; deleting: boolean; failed: boolean }[]) =>
    xs.map((x, i) => s(`s${String(i).padStart(2, '0')}`, { ...x, phase: x.failed ? 'Failed' : undefined }));
  const live = (x: ChallengeSession, m: Map<string, Admission>) => !x.metadata.deletionTimestamp && (typeof x.status?.admittedAt === 'string' || m.get(x.metadata.name)?.admitted === true);

  it('never admits past a cap that has room left only for what it admits', () => {
    fc.assert(
      fc.property(arbWorld, (w) => {
        const sessions = sessionsOf(w.sessions);
        const c = caps(w.engine, w.per);
        const m = decide(sessions, c);
        const after = sessions.filter((x) => live(x, m));
        const before = sessions.filter((x) => live(x, new Map()));
        const newly = after.length - before.length;
        // Admitting only ever fills up to a cap; sessions already over it stay (never revoked).
        if (w.engine !== undefined) expect(newly === 0 || after.length <= w.engine).toBe(true);
        for (const [ch, cap] of Object.entries(w.per)) {
          const n = after.filter((x) => x.spec.challenge === ch).length;
          const was = before.filter((x) => x.spec.challenge === ch).length;
          expect(n === was || n <= cap).toBe(true);
        }
      }),
    );
  });

  it('never revokes: admitted sessions get no decision at all', () => {
    fc.assert(
      fc.property(arbWorld, (w) => {
        const sessions = sessionsOf(w.sessions);
        const m = decide(sessions, caps(w.engine, w.per));
        for (const x of sessions) if (typeof x.status?.admittedAt === 'string') expect(m.has(x.metadata.name)).toBe(false);
      }),
    );
  });

  it('is first come within a line: no queued session is ahead of an admitted one of the same line', () => {
    fc.assert(
      fc.property(arbWorld, (w) => {
        const sessions = sessionsOf(w.sessions);
        const m = decide(sessions, caps(w.engine, w.per));
        const waiting = sessions.filter((x) => m.has(x.metadata.name)).sort(queueOrder);
        waiting.forEach((x, i) => {
          const d = m.get(x.metadata.name)!;
          if (d.admitted || d.reason === QueueReason.ChallengeCap) return;
          // Held by the engine's cap: everything after it waits too.
          for (const later of waiting.slice(i + 1)) expect(m.get(later.metadata.name)?.admitted).toBe(false);
        });
        // Within one challenge, admissions are a prefix of its waiting sessions.
        for (const ch of ['a', 'b', 'c']) {
          const mine = waiting.filter((x) => x.spec.challenge === ch).map((x) => m.get(x.metadata.name)!.admitted);
          expect(mine).toEqual([...mine].sort((p, q) => Number(q) - Number(p)));
        }
      }),
    );
  });

  it('never admits an unclaimed spare while a player of its challenge waits; engine positions count every queued session ahead', () => {
    fc.assert(
      fc.property(arbWorld, (w) => {
        const sessions = sessionsOf(w.sessions);
        const m = decide(sessions, caps(w.engine, w.per));
        for (const spare of sessions.filter((x) => isUnclaimedPool(x) && m.get(x.metadata.name)?.admitted)) {
          for (const player of sessions.filter((x) => !isUnclaimedPool(x) && x.spec.challenge === spare.spec.challenge)) expect(m.get(player.metadata.name)?.admitted).not.toBe(false);
        }
        let before = 0;
        for (const x of sessions.filter((y) => m.has(y.metadata.name)).sort(queueOrder)) {
          const d = m.get(x.metadata.name)!;
          if (d.admitted) continue;
          if (d.reason === QueueReason.EngineCap) expect(d).toMatchObject({ ahead: before, position: before + 1 });
          before++;
        }
      }),
    );
  });

  it('admits in request order as capacity frees one instance at a time', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5 }), fc.array(fc.integer({ min: 0, max: 1000 }), { minLength: 1, maxLength: 20 }), (cap, times) => {
        let sessions = times.map((t, i) => s(`p${String(i).padStart(2, '0')}`, { at: t }));
        const served: string[] = [];
        for (let round = 0; round < times.length * 2 && served.length < times.length; round++) {
          const m = decide(sessions, caps(cap));
          const admitted = new Set(admittedNames(m));
          sessions = sessions.map((x) => (admitted.has(x.metadata.name) ? { ...x, status: { admittedAt: 'x' } } : x));
          served.push(...sessions.filter((x) => admitted.has(x.metadata.name)).sort(queueOrder).map((x) => x.metadata.name));
          // The first admitted session stops: one instance frees.
          const first = sessions.find((x) => x.status?.admittedAt && !x.metadata.deletionTimestamp);
          if (first) sessions = sessions.map((x) => (x === first ? { ...x, metadata: { ...x.metadata, deletionTimestamp: 'x' } } : x));
        }
        const expected = [...sessions].sort(queueOrder).map((x) => x.metadata.name);
        expect(served).toEqual(expected);
      }),
    );
  });
});
