import { ANNOTATION_REQUESTED_AT, GROUP, SESSION_PLURAL, VERSION } from '../../src/api/group.js';
import type { ChallengeSession } from '../../src/api/session.js';
import { cleanupNamespace, engineFor, issueTokens, pick, prepareNamespace, type BenchContext } from '../lib/context.js';
import type { EngineProcess } from '../lib/engine-process.js';
import type { ScenarioResult } from '../lib/report.js';
import { distribution, figure, type Distribution } from '../lib/stats.js';

/**
 * The first-come queue. A burst of three times CTF_MAX_INSTANCES spawns by distinct players, the
 * engine killed with SIGKILL half way through the burst (clients retry against the restarted
 * one, as the player page does); then the queue is served by stopping the earliest admitted
 * session one at a time. Measured: how fast each spawn is answered (with its queue position when
 * over the cap), the order sessions are admitted in against the order they were requested in
 * (inversions: pairs served the other way round), and sessions lost.
 */

interface Answer {
  user: string;
  status: number;
  ms: number;
  attempts: number;
  id?: string;
  position?: number;
}

interface QueueRun {
  cap: number;
  spawns: number;
  answerMs: Distribution;
  /** Spawns answered over the cap without a queue position. */
  withoutPosition: number;
  /** Pairs admitted in the opposite order of their requests. */
  inversions: number;
  lost: number;
  /** From a stop to the next session's admission. */
  handoverMs: Distribution;
  restartMs: number;
  maxAdmitted: number;
}

const CHALLENGE = 'web-notes';

export async function queueScenario(ctx: BenchContext): Promise<ScenarioResult> {
  const cap = pick(ctx, 20, 3);
  const runs: QueueRun[] = [];
  for (let run = 0; run < ctx.runs; run++) {
    const r = await queueRun(ctx, run, cap);
    runs.push(r);
    ctx.log(`  run ${run + 1}/${ctx.runs}: ${r.spawns} spawns over a cap of ${cap}; answers p50 ${r.answerMs.p50.toFixed(0)} ms, p99 ${r.answerMs.p99.toFixed(0)} ms; inversions ${r.inversions}; lost ${r.lost}; handover p50 ${r.handoverMs.p50.toFixed(0)} ms`);
  }
  const failures: string[] = [];
  const sum = (f: (r: QueueRun) => number) => runs.reduce((s, r) => s + f(r), 0);
  if (sum((r) => r.lost)) failures.push(`${sum((r) => r.lost)} session(s) lost`);
  if (runs.some((r) => r.maxAdmitted > r.cap)) failures.push(`more than ${cap} sessions admitted at once`);
  return {
    id: 'queue',
    title: '7. Queue: a burst three times the cap, SIGKILL in the middle',
    config: { 'CTF_MAX_INSTANCES': cap, spawns: 3 * cap, players: 3 * cap, concurrency: pick(ctx, 10, 3), 'engine kills': 1 },
    notes: [
      'Each player spawns once; the engine is killed with SIGKILL once half the spawns are answered, and clients retry (100 ms apart) until the restarted engine answers. Answer time is that of the attempt that got the answer, so a retry after the kill does not count the outage.',
      'A spawn is answered with the queue as the API replica\'s cache shows it; a spawn whose earlier-stamped neighbour was still being created may be told it starts and then wait (counted as "answered without a position").',
      'Request order is the requested-at stamp the API wrote; served order is status.admittedAt. The first CAP requested must be the ones admitted at once; the queue is then served by stopping the earliest admitted session and waiting for the next admission (handover).',
    ],
    figures: [
      figure('queue.answer_p99_ms', 'spawn answered (with position) p99', 'ms', runs.map((r) => r.answerMs.p99), { op: '<', value: 1000, text: '< 1000 ms' }),
      figure('queue.inversions', 'served out of request order (pairs)', '', runs.map((r) => r.inversions), { op: '<=', value: 0, text: '0' }),
      figure('queue.lost', 'sessions lost', '', runs.map((r) => r.lost), { op: '<=', value: 0, text: '0' }),
      figure('queue.without_position', 'queued spawns answered without a position', '', runs.map((r) => r.withoutPosition), { op: '<=', value: 0, text: '0' }),
      figure('queue.handover_p50_ms', 'stop to next admission p50', 'ms', runs.map((r) => r.handoverMs.p50)),
    ],
    tables: [
      {
        title: 'Per run',
        columns: ['run', 'spawns', 'answer p50 ms', 'answer p99 ms', 'without position', 'inversions', 'lost', 'handover p50 ms', 'handover p99 ms', 'restart to ready ms', 'max admitted'],
        rows: runs.map((r, i) => [i + 1, r.spawns, r.answerMs.p50, r.answerMs.p99, r.withoutPosition, r.inversions, r.lost, r.handoverMs.p50, r.handoverMs.p99, r.restartMs, r.maxAdmitted]),
      },
    ],
    details: { runs },
    failures,
    seconds: 0,
  };
}

const admittedAt = (s: ChallengeSession) => (s.status)?.admittedAt;
const requestedAt = (s: ChallengeSession) => Date.parse(s.metadata.annotations?.[ANNOTATION_REQUESTED_AT] ?? '') || 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

