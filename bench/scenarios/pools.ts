import { ANNOTATION_CLAIMED_AT, CHALLENGE_PLURAL, GROUP, VERSION } from '../../src/api/group.js';
import { claimPatch, desiredPoolInstance, isPoolName, poolInstanceName } from '../../src/reconcile/pool.js';
import { createWriter } from '../../src/kube/writes.js';
import { isEngineWrite, parseKey, scrape, sum, writesBetween } from '../lib/apiserver-metrics.js';
import { cleanupNamespace, engineFor, issueTokens, pick, seconds, userName, type BenchContext } from '../lib/context.js';
import { challengeDocs, createNamespace, Observer, pool, PSA_LABELS, withRetry, type WatchedObject } from '../lib/kube.js';
import { runLoad } from '../lib/load.js';
import type { ScenarioResult, Table } from '../lib/report.js';
import { distribution, figure, type Distribution } from '../lib/stats.js';
import { apiserverTable, baselineRun } from './spawn.js';

/**
 * Warm pools at the opening of a CTF. Two bursts of N spawns by U users at concurrency C:
 *  A. every challenge's pool sized to its share of the burst: each spawn should claim a warm
 *     instance (request latency, request to Running as the player sees it, writes per claim);
 *  B. pools at 10 % of the burst: the first spawns claim, the rest start fresh while the pools
 *     refill behind them (the curve of request-to-Running over the burst, refill throughput
 *     against the raw apiserver baseline of the spawn scenario, run here at the same size).
 * "Running" for a claimed instance is what the API reports: the controller has published the
 * claim (status.claimedAt equals the claim) and the instance is Running.
 */

const CHALLENGES = 5;

interface BurstRun {
  requestMs: Distribution;
  toRunningMs: Distribution;
  /** Request-to-Running p50 per tenth of the burst, in request order. */
  curve: number[];
  claimed: number;
  total: number;
  running: number;
  statusCounts: Record<string, number>;
  /** Claim writes (metadata patches of sessions) per claimed session: the API's hot path. */
  claimWritesPerClaim: number;
  /** Engine writes of every kind during the burst, per spawn. */
  engineWritesPerSpawn: number;
  fillSeconds: number;
  /** Instances made ready per second from the first request until the pools were full again. */
  refillPerSecond: number;
  /** Instances made ready per second while the pools filled from empty (nothing else running). */
  fillPerSecond: number;
  apiserver: Table;
}

/** Phases the observer timestamps: the status phase, plus Published once a claim is reflected. */
function phases(obj: WatchedObject): string[] {
  const out = obj.status?.phase ? [obj.status.phase] : [];
  const claim = obj.metadata?.annotations?.[ANNOTATION_CLAIMED_AT];
  if (claim !== undefined && obj.status?.claimedAt === claim && obj.status.phase === 'Running') out.push('Published');
  if (obj.spec?.pool === true && claim === undefined && obj.status?.phase === 'Running') out.push('Warm');
  return out;
}

