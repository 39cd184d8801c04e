import { afterEach, describe, expect, it } from 'vitest';
import { PoolController } from '../../../src/controller/pool-controller.js';
import { createMetrics } from '../../../src/metrics.js';
import { claimPatch } from '../../../src/reconcile/pool.js';
import { ANNOTATION_CLAIMED_AT } from '../../../src/api/group.js';
import type { Raw } from '../../../src/read-model/caches.js';
import { memoryCaches, RecordingWriter, silentLog } from '../../support/memory.js';
import { NAMESPACE, webChallenge } from '../reconcile/fixtures.js';

/**
 * The pool controller against in-memory caches and a recording writer (creates show in the cache
 * as a watch would show them): it fills pools, and holds every refill back while instances of any
 * challenge are being claimed, for at most its longest wait.
 */

const QUIET_MS = 200;
const running: PoolController[] = [];

afterEach(async () => {
  for (const c of running.splice(0)) await c.stop();
});

function harness(sizes: Record<string, number>, maxWaitMs: number) {
  const mem = memoryCaches(NAMESPACE);
  const writer = new RecordingWriter();
  writer.onCreated = (obj) => mem.sessions.put(obj as Raw);
  for (const [name, size] of Object.entries(sizes)) {
    const c = webChallenge({ pool: { size } });
    mem.challenges.put({ ...c, metadata: { ...c.metadata, name } });
  }
  const controller = new PoolController({ caches: mem.caches, writer, log: silentLog, metrics: createMetrics(), resyncMs: 60_000, refillQuietMs: QUIET_MS, refillMaxWaitMs: maxWaitMs });
  running.push(controller);
  const creates = (challenge: string) => writer.writes.filter((w) => w.verb === 'create' && (w.body as { spec: { challenge: string } }).spec.challenge === challenge).length;
  let rv = 10_000;
  /** Claims one unclaimed instance of `challenge` in the cache, as a replica's claim would show. */
  const claim = (challenge: string) => {
    const [s] = mem.caches.unclaimedPool(challenge);
    if (!s) throw new Error(`no instance of ${challenge} left to claim`);
    const patch = claimPatch({ user: `u${rv}`, owner: { mode: 'user', user: `u${rv}` } }, new Date(), '2030-01-01T12:00:00Z');
    const claimed = { ...s, metadata: { ...s.metadata, resourceVersion: String(++rv), labels: { ...s.metadata.labels, ...patch.metadata.labels }, annotations: { ...s.metadata.annotations, ...patch.metadata.annotations } } };
    mem.sessions.put(claimed);
    return claimed;
  };
  /** What the controller's publishing write shows: status.claimedAt equal to the claim. */
  const publish = (claimed: ReturnType<typeof claim>) =>
    mem.sessions.put({ ...claimed, metadata: { ...claimed.metadata, resourceVersion: String(++rv) }, status: { ...claimed.status, phase: 'Running', claimedAt: claimed.metadata.annotations[ANNOTATION_CLAIMED_AT] } } as unknown as Raw);
  return { controller, creates, claim, publish };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, ok: () => boolean, ms = 3_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

describe('PoolController refills', () => {
  it('fill every pool, and wait while instances of any challenge are being claimed', async () => {
    const h = harness({ one: 2, two: 20 }, 60_000);
    h.controller.start();
    await until('the pools to fill', () => h.creates('one') === 2 && h.creates('two') === 20);
    h.publish(h.claim('one'));
    // Claims of the other challenge keep coming (each published at once): the refill of the first waits for them to pause.
    const claimsEnd = Date.now() + 800;
    let claimed = 0;
    while (Date.now() < claimsEnd) {
      h.publish(h.claim('two'));
      claimed++;
      await sleep(50);
      expect(h.creates('one')).toBe(2);
    }
    const paused = Date.now();
    await until('the refill after the pause', () => h.creates('one') === 3);
    expect(Date.now() - paused).toBeGreaterThanOrEqual(QUIET_MS - 60);
    await until('the other refill', () => h.creates('two') === 20 + claimed);
  });

  it('wait for claims to be published too, then refill', async () => {
    const h = harness({ one: 2 }, 60_000);
    h.controller.start();
    await until('the pool to fill', () => h.creates('one') === 2);
    const claimed = h.claim('one');
    await sleep(QUIET_MS * 3);
    // Quiet for three times the pause, but the claim is not published yet: no refill.
    expect(h.creates('one')).toBe(2);
    const published = Date.now();
    h.publish(claimed);
    await until('the refill after publishing', () => h.creates('one') === 3);
    expect(Date.now() - published).toBeLessThan(QUIET_MS * 3);
  });

  it('refill in batches anyway when claims never pause for longer than the longest wait', async () => {
    const h = harness({ one: 2, two: 60 }, 500);
    h.controller.start();
    await until('the pools to fill', () => h.creates('one') === 2 && h.creates('two') === 60);
    h.publish(h.claim('one'));
    const started = Date.now();
    while (h.creates('one') === 2) {
      if (Date.now() - started > 3_000) throw new Error('the refill never came while claims went on');
      h.publish(h.claim('two'));
      await sleep(40);
    }
    // Not before the longest wait, while claims were still coming.
    expect(Date.now() - started).toBeGreaterThanOrEqual(500 - 60);
  });
});
