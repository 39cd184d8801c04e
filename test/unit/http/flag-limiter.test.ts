import { describe, expect, it } from 'vitest';
import { SlidingWindowLimiter, wrongFlagKeys } from '../../../src/http/flag-limiter.js';

function clocked() {
  const clock = { t: 1_000_000 };
  return { clock, limiter: new SlidingWindowLimiter(60_000, () => clock.t) };
}

const one = (limit: number) => [{ key: 'k', limit }];

describe('SlidingWindowLimiter', () => {
  it('allows `limit` reservations per window and then says how long to wait', () => {
    const { clock, limiter } = clocked();
    for (let i = 0; i < 3; i++) {
      expect(limiter.reserve(one(3)).ok).toBe(true);
      clock.t += 10_000;
    }
    // Hits at 0 s, 10 s, 20 s; now 30 s: the first leaves the window at 60 s.
    expect(limiter.reserve(one(3))).toEqual({ ok: false, retryAfterSeconds: 30 });
    clock.t += 29_999;
    expect(limiter.reserve(one(3)).ok).toBe(false);
    clock.t += 1;
    expect(limiter.reserve(one(3)).ok).toBe(true);
  });

  it('slides: a burst at the end of one minute still counts at the start of the next', () => {
    const { clock, limiter } = clocked();
    clock.t += 59_000;
    for (let i = 0; i < 2; i++) expect(limiter.reserve(one(2)).ok).toBe(true);
    clock.t += 2_000;
    expect(limiter.reserve(one(2))).toEqual({ ok: false, retryAfterSeconds: 58 });
  });

  it('gives a released reservation back', () => {
    const { limiter } = clocked();
    const r = limiter.reserve(one(1));
    expect(limiter.reserve(one(1)).ok).toBe(false);
    if (r.ok) {
      r.release();
      r.release();
    }
    expect(limiter.reserve(one(1)).ok).toBe(true);
    expect(limiter.reserve(one(1)).ok).toBe(false);
  });

  it('reserves under every key or none', () => {
    const { limiter } = clocked();
    expect(limiter.reserve([{ key: 'a', limit: 1 }]).ok).toBe(true);
    expect(limiter.reserve([{ key: 'b', limit: 5 }, { key: 'a', limit: 1 }]).ok).toBe(false);
    // The refused reservation took nothing from b.
    for (let i = 0; i < 5; i++) expect(limiter.reserve([{ key: 'b', limit: 5 }]).ok).toBe(true);
    expect(limiter.reserve([{ key: 'b', limit: 5 }]).ok).toBe(false);
  });

  it('forgets keys that have been quiet for a window', () => {
    const { clock, limiter } = clocked();
    for (let i = 0; i < 100; i++) limiter.reserve([{ key: `k${i}`, limit: 1 }]);
    expect(limiter.size).toBe(100);
    clock.t += 61_000;
    limiter.reserve([{ key: 'fresh', limit: 1 }]);
    expect(limiter.size).toBe(1);
  });

  it('keys wrong flags by user and by user and scope', () => {
    const keys = wrongFlagKeys({ wrongFlagsPerMinutePerUser: 30, wrongFlagsPerMinutePerSession: 10 }, 'alice', 'web-notes');
    expect(keys.map((k) => k.limit)).toEqual([30, 10]);
    expect(new Set(keys.map((k) => k.key)).size).toBe(2);
    expect(wrongFlagKeys({ wrongFlagsPerMinutePerUser: 1, wrongFlagsPerMinutePerSession: 1 }, 'bob', 'web-notes')[1]?.key).not.toBe(keys[1]?.key);
  });
});
