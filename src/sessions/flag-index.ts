import type { ChallengeSession } from '../api/session.js';
import type { Caches } from '../read-model/caches.js';
import type { LiveReads } from '../kube/live-reads.js';
import { effectiveRuntime, type ChallengeRuntime } from '../reconcile/runtime.js';
import { flagForSession } from '../flags/derive.js';

/**
 * Maps a dynamic flag back to the session it belongs to, so a wrong submission can be checked
 * for sharing with one lookup instead of one HMAC per session. It is a cache derived from the
 * session cache and the flag key (rebuilt lazily per challenge when sessions change), never a
 * source of truth. Static flag values are cached for a few seconds.
 */
export class FlagIndex {
  private readonly byChallenge = new Map<string, Map<string, string>>();
  /**
   * Each cached session object's dynamic flag, derived once: an HMAC per check was most of what a
   * flag check cost beyond HTTP. Keyed weakly by the cached object, which the cache replaces on
   * every change, so an entry never outlives the version it was derived from.
   */
  private readonly derived = new WeakMap<ChallengeSession, { format: string; length: number; flag: string | undefined }>();
  private readonly stale = new Set<string>();
  private readonly statics = new Map<string, { value: string | undefined; until: number }>();

  constructor(
    private readonly caches: Caches,
    private readonly key: Buffer,
  ) {
    const invalidate = (obj: { spec?: { challenge?: unknown }; metadata?: { name?: string } }) => {
      const c = obj.spec?.challenge;
      if (typeof c === 'string') this.stale.add(c);
    };
    caches.sessions.on('add', invalidate);
    caches.sessions.on('delete', invalidate);
    caches.challenges.on('update', (obj) => {
      if (obj.metadata?.name) this.stale.add(obj.metadata.name);
    });
  }

  ownerOf(challenge: string, flag: string): ChallengeSession | undefined {
    let index = this.byChallenge.get(challenge);
    if (!index || this.stale.has(challenge)) {
      index = this.build(challenge);
      this.byChallenge.set(challenge, index);
      this.stale.delete(challenge);
    }
    const name = index.get(flag);
    if (!name) return undefined;
    const p = this.caches.session(name);
    return p?.ok ? p.value : undefined;
  }

  /** The session's dynamic flag under `runtime` (undefined for a static flag), as flagForSession. */
  dynamicFlag(session: ChallengeSession, runtime: Pick<ChallengeRuntime, 'flag'>): string | undefined {
    const policy = runtime.flag.dynamic;
    if (!policy) return undefined;
    const hit = this.derived.get(session);
    if (hit && hit.format === policy.format && hit.length === policy.length) return hit.flag;
    const flag = flagForSession(this.key, session, runtime);
    this.derived.set(session, { format: policy.format, length: policy.length, flag });
    return flag;
  }

  private build(challenge: string): Map<string, string> {
    const index = new Map<string, string>();
    const c = this.caches.challenge(challenge);
    const chal = c?.ok ? c.value : undefined;
    for (const s of this.caches.sessionsOfChallenge(challenge)) {
      if (!s.metadata.uid) continue;
      const runtime = effectiveRuntime(s, chal)?.runtime;
      const flag = runtime && this.dynamicFlag(s, runtime);
      if (flag) index.set(flag, s.metadata.name);
    }
    return index;
  }

  async staticFlag(live: LiveReads, name: string, key: string): Promise<string | undefined> {
    const id = `${name}/${key}`;
    const hit = this.statics.get(id);
    if (hit && hit.until > Date.now()) return hit.value;
    let value: string | undefined;
    try {
      value = (await live.secretValue(name, key))?.trim() || undefined;
    } catch {
      value = undefined;
    }
    this.statics.set(id, { value, until: Date.now() + 10_000 });
    return value;
  }
}
