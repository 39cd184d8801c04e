import { describe, expect, it } from 'vitest';
import { WorkQueue } from '../../src/controller/workqueue.js';

const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));

describe('WorkQueue', () => {
  it('de-duplicates keys that are queued and not yet processed', async () => {
    const seen: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const q = new WorkQueue(
      async (k) => {
        seen.push(k);
        if (k === 'block') await gate;
      },
      { concurrency: 1 },
    );
    q.add('block');
    for (const k of ['a', 'b', 'a', 'b', 'a']) q.add(k);
    expect(q.length).toBe(2);
    release();
    await q.drained();
    expect(seen).toEqual(['block', 'a', 'b']);
  });

  it('never runs one key twice at once, and reruns it once if it was added while running', async () => {
    let running = 0;
    let maxRunning = 0;
    let runs = 0;
    const q = new WorkQueue(
      async () => {
        running++;
        runs++;
        maxRunning = Math.max(maxRunning, running);
        await tick(20);
        running--;
      },
      { concurrency: 4 },
    );
    q.add('k');
    await tick(5);
    for (let i = 0; i < 10; i++) q.add('k');
    await tick(5);
    await q.drained();
    expect(maxRunning).toBe(1);
    expect(runs).toBe(2);
  });

  it('bounds concurrency across keys', async () => {
    let running = 0;
    let maxRunning = 0;
    const q = new WorkQueue(
      async () => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        await tick(10);
        running--;
      },
      { concurrency: 3 },
    );
    for (let i = 0; i < 20; i++) q.add(`k${i}`);
    await q.drained();
    expect(maxRunning).toBe(3);
  });

  it('retries failures with exponential backoff and reports each retry', async () => {
    const times: number[] = [];
    const delays: number[] = [];
    const q = new WorkQueue(
      async () => {
        times.push(Date.now());
        if (times.length < 4) throw new Error('transient');
      },
      { concurrency: 1, baseDelayMs: 20, maxDelayMs: 1000, onError: (_k, _e, d) => delays.push(d) },
    );
    q.add('k');
    await new Promise<void>((r) => {
      const t = setInterval(() => {
        if (times.length >= 4) {
          clearInterval(t);
          r();
        }
      }, 5);
    });
    expect(delays).toEqual([20, 40, 80]);
    const gaps = times.slice(1).map((t, i) => t - (times[i] ?? 0));
    gaps.forEach((g, i) => expect(g).toBeGreaterThanOrEqual((delays[i] ?? 0) - 5));
  });

  it('keeps the earliest of several delayed adds of one key', async () => {
    const seen: number[] = [];
    const q = new WorkQueue(async () => void seen.push(Date.now()), { concurrency: 1 });
    const t0 = Date.now();
    q.addAfter('k', 200);
    q.addAfter('k', 30);
    q.addAfter('k', 500);
    expect(q.pendingDelayed('k')).toBeLessThanOrEqual(t0 + 40);
    await tick(120);
    expect(seen).toHaveLength(1);
    expect((seen[0] ?? 0) - t0).toBeLessThan(100);
    await q.shutdown();
  });

  it('requeues after the delay a reconcile asks for', async () => {
    let runs = 0;
    const q = new WorkQueue(async () => (++runs === 1 ? { requeueAfterMs: 30 } : undefined), { concurrency: 1 });
    q.add('k');
    await tick(100);
    expect(runs).toBe(2);
  });

  it('stops taking work at shutdown and waits for in-flight work', async () => {
    let finished = false;
    const q = new WorkQueue(async () => {
      await tick(30);
      finished = true;
    }, { concurrency: 1 });
    q.add('k');
    await tick(1);
    await q.shutdown();
    expect(finished).toBe(true);
    q.add('later');
    expect(q.length).toBe(0);
  });

  it('takes background keys only when no other key waits, and brings one forward when it stops being background', async () => {
    const seen: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const background = new Set(['spare-1', 'spare-2', 'spare-3']);
    const q = new WorkQueue(
      async (k) => {
        seen.push(k);
        if (k === 'block') await gate;
      },
      { concurrency: 1, background: (k) => background.has(k) },
    );
    q.add('block');
    q.add('spare-1');
    q.add('spare-2');
    q.add('spare-3');
    q.add('player-a');
    // spare-3 was claimed while it waited: the next add of it puts it with the players.
    background.delete('spare-3');
    q.add('spare-3');
    q.add('player-b');
    expect(q.length).toBe(5);
    release();
    await q.drained();
    expect(seen).toEqual(['block', 'player-a', 'spare-3', 'player-b', 'spare-1', 'spare-2']);
  });
});