export async function poolsScenario(ctx: BenchContext): Promise<ScenarioResult> {
  const users = pick(ctx, 200, 12);
  const n = users * CHALLENGES;
  const connections = pick(ctx, 50, 10);
  const waitMs = pick(ctx, 600_000, 120_000);
  const names = Array.from({ length: users }, (_, i) => userName(i));
  const tokens = await issueTokens(ctx, names);
  const full: BurstRun[] = [];
  const tenth: BurstRun[] = [];
  const baselinePerSecond: number[] = [];
  const floors: ClaimFloor[] = [];
  for (let run = 0; run < ctx.runs; run++) {
    ctx.log(`  run ${run + 1}/${ctx.runs}: pools sized to a burst of ${n}`);
    const a = await burst(ctx, `bench-pool-full-${run + 1}`, { users, n, connections, waitMs, names, tokens, poolPerChallenge: n / CHALLENGES, measureRefill: false });
    full.push(a);
    ctx.log(`    claimed ${a.claimed}/${a.total}; request p99 ${a.requestMs.p99.toFixed(1)} ms; to-Running p99 ${seconds(a.toRunningMs.p99).toFixed(3)} s; fill ${a.fillSeconds.toFixed(1)} s`);
    ctx.log(`  run ${run + 1}/${ctx.runs}: pools at 10 % of a burst of ${n}`);
    const b = await burst(ctx, `bench-pool-tenth-${run + 1}`, { users, n, connections, waitMs, names, tokens, poolPerChallenge: Math.max(1, Math.round(n / CHALLENGES / 10)), measureRefill: true });
    tenth.push(b);
    ctx.log(`    claimed ${b.claimed}/${b.total}; to-Running p50 ${seconds(b.toRunningMs.p50).toFixed(2)} s; refill ${b.refillPerSecond.toFixed(1)}/s`);
    const base = await baselineRun(ctx, 100 + run, { users, n, connections, waitMs, names, unloaded: 0 }, true);
    baselinePerSecond.push(n / seconds(base.totalMs));
    ctx.log(`    raw baseline: ${n} sessions' objects Running after ${seconds(base.totalMs).toFixed(1)} s`);
    const floor = await claimFloor(ctx, `bench-pool-floor-${run + 1}`, n, connections);
    floors.push(floor);
    ctx.log(`    claim floor (apiserver alone): p50 ${floor.latencyMs.p50.toFixed(1)} ms, p99 ${floor.latencyMs.p99.toFixed(1)} ms, ${floor.perSecond.toFixed(0)} claims/s`);
  }
  const incomplete = [...full, ...tenth].filter((r) => r.running < r.total || r.total < n).length;
  const errors = [...full, ...tenth].flatMap((r) => Object.entries(r.statusCounts).filter(([s]) => s !== '201')).map(([s, c]) => `${c} x ${s}`);
  const decile = (runs: BurstRun[], i: number) => runs.map((r) => seconds(r.curve[i] ?? Number.NaN));
  return {
    id: 'pools',
    title: '7. Warm pools',
    config: { sessions: n, users, challenges: CHALLENGES, concurrency: connections, 'pool per challenge (A / B)': `${n / CHALLENGES} / ${Math.max(1, Math.round(n / CHALLENGES / 10))}`, CTF_MAX_SESSIONS_PER_USER: CHALLENGES },
    notes: [
      `Each of ${users} users spawns each of ${CHALLENGES} pooled challenges once (copies of the web-notes sample with spec.pool.size), round-robin over users, at concurrency ${connections}. The burst starts once every pool is full and ready.`,
      'Request latency: client-side, from sending to the full answer. Request-to-Running: from sending the request to a watch seeing the session Running as the API reports it - for a claimed instance, once the controller has published the claim (status.claimedAt equals the claimed-at annotation), for a fresh one status.phase Running.',
      'Claim writes per claimed session: metadata patches of ChallengeSessions (the claim; nothing else patches session metadata in this scenario) divided by the claimed sessions, from the apiserver\'s own request counters.',
      `Claim floor: ${n} pool instances created directly in a namespace no engine watches, then each claimed with the engine's own claim patch (one metadata merge patch over its resourceVersion, the engine's writer and connection pool) at concurrency ${connections}, nothing else writing: the least a claim that is written before it is answered can cost on this apiserver. Its p99 is what request latency in A is compared with.`,
      'Fill throughput (A): pool instances made ready per second while the empty pools filled, nothing else running. Refill throughput (B): instances made ready per second from the first request until the pools were full again; refills are provisioned behind the players\' own sessions, so this includes waiting for them. The raw baseline is the spawn scenario\'s (the same five objects per session written directly, keep-alive connections) at the same size and concurrency, run right after.',
      ...(errors.length ? [`Non-201 answers: ${errors.join(', ')}.`] : []),
      ...(incomplete ? [`${incomplete} burst(s) did not get every session Running within ${waitMs / 1000} s.`] : []),
    ],
    figures: [
      figure('pools.full.claimed_share', 'A (pools = burst): spawns served from the pool', '%', full.map((r) => (100 * r.claimed) / Math.max(1, r.total))),
      figure('pools.full.request_p50_ms', 'A: request latency p50', 'ms', full.map((r) => r.requestMs.p50)),
      figure('pools.full.request_p99_ms', 'A: request latency p99', 'ms', full.map((r) => r.requestMs.p99), { op: '<', value: 50, text: '< 50 ms' }),
      figure('pools.full.running_p50_s', 'A: request-to-Running (claimed) p50', 's', full.map((r) => seconds(r.toRunningMs.p50))),
      figure('pools.full.running_p99_s', 'A: request-to-Running (claimed) p99', 's', full.map((r) => seconds(r.toRunningMs.p99)), { op: '<', value: 1, text: '< 1 s' }),
      figure('pools.full.claim_writes', 'A: claim writes per claimed session (hot path)', 'writes', full.map((r) => r.claimWritesPerClaim), { op: '<=', value: 1, text: '<= 1' }),
      figure('pools.full.engine_writes', 'A: engine writes per spawn during the burst (claims, publishing, refills)', 'writes', full.map((r) => r.engineWritesPerSpawn)),
      figure('pools.full.fill_s', 'A: time to fill the pools from empty', 's', full.map((r) => r.fillSeconds)),
      figure('pools.full.fill_per_s', 'A: fill throughput from empty', 'instances/s', full.map((r) => r.fillPerSecond)),
      figure('pools.full.fill_vs_baseline', 'A: fill throughput / raw baseline throughput', 'x', full.map((r, i) => r.fillPerSecond / (baselinePerSecond[i] ?? Number.NaN))),
      figure('pools.floor.p50_ms', 'claim floor: the claim patch alone against the apiserver, p50', 'ms', floors.map((f) => f.latencyMs.p50)),
      figure('pools.floor.p99_ms', 'claim floor: the claim patch alone against the apiserver, p99', 'ms', floors.map((f) => f.latencyMs.p99)),
      figure('pools.floor.per_s', 'claim floor: claims per second', 'claims/s', floors.map((f) => f.perSecond)),
      figure('pools.full.request_p99_vs_floor', 'A: request latency p99 / claim floor p99', 'x', full.map((r, i) => r.requestMs.p99 / (floors[i]?.latencyMs.p99 ?? Number.NaN))),
      figure('pools.tenth.claimed_share', 'B (pools = 10 %): spawns served from the pool', '%', tenth.map((r) => (100 * r.claimed) / Math.max(1, r.total))),
      figure('pools.tenth.request_p99_ms', 'B: request latency p99', 'ms', tenth.map((r) => r.requestMs.p99)),
      figure('pools.tenth.running_p50_s', 'B: request-to-Running p50', 's', tenth.map((r) => seconds(r.toRunningMs.p50))),
      figure('pools.tenth.running_p99_s', 'B: request-to-Running p99', 's', tenth.map((r) => seconds(r.toRunningMs.p99))),
      figure('pools.tenth.refill_per_s', 'B: refill throughput (first request to pools full again, behind the fresh spawns)', 'instances/s', tenth.map((r) => r.refillPerSecond)),
      figure('pools.baseline_per_s', 'raw baseline throughput (spawn scenario baseline, same size)', 'sessions/s', baselinePerSecond),
      figure('pools.tenth.refill_vs_baseline', 'B: refill throughput / raw baseline throughput', 'x', tenth.map((r, i) => r.refillPerSecond / (baselinePerSecond[i] ?? Number.NaN))),
    ],
    tables: [
      {
        title: 'B: request-to-Running over the burst (p50 per tenth of the requests, in request order, s)',
        columns: ['run', ...Array.from({ length: 10 }, (_, i) => `${i * 10}-${i * 10 + 10} %`)],
        rows: tenth.map((r, i) => [i + 1, ...r.curve.map((v) => seconds(v))]),
      },
      {
        title: 'Per burst',
        columns: ['burst', 'claimed', 'request p50 / p99 ms', 'to-Running p50 / p99 s', 'claim writes per claim', 'engine writes per spawn', 'fill s'],
        rows: [...full.map((r, i) => [`A ${i + 1}`, r]), ...tenth.map((r, i) => [`B ${i + 1}`, r])].map(([label, r]) => {
          const b = r as BurstRun;
          return [label as string, `${b.claimed}/${b.total}`, `${b.requestMs.p50.toFixed(1)} / ${b.requestMs.p99.toFixed(1)}`, `${seconds(b.toRunningMs.p50).toFixed(3)} / ${seconds(b.toRunningMs.p99).toFixed(3)}`, b.claimWritesPerClaim, b.engineWritesPerSpawn, b.fillSeconds];
        }),
      },
      ...(full[0] ? [full[0].apiserver] : []),
    ],
    details: { full, tenth, baselinePerSecond, floors, deciles: Array.from({ length: 10 }, (_, i) => decile(tenth, i)) },
    failures: [
      ...(errors.length ? [`spawn requests answered other than 201: ${errors.join(', ')}`] : []),
      ...(incomplete ? [`${incomplete} burst(s) did not get every session Running`] : []),
      ...full.filter((r) => r.claimWritesPerClaim > 1).map((r) => `a claim took ${r.claimWritesPerClaim} writes`),
    ],
    seconds: 0,
  };
}

