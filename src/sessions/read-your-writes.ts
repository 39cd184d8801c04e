import { EventEmitter } from 'node:events';
import type { ChallengeSession } from '../api/session.js';
import type { Caches } from '../read-model/caches.js';

/**
 * Waits on this replica's session cache: the one way the player domain waits for a write to show
 * (read-your-writes) or for a session to settle (long polling). Woken by the cache's events for
 * that one session name only, so a burst of events costs each waiter nothing it does not watch.
 */
export class SessionWaits {
  private readonly changes = new EventEmitter();

  constructor(private readonly caches: Caches) {
    this.changes.setMaxListeners(0);
    const notify = (obj: { metadata?: { name?: string } }) => {
      if (obj.metadata?.name) this.changes.emit(obj.metadata.name);
    };
    caches.sessions.on('add', notify);
    caches.sessions.on('update', notify);
    caches.sessions.on('delete', notify);
  }

  /** The cached session of that name that parses, if any. */
  cached(name: string): ChallengeSession | undefined {
    const p = this.caches.session(name);
    return p?.ok ? p.value : undefined;
  }

  /**
   * Resolves once the cached session `name` (undefined when absent) satisfies `seen`, after
   * `timeoutMs`, or when `signal` aborts; resolves to whether `seen` held.
   * `known`: the apiserver is known to hold what is awaited (this replica wrote or just read it),
   * so a timeout makes the cache suspect itself (Caches.suspectBehind); a player's guess at an id
   * never does.
   */
  until(name: string, seen: (s: ChallengeSession | undefined) => boolean, timeoutMs: number, opts: { known?: boolean; signal?: AbortSignal } = {}): Promise<boolean> {
    const check = () => seen(this.cached(name));
    if (check()) return Promise.resolve(true);
    if (timeoutMs <= 0 || opts.signal?.aborted) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.changes.off(name, onChange);
        opts.signal?.removeEventListener('abort', onAbort);
        resolve(ok);
      };
      const onChange = () => {
        if (check()) done(true);
      };
      const onAbort = () => done(false);
      const timer = setTimeout(() => {
        done(false);
        if (opts.known) this.caches.suspectBehind(name, check);
      }, timeoutMs);
      this.changes.on(name, onChange);
      opts.signal?.addEventListener('abort', onAbort);
    });
  }

  /**
   * Resolves once `seen` holds for every session `listed()` returns, after `timeoutMs`, or when
   * `signal` aborts; resolves to whether it held. The list is taken again after each round, so a
   * session that joins it meanwhile is waited for too, within the same deadline. A session's
   * round also ends when it is gone or replaced (another uid under its name).
   */
  async untilEach(listed: () => ChallengeSession[], seen: (s: ChallengeSession) => boolean, timeoutMs: number, opts: { signal?: AbortSignal } = {}): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const waiting = listed().filter((s) => !seen(s));
      if (waiting.length === 0) return true;
      const left = deadline - Date.now();
      if (left <= 0 || opts.signal?.aborted) return false;
      const rounds = waiting.map(({ metadata: { name, uid } }) => this.until(name, (c) => c === undefined || c.metadata.uid !== uid || seen(c), left, opts));
      // A round ends only on a change of the cache, so the next one never sees the same state.
      if (!(await Promise.all(rounds)).every(Boolean)) return false;
    }
  }

  /** Read-your-writes after a write to session `uid`: until it is gone, replaced, or `shows` holds. */
  async untilWritten(name: string, uid: string | undefined, shows: (s: ChallengeSession) => boolean): Promise<void> {
    await this.until(name, (c) => c === undefined || c.metadata.uid !== uid || shows(c), READ_YOUR_WRITES_MS, { known: true });
  }
}

/** How long a request waits for its own write to show in this replica's cache. */
export const READ_YOUR_WRITES_MS = 2_000;
