import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installSamples, listSessions } from '../support/engine.js';
import { httpJson } from '../support/faults.js';
import { useCluster, waitUntil } from '../support/kube.js';
import { ApiEngine, leakReport, phaseOf, prng, sleep, token } from './helpers.js';

/**
 * kill -9 of the engine (API and controller in one process) at random moments during a burst
 * of 200 spawns over HTTP; clients retry against the restarted engine. Nothing may be lost,
 * duplicated, orphaned, or exceed the per-user limit.
 */
const cluster = useCluster(import.meta.filename);
const LIMIT = 3;
const USERS = 50;
const KILLS = 3;
const SEED = 20_240_611;
const CONCURRENCY = 10;
let engine: ApiEngine | undefined;

beforeAll(async () => {
  await installSamples(cluster.kube, cluster.namespace);
  await cluster.kubectl('create', 'secret', 'generic', 'crypto-baby-rsa-flag', '--from-literal=flag=CTF{static_flag_for_tests}');
});

afterAll(async () => {
  await engine?.kill();
});

interface Outcome {
  user: string;
  challenge: string;
  status: number;
  id?: string;
  attempts: number;
}

describe('engine killed with SIGKILL during a burst of spawns', () => {
  it('loses, duplicates and orphans nothing, and never exceeds the per-user limit', async () => {
    const random = prng(SEED);
    const challenges = ['web-notes', 'pwn-echo', 'sql-two-tier', 'crypto-baby-rsa'];
    const jobs = Array.from({ length: USERS }, (_, u) => challenges.map((challenge) => ({ user: `burst-${u}`, challenge }))).flat();
    for (let i = jobs.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [jobs[i], jobs[j]] = [jobs[j] as (typeof jobs)[number], jobs[i] as (typeof jobs)[number]];
    }
    expect(jobs).toHaveLength(200);
    const tokens = new Map(await Promise.all([...new Set(jobs.map((j) => j.user))].map(async (u) => [u, await token(u)] as const)));

    engine = await ApiEngine.create(cluster, { CTF_MAX_SESSIONS_PER_USER: String(LIMIT) });
    await engine.start();

    // Per-user counts as the apiserver sees them, sampled throughout.
    let maxPerUser = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const counts = new Map<string, number>();
        for (const s of await listSessions(cluster.kube, cluster.namespace).catch(() => [])) counts.set(s.spec.user ?? '', (counts.get(s.spec.user ?? '') ?? 0) + 1);
        maxPerUser = Math.max(maxPerUser, ...counts.values(), 0);
        await sleep(150);
      }
    })();

    const outcomes: Outcome[] = [];
    let failedAttempts = 0;
    let next = 0;
    const t0 = Date.now();
    const worker = async () => {
      for (let job = jobs[next++]; job; job = jobs[next++]) {
        const tok = tokens.get(job.user) ?? '';
        for (let attempt = 1; ; attempt++) {
          if (Date.now() - t0 > 120_000) throw new Error(`spawn of ${job.challenge} for ${job.user} did not complete in 120s`);
          const r = await httpJson(engine?.base ?? '', 'POST', '/api/challenges', tok, { challenge: job.challenge }, 5_000).catch(() => undefined);
          if (!r || r.status === 503) {
            failedAttempts++;
            await sleep(100 + random() * 200);
            continue;
          }
          outcomes.push({ ...job, status: r.status, attempts: attempt, id: (r.body as { session?: { id?: string } } | undefined)?.session?.id });
          break;
        }
      }
    };
    const burst = Promise.all(Array.from({ length: CONCURRENCY }, worker));
    let burstDone = false;
    void burst.then(() => (burstDone = true), () => (burstDone = true));

    const kills: { afterMs: number; completedBefore: number; restartMs: number }[] = [];
    for (let k = 0; k < KILLS; k++) {
      await sleep(150 + random() * 700);
      const completedBefore = outcomes.length;
      const afterMs = Date.now() - t0;
      const burstRunning = !burstDone;
      await engine.kill('SIGKILL');
      const restartMs = await engine.start();
      kills.push({ afterMs, completedBefore, restartMs });
      expect(burstRunning, `kill ${k + 1} happened while spawns were still outstanding`).toBe(true);
    }
    await burst;
    const burstMs = Date.now() - t0;

    const converged = await waitUntil('every session Running', async () => {
      const sessions = await listSessions(cluster.kube, cluster.namespace);
      return sessions.length > 0 && sessions.every((s) => phaseOf(s) === 'Running') ? sessions : undefined;
    }, 150_000, 500);
    const convergeMs = Date.now() - t0;
    sampling = false;
    await sampler;

    // Every spawn got a final answer: a session (201/200) or the per-user limit (429).
    expect(outcomes).toHaveLength(jobs.length);
    expect(outcomes.filter((o) => ![200, 201, 429].includes(o.status))).toEqual([]);
    expect(failedAttempts, 'spawns that hit the dead engine and were retried').toBeGreaterThan(0);

    // No session lost: every 200/201 names a live session of that user and challenge.
    const byId = new Map(converged.map((s) => [s.metadata.name, s]));
    for (const o of outcomes.filter((x) => x.status !== 429)) {
      const s = o.id ? byId.get(o.id) : undefined;
      expect(s, `session ${o.id} of ${o.user}/${o.challenge}`).toBeDefined();
      expect(s?.spec).toMatchObject({ user: o.user, challenge: o.challenge });
    }

    // The limit: exactly LIMIT sessions per user, one refusal each, never more at any sample.
    for (let u = 0; u < USERS; u++) {
      const mine = outcomes.filter((o) => o.user === `burst-${u}`);
      expect(mine.filter((o) => o.status === 429), `refusals of burst-${u}`).toHaveLength(challenges.length - LIMIT);
      expect(new Set(mine.filter((o) => o.status !== 429).map((o) => o.id)).size).toBe(LIMIT);
    }
    expect(converged).toHaveLength(USERS * LIMIT);
    expect(maxPerUser).toBeLessThanOrEqual(LIMIT);

    // Nothing duplicated or orphaned; every session has its four children.
    const leaks = await leakReport(cluster.kube, cluster.namespace);
    expect(leaks.orphans).toEqual([]);
    expect(leaks.duplicatePods).toEqual([]);
    expect(leaks.incomplete).toEqual([]);
    expect(leaks.children).toBe(USERS * LIMIT * 4);

    console.log(
      `[reliability] engine-kill: ${jobs.length} spawns, ${KILLS} kills at ${kills.map((k) => `${k.afterMs}ms (after ${k.completedBefore} answers)`).join(', ')}; ` +
        `restart to ready ${kills.map((k) => k.restartMs).join('/')} ms; ${failedAttempts} failed attempts retried; ` +
        `burst ${burstMs} ms; all ${converged.length} sessions Running after ${convergeMs} ms; max per user ${maxPerUser}`,
    );
  });
});