interface BurstSizes {
  users: number;
  n: number;
  connections: number;
  waitMs: number;
  names: string[];
  tokens: Map<string, string>;
  poolPerChallenge: number;
  /** Wait for the pools to be full again after the burst (B; in A it would be a refill of the whole burst). */
  measureRefill: boolean;
}

async function burst(ctx: BenchContext, ns: string, s: BurstSizes): Promise<BurstRun> {
  await createNamespace(ctx.kube, ns, PSA_LABELS);
  const base = challengeDocs().find((c) => c.metadata.name === 'web-notes');
  if (!base) throw new Error('no web-notes sample');
  const challenges = Array.from({ length: CHALLENGES }, (_, i) => `pooled-${i + 1}`);
  const observer = Observer.sessions(ctx.kube, ns, phases);
  const engine = engineFor(ctx, ns, `${ns}-engine`, { env: { CTF_MAX_SESSIONS_PER_USER: String(CHALLENGES) } });
  try {
    await observer.start();
    await engine.start();
    await engine.waitReady();
    const fillStart = Date.now();
    for (const name of challenges) {
      const body = { ...structuredClone(base), metadata: { name }, spec: { ...structuredClone(base.spec), pool: { size: s.poolPerChallenge } } };
      await ctx.kube.custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: CHALLENGE_PLURAL, body });
    }
    const poolTotal = s.poolPerChallenge * CHALLENGES;
    const warmNow = () => {
      let w = 0;
      for (const o of observer.last.values()) if (o.spec?.pool === true && !o.metadata?.annotations?.[ANNOTATION_CLAIMED_AT] && o.status?.phase === 'Running') w++;
      return w;
    };
    if (!(await observer.until(() => warmNow() >= poolTotal, s.waitMs))) throw new Error(`the pools of ${ns} did not fill`);
    const fillSeconds = (Date.now() - fillStart) / 1000;
    // Let the controller settle (last status writes) before measuring the burst alone.
    await new Promise((r) => setTimeout(r, 1000));
    const warmBefore = new Set([...observer.last.entries()].filter(([, o]) => o.spec?.pool === true && o.status?.phase === 'Running').map(([name]) => name));
    const before = await scrape(ctx.cluster);
    const sentAt = new Map<string, number>();
    const order: string[] = [];
    let k = 0;
    let first = Number.POSITIVE_INFINITY;
    const load = await runLoad({
      url: engine.baseUrl,
      connections: s.connections,
      stopAfter: s.n,
      durationSeconds: s.waitMs / 1000,
      bodies: true,
      next: () => {
        const i = k++;
        if (i >= s.n) return { method: 'GET', path: '/healthz' };
        const user = s.names[i % s.users] as string;
        const challenge = challenges[Math.floor(i / s.users) % challenges.length] as string;
        return { method: 'POST', path: '/api/challenges', headers: { authorization: `Bearer ${s.tokens.get(user) ?? ''}` }, body: JSON.stringify({ challenge }), tag: i };
      },
      onResponse: (r) => {
        first = Math.min(first, r.sentAt);
        if (r.status !== 201 && r.status !== 200) return;
        const id = (JSON.parse(r.body) as { session: { id: string } }).session.id;
        if (!sentAt.has(id)) order.push(id);
        sentAt.set(id, r.sentAt);
      },
    });
    const ids = [...sentAt.keys()];
    const runningAt = (id: string) => (isPoolName(id) ? observer.when(id, 'Published') : observer.when(id, 'Running'));
    await observer.until(() => ids.every((id) => runningAt(id) !== undefined), s.waitMs);
    const after = await scrape(ctx.cluster);
    let last = first;
    const toRunning: number[] = [];
    for (const id of ids) {
      const at = runningAt(id);
      if (at === undefined) continue;
      last = Math.max(last, at);
      toRunning.push(at - (sentAt.get(id) ?? at));
    }
    const bySend = [...order].sort((a, b) => (sentAt.get(a) ?? 0) - (sentAt.get(b) ?? 0));
    const curve = Array.from({ length: 10 }, (_, d) => {
      const slice = bySend.slice(Math.floor((d * bySend.length) / 10), Math.floor(((d + 1) * bySend.length) / 10));
      const values = slice.map((id) => (runningAt(id) ?? Number.NaN) - (sentAt.get(id) ?? 0)).filter(Number.isFinite);
      return values.length ? distribution(values).p50 : Number.NaN;
    });
    const claimed = ids.filter(isPoolName).length;
    const writes = writesBetween(before, after);
    const claimWrites = sum(writes, (key) => {
      const k = parseKey(key);
      return k.verb === 'PATCH' && k.group === GROUP && k.resource === 'challengesessions' && !k.subresource;
    });
    const engineWrites = sum(writes, isEngineWrite);
    // The refill: from the first request until the pools are full again, behind the players' work.
    const refillDone = s.measureRefill && (await observer.until(() => warmNow() >= poolTotal, s.waitMs)) ? Date.now() : Number.NaN;
    let refilled = 0;
    for (const [name, o] of observer.last) {
      const warmAt = observer.when(name, 'Warm');
      if (o.spec?.pool === true && !warmBefore.has(name) && warmAt !== undefined && warmAt >= first) refilled++;
    }
    return {
      requestMs: distribution(load.latencies),
      toRunningMs: distribution(toRunning),
      curve,
      claimed,
      total: ids.length,
      running: toRunning.length,
      statusCounts: load.statusCounts,
      claimWritesPerClaim: claimed > 0 ? claimWrites / claimed : 0,
      engineWritesPerSpawn: engineWrites / Math.max(1, ids.length),
      fillSeconds,
      refillPerSecond: refilled / Math.max(0.001, (refillDone - first) / 1000),
      fillPerSecond: poolTotal / Math.max(0.001, fillSeconds),
      apiserver: apiserverTable(`Apiserver writes during burst ${ns} (all components; per session = / ${ids.length})`, before, after, ids.length),
    };
  } finally {
    observer.stop();
    await engine.stop();
    await cleanupNamespace(ctx, ns);
  }
}

