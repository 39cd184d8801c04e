import { challengeSchema } from '../../src/api/challenge.js';
import { DEFAULT_RECONCILE_CONCURRENCY } from '../../src/config.js';
import { GROUP, SESSION_PLURAL, VERSION } from '../../src/api/group.js';
import { deriveFlag } from '../../src/flags/derive.js';
import { DEFAULT_NETWORK_OPTIONS, DEFAULT_POD_DEFAULTS, desiredFlagSecret, desiredPod, desiredService, desiredSessionPolicy, runtimeOf, withSpecHash, type ChallengeRuntime } from '../../src/reconcile/index.js';
import { isEngineWrite, latencyBetween, rejectedBetween, scrape, sum, writesBetween, type MetricsSnapshot } from '../lib/apiserver-metrics.js';
import { cleanupNamespace, cpuMeter, engineFor, issueTokens, pick, prepareNamespace, seconds, userName, type BenchContext } from '../lib/context.js';
import { BENCH_FLAG_KEY, metricSum, type EngineProcess } from '../lib/engine-process.js';
import { challengeDocs, createKube, createNamespace, installChallenges, Observer, pool, PSA_LABELS, sessionObject, withRetry } from '../lib/kube.js';
import { cpuColumns, cpuRow, type CpuUsage } from '../lib/cpu.js';
import { runLoad } from '../lib/load.js';
import { monotonicMicros, profileTables, summarizeProfiles, type Window } from '../lib/profile.js';
import type { ScenarioResult, Table } from '../lib/report.js';
import { distribution, figure, type Distribution } from '../lib/stats.js';

/**
 * Spawn throughput and latency. N sessions are requested over HTTP (POST /api/challenges) by U
 * users at concurrency C; each user asks for every one of the namespace's challenges once. The
 * same run then creates the same objects for N sessions directly against the apiserver (the
 * baseline: what any controller must write at the least), and the two totals are compared.
 */

interface EngineRun {
  requestMs: Distribution;
  toRunningMs: Distribution;
  /** readyAt - creationTimestamp, both whole seconds: a cross-check of toRunningMs. */
  statusReadySeconds: Distribution;
  totalMs: number;
  statusCounts: Record<string, number>;
  running: number;
  writesPerSession: number;
  /** The engine process's CPU over the run, in % of one core, and its event-loop delay. */
  engineCpuPercent: number;
  loopLagP99Ms: number;
  loopLagMaxMs: number;
  cpu: CpuUsage;
  apiserver: Table;
  /** Spawns one at a time after the burst, each waited for until Running: latency without queueing. */
  unloadedRequestMs: Distribution;
  unloadedToRunningMs: Distribution;
}

export interface BaselineRun {
  totalMs: number;
  cpu: CpuUsage;
  perSessionMs: Distribution;
  running: number;
  apiserver: Table;
}

const CHALLENGES_PER_USER = 5;

