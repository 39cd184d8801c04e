import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ANNOTATION_REQUESTED_AT } from '../../src/api/group.js';
import type { ChallengeSession } from '../../src/api/session.js';
import { installSamples, listSessions } from '../support/engine.js';
import { httpJson } from '../support/faults.js';
import { useCluster, waitUntil } from '../support/kube.js';
import { ApiEngine, sleep, token } from './helpers.js';

/**
 * The first-come queue across kill -9 of the engine (API and controller in one process): a
 * burst of three times CTF_MAX_INSTANCES spawns, the engine killed in the middle of the burst and
 * again while the queue is being served. Every spawn is answered at once (those over the cap with
 * a position), every session is served exactly once and in request order, none is lost, and
 * never more than the cap are admitted at a time.
 */
const cluster = useCluster(import.meta.filename);
const CAP = 4;
const BURST = 3 * CAP;
const CONCURRENCY = 4;
let engine: ApiEngine | undefined;

beforeAll(async () => {
  await installSamples(cluster.kube, cluster.namespace);
});

afterAll(async () => {
  await engine?.kill();
});

interface Answer {
  user: string;
  status: number;
  ms: number;
  attempts: number;
  id?: string;
  position?: number;
}

const admittedAt = (s: ChallengeSession) => (s.status)?.admittedAt;
const requestedAt = (s: ChallengeSession) => Date.parse(s.metadata.annotations?.[ANNOTATION_REQUESTED_AT] ?? '');
const live = async () => (await listSessions(cluster.kube, cluster.namespace).catch(() => [] as ChallengeSession[])).filter((s) => !s.metadata.deletionTimestamp);

describe('a burst three times the cap across SIGKILLs of the engine', () => {
  it('answers every spawn at once with a position, serves all in order and loses none', async () => {
    engine = await ApiEngine.create(cluster, { CTF_MAX_INSTANCES: String(CAP), CTF_QUEUE_TIMEOUT: '10m' });
    await engine.start();
    const users = Array.from({ length: BURST }, (_, i) => `qk-${String(i).padStart(2, '0')}`);
    const tokens = new Map(await Promise.all(users.map(async (u) => [u, await token(u)] as const)));

    // Admitted (or Running) sessions as the apiserver sees them, sampled throughout.
    let maxAdmitted = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        maxAdmitted = Math.max(maxAdmitted, (await live()).filter((s) => admittedAt(s) || s.status?.phase === 'Running').length);
        await sleep(100);
      }
    })();

    const answers: Answer[] = [];
    let next = 0;
    const worker = async () => {
      for (let user = users[next++]; user; user = users[next++]) {
        for (let attempt = 1; ; attempt++) {
          const t0 = Date.now();
          const r = await httpJson(engine?.base ?? '', 'POST', '/api/challenges', tokens.get(user), { challenge: 'web-notes' }, 5_000).catch(() => undefined);
          if (!r || r.status === 503) {
            await sleep(100);
            continue;
          }
          const session = (r.body as { session?: { id?: string; queue?: { position: number } } }).session;
          answers.push({ user, status: r.status, ms: Date.now() - t0, attempts: attempt, id: session?.id, position: session?.queue?.position });
          break;
        }
        await sleep(20);
      }
    };
    const burst = Promise.all(Array.from({ length: CONCURRENCY }, worker));
    await waitUntil('half the burst answered', () => answers.length >= BURST / 2, 30_000, 10);
    await engine.kill('SIGKILL');
    await engine.start();
    await burst;

    expect(answers.map((a) => a.status).every((s) => s === 201 || s === 200)).toBe(true);
    expect(new Set(answers.map((a) => a.id)).size).toBe(BURST);
    // At once: a queued spawn waits for nothing (retries after the kill aside).
    for (const a of answers.filter((x) => x.attempts === 1)) expect(a.ms, `answer to ${a.user}`).toBeLessThan(2_000);

    const all = await waitUntil(`${CAP} admitted, ${BURST - CAP} Queued`, async () => {
      const s = await live();
      return s.length === BURST && s.filter((x) => admittedAt(x)).length === CAP && s.filter((x) => x.status?.phase === 'Queued').length === BURST - CAP ? s : undefined;
    }, 60_000).catch(async (err: unknown) => {
      const s = await live();
      throw new Error(`${String(err)}: ${JSON.stringify(s.map((x) => [x.metadata.name, x.status?.phase, admittedAt(x), x.status?.conditions?.find((c) => c.type === 'Ready')?.reason]))}\n${engine?.logLines().filter((l) => (l.level as number) >= 40).slice(-20).map((l) => JSON.stringify(l)).join('\n')}`);
    });
    const requestOrder = [...all].sort((a, b) => requestedAt(a) - requestedAt(b) || a.metadata.name.localeCompare(b.metadata.name)).map((s) => s.metadata.name);
    // The ones admitted at once are the first CAP requested; the others were answered with a place.
    expect(all.filter((s) => admittedAt(s)).map((s) => s.metadata.name).sort()).toEqual(requestOrder.slice(0, CAP).sort());
    const queuedIds = new Set(requestOrder.slice(CAP));
    for (const a of answers.filter((x) => queuedIds.has(x.id ?? '') && x.attempts === 1)) expect(a.position, `position given to ${a.user}`).toBeGreaterThanOrEqual(1);

    // Serve the queue: stop the earliest admitted session, one at a time; kill -9 half way.
    const served: string[] = [];
    const byId = new Map(all.map((s) => [s.metadata.name, s]));
    const stopped = new Set<string>();
    for (let i = 0; i < BURST - CAP; i++) {
      if (i === Math.floor((BURST - CAP) / 2)) {
        await engine.kill('SIGKILL');
        await engine.start();
      }
      const now = await live();
      const running = now.filter((s) => admittedAt(s)).sort((a, b) => Date.parse(admittedAt(a)!) - Date.parse(admittedAt(b)!));
      const victim = running[0]!;
      const owner = victim.spec.user ?? '';
      const del = await httpJson(engine.base, 'DELETE', `/api/challenges/${victim.metadata.name}`, tokens.get(owner));
      expect(del.status).toBe(204);
      stopped.add(victim.metadata.name);
      const admitted = await waitUntil(`admission ${i + 1}`, async () => {
        const fresh = (await live()).filter((s) => admittedAt(s) && !stopped.has(s.metadata.name) && !served.includes(s.metadata.name) && queuedIds.has(s.metadata.name));
        return fresh.length > 0 ? fresh : undefined;
      }, 30_000, 50);
      expect(admitted).toHaveLength(1);
      served.push(admitted[0]!.metadata.name);
    }
    sampling = false;
    await sampler;

    // Served exactly in request order, nobody lost, never over the cap.
    expect(served).toEqual(requestOrder.slice(CAP));
    expect((await live()).map((s) => s.metadata.name).sort()).toEqual(requestOrder.slice(BURST - CAP).sort());
    expect(maxAdmitted).toBeLessThanOrEqual(CAP);
    expect([...byId.keys()].sort()).toEqual([...requestOrder].sort());
    console.log(`[reliability] queue-kill: ${BURST} spawns over a cap of ${CAP}, 2 kills; answers p100 ${Math.max(...answers.filter((a) => a.attempts === 1).map((a) => a.ms))} ms (first attempts); served ${served.length} in order; max admitted ${maxAdmitted}`);
  });
});
