import type { Informer, ObjectMetaLike } from '../kube/informer.js';

/**
 * Catches a cache that missed a watch event. Watches resume from the last resource version
 * seen, so an event the apiserver never delivered (its watch cache can lose events around an
 * etcd restart, kubernetes/kubernetes#123072) is missed for good: the object is not written
 * again, and nothing else tells the cache. For the objects the caller suspects (children of
 * sessions that should have made progress by now), the audit reads a few of them live per round
 * and compares resource versions. A difference is only believed when the next round sees the
 * cache still behind the live version read a round earlier, so an event that is merely in flight
 * is not mistaken for a lost one. A confirmed loss relists the whole cache, which repairs it and
 * emits the updates that re-queue the affected sessions.
 */

/** The live object's resourceVersion, or null when the apiserver says it does not exist. */
export type ReadLive = (key: string) => Promise<string | null>;

export interface CacheAuditOptions<T extends ObjectMetaLike> {
  /** `repair` reports the keys whose cached copy stayed behind the apiserver and relists. */
  informer: Pick<Informer<T>, 'get' | 'repair'>;
  readLive: ReadLive;
  /** Live reads per round at most. */
  perRound: number;
}

interface Suspect {
  /** Live resourceVersion (null: gone) read in the previous round, while the cache differed. */
  live: string | null;
  /** When it was read. */
  at: number;
}

export class CacheAudit<T extends ObjectMetaLike> {
  private suspects = new Map<string, Suspect>();
  /** Candidates are visited in turn, so that many legitimately slow ones do not hide the rest. */
  private cursor = '';

  constructor(private readonly o: CacheAuditOptions<T>) {}

  /**
   * One round over `candidates` (keys in the informer's store format). Returns the keys
   * confirmed stale; they have then been handed to the informer's `repair`.
   */
  async round(candidates: string[]): Promise<string[]> {
    const wanted = new Set(candidates);
    for (const key of this.suspects.keys()) if (!wanted.has(key)) this.suspects.delete(key);
    const picked = [...this.suspects.keys()];
    const rest = [...wanted].filter((k) => !this.suspects.has(k)).sort();
    const start = rest.findIndex((k) => k > this.cursor);
    const rotated = start < 0 ? rest : [...rest.slice(start), ...rest.slice(0, start)];
    for (const key of rotated) {
      if (picked.length >= this.o.perRound) break;
      picked.push(key);
      this.cursor = key;
    }

    const stale: string[] = [];
    let since = Infinity;
    const now = Date.now();
    await Promise.all(
      picked.map(async (key) => {
        let live: string | null;
        try {
          live = await this.o.readLive(key);
        } catch {
          return; // The apiserver is unwell: no evidence either way.
        }
        const cached = this.o.informer.get(key)?.metadata?.resourceVersion ?? null;
        if (cached === live) {
          this.suspects.delete(key);
          return;
        }
        const earlier = this.suspects.get(key);
        if (earlier && earlier.live === live) {
          stale.push(key);
          since = Math.min(since, earlier.at);
        } else this.suspects.set(key, { live, at: now });
      }),
    );
    if (stale.length > 0) {
      this.suspects.clear();
      this.o.informer.repair(stale.sort(), since);
    }
    return stale;
  }
}
