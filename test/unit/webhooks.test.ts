import { describe, expect, it } from 'vitest';
import type { ChallengeSession } from '../../src/api/session.js';
import { backoffMs, sign, solveEvent, unrecordedSolves, verifySignature } from '../../src/webhooks/events.js';
import { outboxEntry, outboxName } from '../../src/webhooks/outbox.js';

const session = (spec: Record<string, unknown>): ChallengeSession =>
  ({ apiVersion: 'ctf.challenge-engine.io/v1alpha1', kind: 'ChallengeSession', metadata: { name: 's-abc-1', namespace: 'ctf', uid: '6b1c1f3e-0000-4000-8000-000000000001' }, spec: { challenge: 'web-notes', user: 'alice', ...spec } }) as unknown as ChallengeSession;

describe('solve webhooks', () => {
  it('builds one event per solved session, with a stable id and the owner', () => {
    const e = solveEvent(session({ team: 'red' }), { user: 'alice', team: 'red' }, '2026-12-01T10:00:00Z');
    expect(e).toEqual({ id: 'solve-6b1c1f3e-0000-4000-8000-000000000001', type: 'solve', session: 's-abc-1', challenge: 'web-notes', owner: { mode: 'user', user: 'alice', team: 'red' }, solvedBy: { user: 'alice', team: 'red' }, solvedAt: '2026-12-01T10:00:00Z' });
    const team = solveEvent(session({ team: 'red', owner: 'team' }), { user: 'rob', team: 'red' }, '2026-12-01T10:00:00Z');
    expect(team.owner).toEqual({ mode: 'team', user: 'alice', team: 'red' });
    expect(outboxName(e)).toBe('webhook-solve-6b1c1f3e-0000-4000-8000-000000000001');
    expect(outboxEntry('ctf', e).metadata?.ownerReferences).toBeUndefined();
  });

  it('signs timestamp and body, and a receiver refuses another body, key or an old timestamp', () => {
    const body = '{"id":"solve-1"}';
    const now = 1_800_000_000;
    const signature = sign('k'.repeat(32), now, body);
    expect(signature).toMatch(/^sha256=[0-9a-f]{64}$/);
    expect(verifySignature('k'.repeat(32), { signature, timestamp: String(now) }, body, now + 10)).toBe(true);
    expect(verifySignature('k'.repeat(32), { signature, timestamp: String(now) }, `${body} `, now)).toBe(false);
    expect(verifySignature('j'.repeat(32), { signature, timestamp: String(now) }, body, now)).toBe(false);
    expect(verifySignature('k'.repeat(32), { signature, timestamp: String(now) }, body, now + 301)).toBe(false);
    expect(verifySignature('k'.repeat(32), { signature, timestamp: String(now + 1) }, body, now)).toBe(false);
    expect(verifySignature('k'.repeat(32), { timestamp: String(now) }, body, now)).toBe(false);
  });

  it('backs off exponentially from 1 s to the cap, with jitter of plus or minus half', () => {
    expect(backoffMs(0, 300_000, () => 0.5)).toBe(1000);
    expect(backoffMs(3, 300_000, () => 0.5)).toBe(8000);
    expect(backoffMs(30, 300_000, () => 0.5)).toBe(300_000);
    expect(backoffMs(3, 300_000, () => 0)).toBe(4000);
    expect(backoffMs(3, 300_000, () => 0.999)).toBeLessThan(12_000);
  });

  it('finds solves recorded without their event: not pending, not delivered, not from before solvedBy', () => {
    const solved = (name: string, uid: string, status: Record<string, unknown>) => {
      const s = session({});
      return { ...s, metadata: { ...s.metadata, name, uid }, status: { solved: true, solvedAt: '2026-12-01T10:00:00Z', ...status } } as ChallengeSession;
    };
    const by = { user: 'bob', team: 'red' };
    const sessions = [
      solved('lost', 'u-lost', { solvedBy: by }),
      solved('pending', 'u-pending', { solvedBy: by }),
      solved('just-delivered', 'u-just', { solvedBy: by }),
      solved('reported', 'u-reported', { solvedBy: by, solveReportedAt: '2026-12-01T10:00:01Z' }),
      // Solved before solvedBy was recorded: its event went out then; nothing is made up for it.
      solved('old', 'u-old', {}),
      { ...session({}), status: { phase: 'Running' } } as ChallengeSession,
    ];
    const found = unrecordedSolves(sessions, new Set(['solve-u-pending']), new Set(['solve-u-just']));
    expect(found).toEqual([solveEvent(sessions[0] as ChallengeSession, by, '2026-12-01T10:00:00Z')]);
    expect(found[0]?.solvedBy).toEqual(by);
  });
});