export async function spawnScenario(ctx: BenchContext): Promise<ScenarioResult> {
  const users = pick(ctx, 200, 20);
  const n = users * CHALLENGES_PER_USER;
  const connections = pick(ctx, 50, 10);
  const unloaded = pick(ctx, 20, 3);
  const waitMs = pick(ctx, 600_000, 90_000);
  const names = Array.from({ length: users }, (_, i) => userName(i));
  const tokens = await issueTokens(ctx, [...names, ...Array.from({ length: unloaded }, (_, i) => userName(users + i))]);
  const engineRuns: EngineRun[] = [];
  const baselineRuns: BaselineRun[] = [];
  const defaultClientRuns: BaselineRun[] = [];
  const profiles: Table[] = [];
  const sizes = { users, n, connections, waitMs, names, unloaded };

  for (let run = 0; run < ctx.runs; run++) {
    // Rotate the order so a drift in background load does not favour one side.
    // The default-client baseline only explains the gap; quick runs leave it out to stay short.
    const sides = ctx.mode === 'full' ? ['engine', 'baseline', 'baseline-default'] : ['engine', 'baseline'];
    for (let j = 0; j < sides.length; j++) {
      const side = sides[(j + run) % sides.length];
      if (side === 'engine') {
        ctx.log(`  run ${run + 1}/${ctx.runs}: ${n} spawns over HTTP, ${users} users, concurrency ${connections}`);
        const r = await engineRun(ctx, run, { ...sizes, tokens }, profiles);
        engineRuns.push(r);
        ctx.log(`    engine: all Running after ${seconds(r.totalMs).toFixed(2)} s; request p99 ${r.requestMs.p99.toFixed(1)} ms; to-Running p50 ${seconds(r.toRunningMs.p50).toFixed(2)} s; engine CPU ${r.engineCpuPercent.toFixed(0)}%`);
      } else {
        const reuse = side === 'baseline';
        ctx.log(`  run ${run + 1}/${ctx.runs}: baseline (${reuse ? 'connections reused' : 'client default: a new TLS connection per request'}), ${n} sessions written directly, concurrency ${connections}`);
        const b = await baselineRun(ctx, run, sizes, reuse);
        (reuse ? baselineRuns : defaultClientRuns).push(b);
        ctx.log(`    baseline: all pods Running after ${seconds(b.totalMs).toFixed(2)} s`);
      }
    }
  }

  const ratio = engineRuns.map((e, i) => e.totalMs / (baselineRuns[i]?.totalMs ?? Number.NaN));
  const ratioDefault = engineRuns.map((e, i) => e.totalMs / (defaultClientRuns[i]?.totalMs ?? Number.NaN));
  const incomplete = [...engineRuns, ...baselineRuns, ...defaultClientRuns].filter((r) => r.running < n).length;
  const errors = engineRuns.flatMap((r) => Object.entries(r.statusCounts).filter(([s]) => s !== '201')).map(([s, c]) => `${c} x ${s}`);
  return {
    id: 'spawn',
    title: '1. Spawn',
    config: {
      sessions: n,
      users,
      'challenges per user': CHALLENGES_PER_USER,
      concurrency: connections,
      CTF_MAX_SESSIONS_PER_USER: CHALLENGES_PER_USER,
      CTF_RECONCILE_CONCURRENCY: process.env.CTF_RECONCILE_CONCURRENCY ?? `${DEFAULT_RECONCILE_CONCURRENCY} (default)`,
    },
    notes: [
      `Each of the ${users} users spawns each of ${CHALLENGES_PER_USER} challenges (the four samples and a renamed copy of one) once, so the engine-wide per-user limit is raised from 3 to ${CHALLENGES_PER_USER} for this scenario (CTF_MAX_SESSIONS_PER_USER=${CHALLENGES_PER_USER}). Requests go round-robin over users, so a user's five spawns are spread over the run.`,
      'Request latency: client-side, autocannon with one request per connection at a time, from sending to the full 201 response. Request-to-Running: from sending the request to a watch seeing status.phase Running; the cross-check from the session\'s own whole-second timestamps (status.readyAt - metadata.creationTimestamp) is in the table.',
      'Total: from the first request to the last session seen Running. Baseline: the same five objects per session (ChallengeSession, flag Secret, NetworkPolicy, Service, Pod, built with the pure builders in src/reconcile and the spec-hash annotation) created with the typed clients of @kubernetes/client-node at the same concurrency - the session first, then its four children in parallel - until a watch sees every Pod Running. The baseline writes no status and no Events.',
      'The baseline runs with one keep-alive connection pool: the floor the control plane sets, which the target ratio is against. Full runs add a second baseline with the client library\'s default, which opens a new TLS connection for every request, as the engine does today.',
      `After each burst, ${unloaded} more sessions are spawned one at a time by fresh users, each waited for until Running: the latency of a spawn that does not queue behind others.`,
      'The engine runs as `node dist/main.js` (LOG_LEVEL=warn); the load generator, the engine and the whole control plane share the same two cores.',
      ...(errors.length ? [`Non-201 answers: ${errors.join(', ')}.`] : []),
      ...(incomplete ? [`${incomplete} run(s) did not reach all ${n} Running within ${waitMs / 1000} s; their totals are left out.`] : []),
    ],
    figures: [
      figure('spawn.engine_total_s', 'engine: all sessions Running', 's', engineRuns.map((r) => seconds(r.totalMs))),
      figure('spawn.baseline_total_s', 'baseline: all pods Running', 's', baselineRuns.map((r) => seconds(r.totalMs))),
      figure('spawn.ratio', 'engine / baseline total time', 'x', ratio, { op: '<=', value: 1.3, text: '<= 1.3' }),
      ...(defaultClientRuns.length > 0
        ? [
            figure('spawn.baseline_default_total_s', 'baseline, client default (new TLS connection per request)', 's', defaultClientRuns.map((r) => seconds(r.totalMs))),
            figure('spawn.ratio_default', 'engine / that baseline', 'x', ratioDefault),
          ]
        : []),
      figure('spawn.throughput', 'engine spawn throughput', 'sessions/s', engineRuns.map((r) => n / seconds(r.totalMs))),
      figure('spawn.request_p50_ms', 'request latency p50', 'ms', engineRuns.map((r) => r.requestMs.p50)),
      figure('spawn.request_p99_ms', 'request latency p99', 'ms', engineRuns.map((r) => r.requestMs.p99), { op: '<', value: 50, text: '< 50 ms' }),
      figure('spawn.running_p50_s', 'request-to-Running p50', 's', engineRuns.map((r) => seconds(r.toRunningMs.p50)), { op: '<', value: 1, text: '< 1 s' }),
      figure('spawn.running_p99_s', 'request-to-Running p99', 's', engineRuns.map((r) => seconds(r.toRunningMs.p99))),
      figure('spawn.unloaded_request_p50_ms', 'one spawn at a time: request latency p50', 'ms', engineRuns.map((r) => r.unloadedRequestMs.p50)),
      figure('spawn.unloaded_running_p50_s', 'one spawn at a time: request-to-Running p50', 's', engineRuns.map((r) => seconds(r.unloadedToRunningMs.p50)), { op: '<', value: 1, text: '< 1 s' }),
      figure('spawn.unloaded_running_max_s', 'one spawn at a time: request-to-Running max', 's', engineRuns.map((r) => seconds(r.unloadedToRunningMs.max))),
      figure('spawn.engine_writes_per_session', 'engine apiserver writes per spawned session', 'writes', engineRuns.map((r) => r.writesPerSession)),
    ],
    tables: [
      {
        title: 'Per run',
        columns: ['run', 'engine total s', 'baseline total s', 'ratio', 'baseline (default client) s', 'request p50 ms', 'request p99 ms', 'request max ms', 'to-Running p50 s', 'to-Running p99 s', 'readyAt-created p50 / p99 s', 'Running', 'engine CPU % of a core', 'engine event-loop delay p99 / max ms'],
        rows: engineRuns.map((r, i) => [
          i + 1,
          seconds(r.totalMs),
          seconds(baselineRuns[i]?.totalMs ?? Number.NaN),
          ratio[i] ?? Number.NaN,
          seconds(defaultClientRuns[i]?.totalMs ?? Number.NaN),
          r.requestMs.p50,
          r.requestMs.p99,
          r.requestMs.max,
          seconds(r.toRunningMs.p50),
          seconds(r.toRunningMs.p99),
          `${r.statusReadySeconds.p50} / ${r.statusReadySeconds.p99}`,
          `${r.running}/${n}`,
          r.engineCpuPercent,
          `${r.loopLagP99Ms.toFixed(0)} / ${r.loopLagMaxMs.toFixed(0)}`,
        ]),
      },
      {
        title: 'CPU used from the first request to the last Running (cores, averaged over the run)',
        columns: ['run', ...cpuColumns()],
        rows: [
          ...engineRuns.map((r, i) => [`engine ${i + 1}`, ...cpuRow(r.cpu)]),
          ...baselineRuns.map((r, i) => [`baseline ${i + 1}`, ...cpuRow(r.cpu)]),
          ...defaultClientRuns.map((r, i) => [`baseline, default client ${i + 1}`, ...cpuRow(r.cpu)]),
        ],
      },
      ...(engineRuns[0] ? [engineRuns[0].apiserver] : []),
      ...(baselineRuns[0] ? [baselineRuns[0].apiserver] : []),
      ...profiles,
    ],
    details: { engineRuns, baselineRuns, defaultClientRuns },
    failures: [
      ...(errors.length ? [`spawn requests answered other than 201: ${errors.join(', ')}`] : []),
      ...(incomplete ? [`${incomplete} run(s) did not get every session or pod Running`] : []),
    ],
    seconds: 0,
  };
}