async function queueRun(ctx: BenchContext, run: number, cap: number): Promise<QueueRun> {
  const ns = `bench-queue-${run + 1}`;
  await prepareNamespace(ctx, ns);
  const engine = engineFor(ctx, ns, `queue-engine-${run + 1}`, { env: { CTF_MAX_INSTANCES: String(cap), LOG_LEVEL: 'info' } });
  const live = async () => {
    const r = (await ctx.kube.custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: SESSION_PLURAL })) as { items: ChallengeSession[] };
    return r.items.filter((s) => !s.metadata.deletionTimestamp);
  };
  try {
    await engine.start();
    await engine.waitReady();
    const n = 3 * cap;
    const users = Array.from({ length: n }, (_, i) => `queue-${run + 1}-${String(i).padStart(3, '0')}`);
    const tokens = await issueTokens(ctx, users);
    let maxAdmitted = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const s = await live().catch(() => []);
        maxAdmitted = Math.max(maxAdmitted, s.filter((x) => admittedAt(x)).length);
        await sleep(100);
      }
    })();

    const answers = await burst(engine, users, tokens, pick(ctx, 10, 3), async () => {
      await engine.kill();
      const t = Date.now();
      await engine.start();
      await engine.waitReady();
      return Date.now() - t;
    });
    const all = await until(`${cap} admitted and ${n - cap} Queued`, async () => {
      const s = await live();
      return s.length === n && s.filter((x) => admittedAt(x)).length === cap && s.filter((x) => x.status?.phase === 'Queued').length === n - cap ? s : undefined;
    }, 120_000);
    const requestOrder = [...all].sort((a, b) => requestedAt(a) - requestedAt(b) || a.metadata.name.localeCompare(b.metadata.name)).map((s) => s.metadata.name);
    const firstBatch = all.filter((s) => admittedAt(s)).map((s) => s.metadata.name);
    const overCap = new Set(requestOrder.slice(cap));
    const withoutPosition = answers.list.filter((a) => a.attempts === 1 && a.id && overCap.has(a.id) && a.position === undefined).length;

    // Serve the queue one stop at a time, earliest admitted first.
    const served = [...firstBatch];
    const owner = new Map(all.map((s) => [s.metadata.name, s.spec.user]));
    const handovers: number[] = [];
    for (let i = 0; i < n - cap; i++) {
      const admitted = (await live()).filter((s) => admittedAt(s)).sort((a, b) => Date.parse(admittedAt(a)!) - Date.parse(admittedAt(b)!));
      const victim = admitted[0];
      if (!victim) break;
      const t = Date.now();
      await fetch(`${engine.baseUrl}/api/challenges/${victim.metadata.name}`, { method: 'DELETE', headers: { authorization: `Bearer ${tokens.get(owner.get(victim.metadata.name) ?? '') ?? ''}` } });
      const next = await until(`admission ${i + 1}`, async () => {
        const fresh = (await live()).filter((s) => admittedAt(s) && !served.includes(s.metadata.name));
        return fresh.length > 0 ? fresh : undefined;
      }, 60_000);
      handovers.push(Date.now() - t);
      served.push(...next.sort((a, b) => Date.parse(admittedAt(a)!) - Date.parse(admittedAt(b)!)).map((s) => s.metadata.name));
    }
    sampling = false;
    await sampler;
    const rank = new Map(requestOrder.map((name, i) => [name, i]));
    // The first batch is admitted at once, in no particular order among itself: it counts as
    // served first, in request order, when it is exactly the first CAP requested.
    const servedRanks = [...[...firstBatch].sort((a, b) => (rank.get(a) ?? 0) - (rank.get(b) ?? 0)), ...served.slice(cap)].map((x) => rank.get(x) ?? -1);
    let inversions = 0;
    for (let i = 0; i < servedRanks.length; i++) for (let j = i + 1; j < servedRanks.length; j++) if ((servedRanks[i] ?? 0) > (servedRanks[j] ?? 0)) inversions++;
    const lost = users.length - new Set(served).size;
    return {
      cap,
      spawns: n,
      answerMs: distribution(answers.list.map((a) => a.ms)),
      withoutPosition,
      inversions,
      lost,
      handoverMs: distribution(handovers),
      restartMs: answers.restartMs,
      maxAdmitted,
    };
  } finally {
    await engine.stop();
    await cleanupNamespace(ctx, ns);
  }
}

/** Every user spawns once; half way through, `restart` kills and restarts the engine. */
async function burst(engine: EngineProcess, users: string[], tokens: Map<string, string>, concurrency: number, restart: () => Promise<number>): Promise<{ list: Answer[]; restartMs: number }> {
  const list: Answer[] = [];
  let next = 0;
  let restarting: Promise<number> | undefined;
  const worker = async () => {
    for (let user = users[next++]; user; user = users[next++]) {
      for (let attempt = 1; ; attempt++) {
        if (!restarting && list.length >= users.length / 2) restarting = restart();
        const t = Date.now();
        const res = await fetch(`${engine.baseUrl}/api/challenges`, {
          method: 'POST',
          headers: { authorization: `Bearer ${tokens.get(user) ?? ''}`, 'content-type': 'application/json' },
          body: JSON.stringify({ challenge: CHALLENGE }),
          signal: AbortSignal.timeout(10_000),
        }).catch(() => undefined);
        if (!res || res.status >= 500) {
          await sleep(100);
          continue;
        }
        const body = (await res.json()) as { session?: { id?: string; queue?: { position?: number } } };
        list.push({ user, status: res.status, ms: Date.now() - t, attempts: attempt, id: body.session?.id, position: body.session?.queue?.position });
        break;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const restartMs = await (restarting ?? restart());
  return { list, restartMs };
}
