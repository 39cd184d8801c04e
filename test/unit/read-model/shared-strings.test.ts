import { describe, expect, it } from 'vitest';
import { StringPool, shareSessionStrings } from '../../../src/read-model/shared-strings.js';

/** A string equal to `s` but not the same heap object (as JSON.parse makes one per value). */
const copy = (s: string) => JSON.parse(JSON.stringify(s)) as string;

function parsedSession(user: string) {
  return JSON.parse(
    JSON.stringify({
      apiVersion: 'ctf.challenge-engine.io/v1alpha1',
      kind: 'ChallengeSession',
      metadata: { name: `s-${user}`, namespace: 'ctf', uid: `uid-${user}`, labels: { 'ctf.challenge-engine.io/challenge': 'web', 'ctf.challenge-engine.io/user-hash': `h-${user}` } },
      spec: { challenge: 'web', user, owner: 'user' },
      status: {
        phase: 'Running',
        conditions: [{ type: 'Ready', status: 'True', reason: 'Provisioned', message: 'session is ready', lastTransitionTime: '2026-12-02T03:24:04Z' }],
        endpoints: [{ name: 'http', protocol: 'http', host: `s-${user}.ctf.svc`, port: 80 }],
      },
    }),
  ) as Record<string, unknown>;
}

describe('StringPool', () => {
  it('returns the first copy it was given for every equal string', () => {
    const pool = new StringPool();
    const first = copy('Provisioned');
    expect(pool.share(first)).toBe(first);
    const second = copy('Provisioned');
    expect(pool.share(second)).toBe(first);
    expect(pool.share(undefined)).toBeUndefined();
    expect(pool.size).toBe(1);
  });

  it('stays bounded: a full pool starts again instead of growing', () => {
    const pool = new StringPool(3);
    for (let i = 0; i < 10; i++) pool.share(`value-${i}`);
    expect(pool.size).toBeLessThanOrEqual(3);
    // Equal strings still come back equal, whatever was dropped.
    expect(pool.share('value-9')).toBe('value-9');
  });

  it('keeps strings over the length bound out of the pool', () => {
    const pool = new StringPool(10, 8);
    const long = 'x'.repeat(9);
    expect(pool.share(long)).toBe(long);
    expect(pool.size).toBe(0);
  });
});

describe('shareSessionStrings', () => {
  it('shares the repeated values of two sessions and leaves the per-session ones alone', () => {
    const pool = new StringPool();
    const labels = ['ctf.challenge-engine.io/challenge'];
    const a = parsedSession('alice');
    const b = parsedSession('bob');
    const before = JSON.stringify(b);
    shareSessionStrings(a, pool, labels);
    shareSessionStrings(b, pool, labels);
    // Nothing changes in value.
    expect(JSON.stringify(b)).toBe(before);
    // Repeated values are now held once (how many distinct values: one per field, not per session).
    expect(pool.size).toBe(new Set(['ctf.challenge-engine.io/v1alpha1', 'ChallengeSession', 'ctf', 'web', 'user', 'Running', 'Ready', 'True', 'Provisioned', 'session is ready', 'http']).size);
    // Per-session values (names, hashes, hosts, timestamps) never enter the pool.
    for (const v of ['s-alice', 'h-bob', 's-bob.ctf.svc', '2026-12-02T03:24:04Z', 'uid-alice']) {
      const probe = copy(v);
      expect(pool.share(probe)).toBe(probe);
    }
  });

  it('ignores objects without the expected members', () => {
    const pool = new StringPool();
    expect(() => shareSessionStrings({ status: { conditions: 'not a list' } }, pool)).not.toThrow();
    expect(() => shareSessionStrings({}, pool)).not.toThrow();
    expect(pool.size).toBe(0);
  });
});