export interface Sizes {
  unloaded: number;
  users: number;
  n: number;
  connections: number;
  waitMs: number;
  names: string[];
}

function pairOf(k: number, sizes: Pick<Sizes, 'users'>, challenges: string[]): { user: number; challenge: string } {
  return { user: k % sizes.users, challenge: challenges[Math.floor(k / sizes.users) % challenges.length] as string };
}

export function apiserverTable(title: string, before: MetricsSnapshot, after: MetricsSnapshot, sessions: number, writer = 'engine'): Table {
  const lat = latencyBetween(before, after);
  const writes = writesBetween(before, after);
  const rejected = rejectedBetween(before, after);
  return {
    title,
    columns: ['request', 'by', 'count', 'of which rejected', 'per session', 'apiserver mean ms'],
    rows: [...writes].slice(0, 16).map(([k, c]) => [k, isEngineWrite(k) ? writer : 'other', c, rejected.get(k) ?? 0, c / sessions, lat.get(k)?.meanMs ?? Number.NaN]),
  };
}

async function engineRun(ctx: BenchContext, run: number, s: Sizes & { tokens: Map<string, string> }, profiles: Table[]): Promise<EngineRun> {
  const ns = `bench-spawn-${run + 1}`;
  const challenges = (await prepareNamespace(ctx, ns, 1)).slice(0, CHALLENGES_PER_USER);
  const engine = engineFor(ctx, ns, `spawn-engine-${run + 1}`, { env: { CTF_MAX_SESSIONS_PER_USER: String(CHALLENGES_PER_USER) } });
  await engine.start();
  const observer = Observer.sessions(ctx.kube, ns);
  let window: Window | undefined;
  try {
    await engine.waitReady();
    await observer.start();
    const before = await scrape(ctx.cluster);
    // Scraping resets the engine's event-loop delay histogram; the next scrape covers the run.
    await engine.metrics();
    const cpu0 = await engine.cpuSeconds();
    const meter = cpuMeter(ctx, engine);
    const w0 = monotonicMicros();
    const sentAt = new Map<string, number>();
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
        const p = pairOf(i, s, challenges);
        const token = s.tokens.get(s.names[p.user] as string) as string;
        return { method: 'POST', path: '/api/challenges', headers: { authorization: `Bearer ${token}` }, body: JSON.stringify({ challenge: p.challenge }), tag: i };
      },
      onResponse: (r) => {
        first = Math.min(first, r.sentAt);
        if (r.status !== 201 && r.status !== 200) return;
        const id = (JSON.parse(r.body) as { session: { id: string } }).session.id;
        sentAt.set(id, r.sentAt);
      },
    });
    const ids = [...sentAt.keys()];
    await observer.until(() => observer.count('Running', ids) >= ids.length, s.waitMs);
    const cpu1 = await engine.cpuSeconds();
    const cpu = meter.stop();
    window = [w0, monotonicMicros()];
    const em = await engine.metrics();
    const after = await scrape(ctx.cluster);
    const toRunning: number[] = [];
    const statusReady: number[] = [];
    let last = first;
    for (const id of ids) {
      const at = observer.when(id, 'Running');
      if (at === undefined) continue;
      last = Math.max(last, at);
      toRunning.push(at - (sentAt.get(id) ?? at));
      const o = observer.last.get(id);
      const created = Date.parse(o?.metadata?.creationTimestamp ?? '');
      const ready = Date.parse(o?.status?.readyAt ?? '');
      if (Number.isFinite(created) && Number.isFinite(ready)) statusReady.push((ready - created) / 1000);
    }
    const writes = writesBetween(before, after);
    const unloaded = await spawnOneByOne(engine, observer, s, challenges);
    return {
      ...unloaded,
      requestMs: distribution(load.latencies),
      toRunningMs: distribution(toRunning),
      statusReadySeconds: distribution(statusReady),
      // A run that did not finish has no total (the figure leaves it out; the check reports it).
      totalMs: toRunning.length < ids.length || ids.length < s.n ? Number.NaN : last - first,
      statusCounts: load.statusCounts,
      running: toRunning.length,
      writesPerSession: sum(writes, isEngineWrite) / Math.max(1, ids.length),
      engineCpuPercent: ((cpu1 - cpu0) / Math.max(0.001, (last - first) / 1000)) * 100,
      loopLagP99Ms: metricSum(em, 'nodejs_eventloop_lag_p99_seconds') * 1000,
      loopLagMaxMs: metricSum(em, 'nodejs_eventloop_lag_max_seconds') * 1000,
      cpu,
      apiserver: apiserverTable(`Apiserver writes during engine run ${run + 1} (all components; per session = / ${ids.length})`, before, after, ids.length),
    };
  } finally {
    observer.stop();
    await engine.stop();
    if (ctx.profile) {
      const [p] = await summarizeProfiles(`${ctx.workDir}/profiles/spawn-engine-${run + 1}`, 15, window ? [window] : undefined);
      if (p && run === 0) profiles.push(...profileTables(`the engine from the first spawn request to the last session Running, run ${run + 1}`, p));
    }
    await cleanupNamespace(ctx, ns);
  }
}

