import { describe, expect, it } from 'vitest';
import { ANNOTATION_REQUESTED_AT } from '../../../src/api/group.js';
import type { ChallengeSession } from '../../../src/api/session.js';
import { QueuePositions } from '../../../src/sessions/queue.js';
import { sessionView } from '../../../src/sessions/views.js';
import { memoryCaches } from '../../support/memory.js';
import { NAMESPACE, session, webChallenge } from '../reconcile/fixtures.js';
import { BLUE, LONER, teamHarness } from './team-harness.js';

/** Queue places as any replica's API computes them from its cache. */

function put(mem: ReturnType<typeof memoryCaches>, name: string, at: string, status?: Record<string, unknown>): ChallengeSession {
  const s = session({ name, status });
  s.metadata.annotations = { [ANNOTATION_REQUESTED_AT]: at };
  return mem.sessions.put(s) as unknown as ChallengeSession;
}

const unschedulable = { phase: 'Provisioning', admittedAt: '2030-01-01T10:00:00.000Z', conditions: [{ type: 'Ready', status: 'False', reason: 'Unschedulable', message: 'no node', lastTransitionTime: '2030-01-01T10:00:00Z' }] };

describe('QueuePositions', () => {
  it('gives waiting sessions over the engine cap their place, and the view phase Queued', () => {
    const mem = memoryCaches(NAMESPACE);
    mem.challenges.put(webChallenge());
    const q = new QueuePositions(mem.caches, 1);
    put(mem, 's-run', '2030-01-01T09:00:00.000Z', { phase: 'Running', admittedAt: '2030-01-01T09:00:00.000Z' });
    const a = put(mem, 's-a', '2030-01-01T10:00:00.100Z');
    const b = put(mem, 's-b', '2030-01-01T10:00:00.200Z');
    expect(q.place(a)).toEqual({ position: 1, ahead: 0, reason: 'EngineCapacity' });
    expect(q.place(b)).toEqual({ position: 2, ahead: 1, reason: 'EngineCapacity' });
    const view = sessionView(b, webChallenge(), new Date('2030-01-01T10:01:00Z'), q.place(b));
    expect(view).toMatchObject({ phase: 'Queued', queue: { position: 2, ahead: 1, reason: 'EngineCapacity' } });
    // The running one stops: a is admitted now (no place), b moves up.
    mem.sessions.remove({ metadata: { name: 's-run' } });
    expect(q.place(b)).toEqual({ position: 1, ahead: 0, reason: 'EngineCapacity' });
    expect(q.place(a)).toBeUndefined();
  });

  it('reads a full cluster from admitted sessions whose status says Unschedulable, and nothing when uncapped', () => {
    const mem = memoryCaches(NAMESPACE);
    mem.challenges.put(webChallenge());
    const q = new QueuePositions(mem.caches, undefined);
    const free = put(mem, 's-a', '2030-01-01T10:00:00.100Z');
    expect(q.place(free)).toBeUndefined();
    put(mem, 's-big', '2030-01-01T09:00:00.000Z', unschedulable);
    expect(q.place(free)).toEqual({ position: 1, ahead: 0, reason: 'ClusterFull' });
    const admitted = put(mem, 's-c', '2030-01-01T09:00:00.000Z', { phase: 'Running', admittedAt: '2030-01-01T09:00:00.000Z' });
    expect(q.place(admitted)).toBeUndefined();
  });

  it('answers a spawn with its place behind spawns this replica took first but has not cached yet', async () => {
    let ms = Date.parse('2030-01-01T10:05:00Z');
    const h = teamHarness('user', { maxInstances: 1, now: () => new Date((ms += 10)) });
    // The first spawn's create is slow to come back: the second's answer is ready first.
    const create = h.writer.createSession.bind(h.writer);
    let creates = 0;
    h.writer.createSession = async (ns, body) => {
      if (creates++ === 0) await new Promise((r) => setTimeout(r, 50));
      return create(ns, body);
    };
    const [first, second] = await Promise.all([h.service.spawn(LONER, 'pwn-echo'), h.service.spawn(BLUE, 'pwn-echo')]);
    expect(first.session.queue).toBeUndefined();
    expect(second.session).toMatchObject({ phase: 'Queued', queue: { position: 1, ahead: 0, reason: 'EngineCapacity' } });
  });
});
