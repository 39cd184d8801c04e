/**
 * Limits WRONG flag submissions so flags cannot be brute-forced. Each key keeps a sliding-window
 * log of at most `limit` timestamps, so memory is bounded per key and a key that has been quiet
 * for a window is dropped.
 *
 * An attempt is reserved before the service judges it and given back when it turns out correct
 * (or the service failed), so a blocked caller cannot probe at all and concurrent requests cannot
 * overshoot the limit.
 *
 * The log is in memory and per replica: a client spread over N replicas gets at most N times the
 * budget, which still bounds a brute force, and losing it on restart only resets one window.
 */

export interface WrongFlagLimits {
  wrongFlagsPerMinutePerUser: number;
  wrongFlagsPerMinutePerSession: number;
}

export const DEFAULT_WRONG_FLAG_LIMITS: WrongFlagLimits = { wrongFlagsPerMinutePerUser: 30, wrongFlagsPerMinutePerSession: 10 };

export interface LimitKey {
  key: string;
  limit: number;
}

export type Reservation = { ok: true; release(): void } | { ok: false; retryAfterSeconds: number };

export class SlidingWindowLimiter {
  private readonly log = new Map<string, number[]>();
  private lastSweep: number;

  constructor(
    private readonly windowMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {
    this.lastSweep = now();
  }

  /** Reserves one attempt under every key, or says how long until all of them have room. */
  reserve(keys: LimitKey[]): Reservation {
    const now = this.now();
    this.sweep(now);
    let waitMs = 0;
    for (const { key, limit } of keys) {
      const hits = this.prune(key, now);
      if (hits.length >= limit) {
        // The (length - limit + 1)-th oldest hit must leave the window before there is room.
        const freeAt = (hits[hits.length - limit] ?? now) + this.windowMs;
        waitMs = Math.max(waitMs, freeAt - now);
      }
    }
    if (waitMs > 0) return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil(waitMs / 1000)) };
    for (const { key } of keys) {
      const hits = this.log.get(key) ?? [];
      hits.push(now);
      this.log.set(key, hits);
    }
    let released = false;
    return {
      ok: true,
      release: () => {
        if (released) return;
        released = true;
        for (const { key } of keys) {
          const hits = this.log.get(key);
          const i = hits?.lastIndexOf(now) ?? -1;
          if (hits && i >= 0) hits.splice(i, 1);
          if (hits?.length === 0) this.log.delete(key);
        }
      },
    };
  }

  /** Number of keys held; for tests and debugging. */
  get size(): number {
    return this.log.size;
  }

  private prune(key: string, now: number): number[] {
    const hits = this.log.get(key);
    if (!hits) return [];
    const cutoff = now - this.windowMs;
    let drop = 0;
    while (drop < hits.length && (hits[drop] ?? 0) <= cutoff) drop++;
    if (drop > 0) hits.splice(0, drop);
    if (hits.length === 0) this.log.delete(key);
    return hits;
  }

  private sweep(now: number): void {
    if (now - this.lastSweep < this.windowMs) return;
    this.lastSweep = now;
    for (const key of [...this.log.keys()]) this.prune(key, now);
  }
}

/** The keys a wrong flag counts against: the user, and the user's attempts at one challenge or session. */
export function wrongFlagKeys(limits: WrongFlagLimits, user: string, scope: string): LimitKey[] {
  return [
    { key: `user\u0000${user}`, limit: limits.wrongFlagsPerMinutePerUser },
    { key: `scope\u0000${user}\u0000${scope}`, limit: limits.wrongFlagsPerMinutePerSession },
  ];
}