interface ClaimFloor {
  latencyMs: Distribution;
  perSecond: number;
}

/**
 * The apiserver's own floor for a claim: `n` pool instances written directly, then claimed at
 * `connections` concurrent patches through the engine's writer (as the API claims), with no
 * engine, controller or refill writing meanwhile.
 */
async function claimFloor(ctx: BenchContext, ns: string, n: number, connections: number): Promise<ClaimFloor> {
  await createNamespace(ctx.kube, ns, PSA_LABELS);
  const writer = createWriter(ctx.kube, { component: 'challenge-engine', instance: 'bench-floor' });
  try {
    const instances = await pool(Array.from({ length: n }, (_, i) => i), connections, async () => {
      const stored = (await withRetry(() => writer.createSession(ns, desiredPoolInstance(poolInstanceName('floor'), ns, 'floor')))) as { metadata: { name: string; resourceVersion: string } };
      return stored.metadata;
    });
    const latencies: number[] = [];
    const t0 = Date.now();
    await pool(instances, connections, async (m, i) => {
      const user = userName(i);
      const started = performance.now();
      await writer.patchSessionMetadata(ns, m.name, claimPatch({ user, owner: { mode: 'user', user } }, new Date(), new Date(Date.now() + 3_600_000).toISOString()), m.resourceVersion);
      latencies.push(performance.now() - started);
    });
    return { latencyMs: distribution(latencies), perSecond: n / Math.max(0.001, (Date.now() - t0) / 1000) };
  } finally {
    await cleanupNamespace(ctx, ns);
  }
}
