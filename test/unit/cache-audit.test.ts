import { describe, expect, it } from 'vitest';
import { CacheAudit } from '../../src/controller/cache-audit.js';

type Obj = { metadata: { name: string; resourceVersion: string } };

/** A cache (what the informer holds) and an apiserver (what a live read returns), both plain maps. */
function world(perRound = 5) {
  const cache = new Map<string, Obj>();
  const live = new Map<string, string>();
  const reads: string[] = [];
  const relists: number[] = [];
  const reported: string[][] = [];
  let failing = false;
  const audit = new CacheAudit<Obj>({
    informer: {
      get: (k: string) => cache.get(k),
      repair: (keys: string[]) => {
        reported.push(keys);
        relists.push(1);
      },
    },
    perRound,
    readLive: async (key) => {
      reads.push(key);
      if (failing) throw new Error('apiserver down');
      return live.get(key) ?? null;
    },
  });
  const put = (k: string, rv: string) => cache.set(k, { metadata: { name: k, resourceVersion: rv } });
  return { cache, live, reads, relists, reported, audit, put, fail: (v: boolean) => (failing = v) };
}

describe('CacheAudit', () => {
  it('leaves a cache that agrees with the apiserver alone', async () => {
    const w = world();
    w.put('ns/a', '5');
    w.live.set('ns/a', '5');
    for (let i = 0; i < 3; i++) expect(await w.audit.round(['ns/a'])).toEqual([]);
    expect(w.relists).toEqual([]);
  });

  it('believes a difference only when the next round still finds the cache behind the same live version', async () => {
    const w = world();
    w.put('ns/a', '5');
    w.live.set('ns/a', '9');
    expect(await w.audit.round(['ns/a'])).toEqual([]);
    expect(w.relists).toEqual([]);
    expect(await w.audit.round(['ns/a'])).toEqual(['ns/a']);
    expect(w.relists).toEqual([1]);
    expect(w.reported).toEqual([['ns/a']]);
  });

  it('does not mistake an event in flight for a lost one', async () => {
    const w = world();
    w.put('ns/a', '5');
    w.live.set('ns/a', '9');
    await w.audit.round(['ns/a']);
    // The watch delivers the event between rounds.
    w.put('ns/a', '9');
    expect(await w.audit.round(['ns/a'])).toEqual([]);
    // A later, again-delivered change is a fresh suspicion, not a confirmation.
    w.live.set('ns/a', '12');
    expect(await w.audit.round(['ns/a'])).toEqual([]);
    w.put('ns/a', '12');
    expect(await w.audit.round(['ns/a'])).toEqual([]);
    expect(w.relists).toEqual([]);
  });

  it('does not confirm an object that keeps changing faster than a round', async () => {
    const w = world();
    w.put('ns/a', '5');
    w.live.set('ns/a', '6');
    await w.audit.round(['ns/a']);
    w.live.set('ns/a', '7');
    expect(await w.audit.round(['ns/a'])).toEqual([]);
    w.live.set('ns/a', '7');
    expect(await w.audit.round(['ns/a'])).toEqual(['ns/a']);
  });

  it('catches a missed delete (gone live, still cached)', async () => {
    const w = world();
    w.put('ns/a', '5');
    await w.audit.round(['ns/a']);
    expect(await w.audit.round(['ns/a'])).toEqual(['ns/a']);
  });

  it('takes a failed live read as no evidence either way', async () => {
    const w = world();
    w.put('ns/a', '5');
    w.live.set('ns/a', '9');
    await w.audit.round(['ns/a']);
    w.fail(true);
    expect(await w.audit.round(['ns/a'])).toEqual([]);
    w.fail(false);
    // The suspicion from before the failure still stands, and is confirmed now.
    expect(await w.audit.round(['ns/a'])).toEqual(['ns/a']);
  });

  it('reads at most perRound objects per round, re-checks suspects first, and visits the others in turn', async () => {
    const w = world(2);
    const keys = ['ns/a', 'ns/b', 'ns/c', 'ns/d', 'ns/e'];
    for (const k of keys) {
      w.put(k, '1');
      w.live.set(k, '1');
    }
    w.live.set('ns/d', '2'); // the one the cache missed
    const seen = new Set<string>();
    let confirmed: string[] = [];
    for (let round = 0; round < 6 && confirmed.length === 0; round++) {
      const before = w.reads.length;
      confirmed = await w.audit.round(keys);
      const read = w.reads.slice(before);
      expect(read.length).toBeLessThanOrEqual(2);
      read.forEach((k) => seen.add(k));
    }
    expect(confirmed).toEqual(['ns/d']);
    // Round robin reached d although a, b, c came first; d was re-read in the round right after.
    const dReads = w.reads.map((k, i) => (k === 'ns/d' ? i : -1)).filter((i) => i >= 0);
    expect(dReads).toHaveLength(2);
    expect(dReads[1]! - dReads[0]!).toBeLessThanOrEqual(2);
    expect([...seen].sort()).toEqual(keys);
  });

  it('forgets suspects that are no longer candidates (the session became Running or was deleted)', async () => {
    const w = world();
    w.put('ns/a', '5');
    w.live.set('ns/a', '9');
    await w.audit.round(['ns/a']);
    await w.audit.round([]);
    // Suspected anew, not confirmed by the old suspicion.
    expect(await w.audit.round(['ns/a'])).toEqual([]);
    expect(await w.audit.round(['ns/a'])).toEqual(['ns/a']);
  });
});