/** Spawns by fresh users, one at a time, each waited for until Running. */
async function spawnOneByOne(
  engine: EngineProcess,
  observer: Observer,
  s: Sizes & { tokens: Map<string, string> },
  challenges: string[],
): Promise<Pick<EngineRun, 'unloadedRequestMs' | 'unloadedToRunningMs'>> {
  const request: number[] = [];
  const toRunning: number[] = [];
  for (let j = 0; j < s.unloaded; j++) {
    const token = s.tokens.get(userName(s.users + j)) as string;
    const sent = Date.now();
    const res = await fetch(`${engine.baseUrl}/api/challenges`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ challenge: challenges[j % challenges.length] }),
    });
    const body = (await res.json()) as { session?: { id: string } };
    request.push(Date.now() - sent);
    const id = body.session?.id;
    if (res.status !== 201 || !id) throw new Error(`an unloaded spawn answered ${res.status}`);
    if (!(await observer.until(() => observer.when(id, 'Running') !== undefined, 60_000))) throw new Error(`session ${id} did not reach Running`);
    toRunning.push((observer.when(id, 'Running') as number) - sent);
  }
  return { unloadedRequestMs: distribution(request), unloadedToRunningMs: distribution(toRunning) };
}

export async function baselineRun(ctx: BenchContext, run: number, s: Sizes, reuse: boolean): Promise<BaselineRun> {
  const ns = `bench-base-${reuse ? '' : 'default-'}${run + 1}`;
  const kube = reuse ? ctx.kube : createKube(ctx.cluster.kubeconfig);
  await createNamespace(ctx.kube, ns, PSA_LABELS);
  // The Challenges are installed as for the engine (same apiserver contents); their parsed
  // specs give the runtimes the builders need.
  await installChallenges(ctx.kube, ns, 1);
  const runtimes = new Map<string, ChallengeRuntime>();
  for (const d of challengeDocs(1)) runtimes.set(d.metadata.name, runtimeOf(challengeSchema.parse(d).spec));
  const challenges = [...runtimes.keys()].slice(0, CHALLENGES_PER_USER);
  const observer = Observer.pods(ctx.kube, ns);
  try {
    await observer.start();
    const before = await scrape(ctx.cluster);
    const meter = cpuMeter(ctx);
    const t0 = Date.now();
    const perSession: number[] = [];
    const podNames: string[] = [];
    await pool(
      Array.from({ length: s.n }, (_, i) => i),
      s.connections,
      async (i) => {
        const p = pairOf(i, s, challenges);
        const user = s.names[p.user] as string;
        const name = `b-${run + 1}-${i}`;
        const started = Date.now();
        const created = (await withRetry(() =>
          kube.custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: SESSION_PLURAL, body: sessionObject(name, p.challenge, user, Date.now() + 3_600_000) }),
        )) as { metadata: { name: string; namespace: string; uid: string }; spec: { challenge: string; user: string } };
        const session = { metadata: { name, namespace: ns, uid: created.metadata.uid }, spec: { challenge: p.challenge, user } };
        const runtime = runtimes.get(p.challenge) as ChallengeRuntime;
        const flag = runtime.flag.dynamic ? deriveFlag(BENCH_FLAG_KEY, { challenge: p.challenge, sessionUid: created.metadata.uid, user }, runtime.flag.dynamic) : 'CTF{bench_static_flag}';
        const { policy } = desiredSessionPolicy(session, runtime, DEFAULT_NETWORK_OPTIONS);
        await Promise.all([
          withRetry(() => kube.core.createNamespacedSecret({ namespace: ns, body: withSpecHash(desiredFlagSecret(session, flag)) })),
          withRetry(() => kube.net.createNamespacedNetworkPolicy({ namespace: ns, body: withSpecHash(policy) })),
          withRetry(() => kube.core.createNamespacedService({ namespace: ns, body: withSpecHash(desiredService(session, runtime)) })),
          withRetry(() => kube.core.createNamespacedPod({ namespace: ns, body: withSpecHash(desiredPod(session, { runtime, generation: 1 }, DEFAULT_POD_DEFAULTS)) })),
        ]);
        perSession.push(Date.now() - started);
        podNames.push(name);
      },
    );
    await observer.until(() => observer.count('Running', podNames) >= s.n, s.waitMs);
    const cpu = meter.stop();
    const after = await scrape(ctx.cluster);
    let last = t0;
    let running = 0;
    for (const name of podNames) {
      const at = observer.when(name, 'Running');
      if (at === undefined) continue;
      running++;
      last = Math.max(last, at);
    }
    return {
      totalMs: running < s.n ? Number.NaN : last - t0,
      cpu,
      perSessionMs: distribution(perSession),
      running,
      apiserver: apiserverTable(`Apiserver writes during baseline run ${run + 1}${reuse ? '' : ' (default client)'} (all components; per session = / ${s.n})`, before, after, s.n, 'benchmark'),
    };
  } finally {
    observer.stop();
    await cleanupNamespace(ctx, ns);
  }
}
