import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { REPO_ROOT } from '../../scripts/lib/control-plane.js';
import { parseKey, rejectedBetween, scrape, writesBetween, type MetricsSnapshot } from '../lib/apiserver-metrics.js';
import { cleanupNamespace, cpuMeter, engineFor, issueTokens, pick, prepareNamespace, userName, type BenchContext } from '../lib/context.js';
import { metricSum, type EngineProcess } from '../lib/engine-process.js';
import { challengeDocs, createSessionDirect, Observer, pool } from '../lib/kube.js';
import { cpuColumns, cpuRow, type CpuUsage } from '../lib/cpu.js';
import { runLoad, type LoadRequest } from '../lib/load.js';
import { runPaced } from '../lib/paced-load.js';
import { monotonicMicros, profileTables, summarizeProfiles, type Window } from '../lib/profile.js';
import type { ScenarioResult, Table } from '../lib/report.js';
import { distribution, figure, type Distribution } from '../lib/stats.js';

/**
 * Flag validation: POST /api/flags from many users against many sessions, with right flags read
 * from the sessions' Secrets and pre-issued tokens. Three mixes per run: half right and half
 * wrong (the headline), wrong only, right only. The first right flag of a session writes its
 * status once (solved); later right flags must not write.
 */

type Mix = 'mixed' | 'wrong' | 'right';

interface Phase {
  run: number;
  mix: Mix;
  rps: number;
  latency: Distribution;
  requests: number;
  mismatches: number;
  non200: number;
  statusWrites: number;
  /** Solves the API recorded (its own counter): one status write each. */
  solveWrites: number;
  /** Status patches the apiserver refused (a concurrent solve wrote first). */
  rejectedStatusWrites: number;
  sessionGets: number;
  rightSubmissions: number;
  /** Sessions that became solved during the phase; each should cost exactly one status write. */
  newlySolved: number;
  window: Window;
  /** CPU of the API process and of the load generator, in % of one core. */
  serverCpuPercent: number;
  loadCpuPercent: number;
  loopLagP99Ms: number;
  cpu: CpuUsage;
}

/** Mixed flags at a fixed offered rate (open loop), latency timed from when each was due. */
interface PacedPhase {
  run: number;
  offered: number;
  rps: number;
  latency: Distribution;
  completed: number;
  errors: number;
  mismatches: number;
  non200: number;
  maxBacklog: number;
  serverCpuPercent: number;
  loadCpuPercent: number;
  /** The event loops' delays over the phase: the API's (its own metric) and the load generator's. */
  apiLoopLagP99Ms: number;
  loadLoopDelayP99Ms: number;
  loadLoopDelayMaxMs: number;
}

interface Target {
  session: string;
  challenge: string;
  user: string;
  flag: string;
}

export async function flagsScenario(ctx: BenchContext): Promise<ScenarioResult> {
  const sessions = pick(ctx, 200, 30);
  const users = sessions / 2;
  const connections = pick(ctx, 50, 20);
  const phaseSeconds = pick(ctx, 10, 2);
  const pacedRate = pick(ctx, 10_000, 5_000);
  const ns = 'bench-flags';
  // BENCH_FLAG_MIXES=wrong (say) runs only some mixes, e.g. to profile one path by itself.
  const mixes = (process.env.BENCH_FLAG_MIXES ?? 'mixed,wrong,right').split(',').filter((m): m is Mix => m === 'mixed' || m === 'wrong' || m === 'right');
  await prepareNamespace(ctx, ns);
  const dynamic = challengeDocs().filter((c) => !c.spec.flag?.static).map((c) => c.metadata.name);
  const engine = engineFor(ctx, ns, 'flags-server', { tsxEntry: join(REPO_ROOT, 'bench', 'flag-server.ts') });
  const observer = Observer.sessions(ctx.kube, ns);
  const phases: Phase[] = [];
  const paced: PacedPhase[] = [];
  const tables: Table[] = [];
  try {
    await engine.start();
    await engine.waitReady();
    await observer.start();
    const names = Array.from({ length: users }, (_, i) => userName(i));
    const tokens = await issueTokens(ctx, names);
    const specs = Array.from({ length: sessions }, (_, i) => ({ name: `f-${i}`, user: names[i % users] as string, challenge: dynamic[Math.floor(i / users) % dynamic.length] as string }));
    ctx.log(`  creating ${sessions} sessions for ${users} users`);
    await pool(specs, 20, (s) => createSessionDirect(ctx.kube, ns, s.name, s.challenge, s.user, Date.now() + 3 * 3_600_000));
    const allRunning = await observer.until(() => observer.count('Running', specs.map((s) => s.name)) >= sessions, pick(ctx, 300_000, 60_000));
    if (!allRunning) throw new Error(`only ${observer.count('Running')} of ${sessions} sessions reached Running`);
    const targets: Target[] = await pool(specs, 20, async (s) => {
      const secret = await ctx.kube.core.readNamespacedSecret({ name: `${s.name}-flag`, namespace: ns });
      return { session: s.name, challenge: s.challenge, user: s.user, flag: Buffer.from(secret.data?.flag ?? '', 'base64').toString('utf8') };
    });

    // Warm-up, not measured: the first requests pay for JIT compilation and connection set-up.
    await phase(ctx, engine, tokens, targets, 'wrong', connections, 2, -1, () => 0);
    for (let run = 0; run < ctx.runs; run++) {
      for (const mix of mixes) {
        const solved = () => specs.filter((x) => observer.last.get(x.name)?.status?.solved).length;
        const p = await phase(ctx, engine, tokens, targets, mix, connections, phaseSeconds, run, solved);
        phases.push(p);
        ctx.log(`  run ${run + 1}/${ctx.runs} ${mix}: ${Math.round(p.rps)} req/s, p99 ${p.latency.p99.toFixed(2)} ms, ${p.solveWrites} solve writes (${p.statusWrites} status patches in all), ${p.mismatches} wrong answers`);
      }
      if (mixes.includes('mixed')) {
        const p = await pacedPhase(engine, tokens, targets, connections, pacedRate, phaseSeconds, run);
        paced.push(p);
        ctx.log(`  run ${run + 1}/${ctx.runs} mixed at ${pacedRate} req/s offered: ${Math.round(p.rps)} req/s, p99 ${p.latency.p99.toFixed(2)} ms from the due time, backlog max ${p.maxBacklog}, ${p.mismatches} wrong answers`);
      }
    }
    const solved = specs.filter((s) => observer.last.get(s.name)?.status?.solved).length;
    tables.push({
      title: 'Per phase',
      columns: ['run', 'mix', 'req/s', 'p50 ms', 'p99 ms', 'max ms', 'requests', 'right flags sent', 'newly solved', 'solve writes by the API', 'status patches by all (+ refused)', 'session GETs', 'wrong answers', 'non-200', 'API CPU %', 'load generator CPU %', 'API event-loop delay p99 ms'],
      rows: phases.map((p) => [p.run + 1, p.mix, p.rps, p.latency.p50, p.latency.p99, p.latency.max, p.requests, p.rightSubmissions, p.newlySolved, p.solveWrites, `${p.statusWrites} (+${p.rejectedStatusWrites})`, p.sessionGets, p.mismatches, p.non200, p.serverCpuPercent, p.loadCpuPercent, p.loopLagP99Ms]),
    });
    tables.push({
      title: 'CPU used during each phase (cores, averaged; "engine" is the API process)',
      columns: ['run', 'mix', ...cpuColumns()],
      rows: phases.map((p) => [p.run + 1, p.mix, ...cpuRow(p.cpu)]),
    });
    if (paced.length > 0) {
      tables.push({
        title: `Mixed flags at ${pacedRate.toLocaleString('en-US')} req/s offered (open loop, ${connections} connections)`,
        columns: ['run', 'offered', 'req/s', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'answered', 'errors', 'non-200', 'wrong answers', 'most waiting for a connection', 'API CPU %', 'load generator CPU %', 'API event-loop delay p99 ms', 'load generator event-loop delay p99 / max ms'],
        rows: paced.map((p) => [p.run + 1, p.offered, p.rps, p.latency.p50, p.latency.p90, p.latency.p99, p.latency.max, p.completed, p.errors, p.non200, p.mismatches, p.maxBacklog, p.serverCpuPercent, p.loadCpuPercent, p.apiLoopLagP99Ms, `${p.loadLoopDelayP99Ms.toFixed(1)} / ${p.loadLoopDelayMaxMs.toFixed(1)}`]),
      });
    }
    const of = (mix: Mix) => phases.filter((p) => p.mix === mix);
    const total = (f: (p: Phase) => number) => phases.reduce((n, p) => n + f(p), 0);
    const newlySolved = total((p) => p.newlySolved);
    const repeatWrites = total((p) => Math.max(0, p.solveWrites - p.newlySolved));
    const refused = total((p) => p.rejectedStatusWrites);
    const rightSent = total((p) => p.rightSubmissions);
    return {
      id: 'flags',
      title: '2. Flag validation',
      config: { sessions, users, concurrency: connections, 'seconds per phase': phaseSeconds, 'wrong-flag rate limits': 'off (buildApp rateLimit: false)' },
      notes: [
        'The API runs in its own process (bench/flag-server.ts: the same composition as src/main.ts - caches, controller and API - with `buildApp({ rateLimit: false })`), because the wrong-flag limiter cannot be switched off through the environment. Load comes from autocannon in the benchmark process; both share the two cores with the control plane.',
        `Every user holds two sessions (of two dynamic-flag challenges). Submissions alternate between the two request forms ({sessionId, flag} and {challenge, flag}); "mixed" sends the right flag half of the time. Right flags are read from the sessions' flag Secrets; wrong ones are random strings of the same format.`,
        `Solve writes: ${rightSent} right flags were sent in all and ${newlySolved} sessions became solved (${solved} of ${sessions} in the end); the API recorded ${total((p) => p.solveWrites)} solves (its challenge_engine_solves_total, one status write each; one per newly solved session expected). The apiserver counted ${total((p) => p.statusWrites)} session status patches from all clients, the controller's included, and refused ${refused} more (a concurrent submission for the same session had written first). Solve writes beyond one per newly solved session: ${repeatWrites} (0 expected).`,
        'Before the measured phases, 2 s of wrong flags warm the API up (JIT compilation, connections); they are not counted.',
        'Session GETs: reads of ChallengeSession objects the apiserver served during the phase (the engine reads the session live before recording a solve).',
        `Full speed (the three mixes): autocannon, closed loop: each of the ${connections} connections sends its next request as soon as the last is answered, so the server is saturated and the mean latency is the number of connections over the throughput (Little's law); these phases measure throughput. At ${pacedRate.toLocaleString('en-US')} req/s offered (bench/lib/paced-load.ts): request i is due at start + i / rate and goes out on the first free one of ${connections} keep-alive connections; its latency is timed from when it was due, so waiting for a connection counts (no coordinated omission); the first second at that rate opens the connections and is not counted. This phase measures latency at the target rate, after the mixed phase of the same run (those sessions already solved).`,
      ],
      figures: [
        figure('flags.mixed_rps', 'mixed right/wrong: throughput', 'req/s', of('mixed').map((p) => p.rps), { op: '>=', value: 10_000, text: '>= 10,000 req/s' }),
        figure('flags.mixed_p99_ms', 'mixed right/wrong: latency p99 (closed loop, at full speed)', 'ms', of('mixed').map((p) => p.latency.p99)),
        ...(paced.length > 0
          ? [
              figure('flags.paced_rps', `mixed at ${pacedRate.toLocaleString('en-US')} req/s offered: throughput`, 'req/s', paced.map((p) => p.rps)),
              figure('flags.paced_p99_ms', `mixed at ${pacedRate.toLocaleString('en-US')} req/s offered: latency p99 (from the due time)`, 'ms', paced.map((p) => p.latency.p99), { op: '<', value: 10, text: '< 10 ms' }),
            ]
          : []),
        figure('flags.wrong_rps', 'wrong flags only: throughput', 'req/s', of('wrong').map((p) => p.rps)),
        figure('flags.wrong_p99_ms', 'wrong flags only: latency p99', 'ms', of('wrong').map((p) => p.latency.p99)),
        figure('flags.right_rps', 'right flags only (already solved): throughput', 'req/s', of('right').map((p) => p.rps)),
        figure('flags.right_p99_ms', 'right flags only (already solved): latency p99', 'ms', of('right').map((p) => p.latency.p99)),
        figure('flags.first_solve_writes', 'status writes per newly solved session', 'writes', [total((p) => p.solveWrites) / Math.max(1, newlySolved)], { op: '<=', value: 1, text: '1' }),
        figure('flags.repeat_solve_writes', 'status writes by right flags for solved sessions', 'writes', [repeatWrites], { op: '~0', value: 0, text: '0' }),
      ],
      tables,
      details: { phases: phases.map(({ window: _w, ...p }) => p), solved },
      failures: [
        ...phases.filter((p) => p.mismatches > 0).map((p) => `run ${p.run + 1} ${p.mix}: ${p.mismatches} flags judged wrongly`),
        ...phases.filter((p) => p.non200 > 0).map((p) => `run ${p.run + 1} ${p.mix}: ${p.non200} answers other than 200`),
        ...paced.filter((p) => p.mismatches > 0 || p.non200 > 0 || p.errors > 0).map((p) => `run ${p.run + 1} at ${p.offered} offered: ${p.mismatches} flags judged wrongly, ${p.non200} answers other than 200, ${p.errors} errors`),
        ...(repeatWrites > 0 ? [`right flags for solved sessions wrote ${repeatWrites} times`] : []),
      ],
      seconds: 0,
    };
  } finally {
    observer.stop();
    await engine.stop();
    if (ctx.profile) {
      for (const mix of mixes) {
        const [p] = await summarizeProfiles(`${ctx.workDir}/profiles/flags-server`, 15, phases.filter((x) => x.mix === mix).map((x) => x.window));
        if (p) tables.push(...profileTables(`the API process during the "${mix}" phases`, p));
      }
    }
    await cleanupNamespace(ctx, ns);
  }
}

async function pacedPhase(engine: EngineProcess, tokens: Map<string, string>, targets: Target[], connections: number, rate: number, durationSeconds: number, run: number): Promise<PacedPhase> {
  const answers = { mismatches: 0, non200: 0 };
  let k = 0;
  const cpu0 = await engine.cpuSeconds();
  const own0 = process.cpuUsage();
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  const load = await runPaced({
    url: engine.baseUrl,
    connections,
    ratePerSecond: rate,
    durationSeconds,
    warmupSeconds: 1,
    next: () => submission(targets, tokens, 'mixed', k++),
    onResponse: (r) => tallyAnswer(answers, r),
  });
  loop.disable();
  const cpu1 = await engine.cpuSeconds();
  const own = process.cpuUsage(own0);
  const em = await engine.metrics();
  const seconds = load.elapsedMs / 1000;
  return {
    run,
    offered: load.offered,
    rps: load.completed / seconds,
    latency: distribution(load.latencies),
    completed: load.completed,
    errors: load.errors,
    ...answers,
    maxBacklog: load.maxBacklog,
    serverCpuPercent: ((cpu1 - cpu0) / seconds) * 100,
    loadCpuPercent: ((own.user + own.system) / 1000 / load.elapsedMs) * 100,
    apiLoopLagP99Ms: metricSum(em, 'nodejs_eventloop_lag_p99_seconds') * 1000,
    loadLoopDelayP99Ms: loop.percentile(99) / 1e6,
    loadLoopDelayMaxMs: loop.max / 1e6,
  };
}

/**
 * One submission to a random target: its right flag (always for "right", half the time for
 * "mixed") or a random one of the same format, in the two request forms by turns. The tag is
 * whether the flag sent is right.
 */
function submission(targets: Target[], tokens: Map<string, string>, mix: Mix, i: number): LoadRequest {
  const t = targets[Math.floor(Math.random() * targets.length)] as Target;
  const right = mix === 'right' || (mix === 'mixed' && Math.random() < 0.5);
  const flag = right ? t.flag : randomFlag(t.flag);
  const body = i % 2 === 0 ? { sessionId: t.session, flag } : { challenge: t.challenge, flag };
  return { method: 'POST', path: '/api/flags', headers: { authorization: `Bearer ${tokens.get(t.user) as string}` }, body: JSON.stringify(body), tag: right };
}

/** Counts an answer that is not a 200, or whose verdict differs from what was sent. */
function tallyAnswer(tally: { mismatches: number; non200: number }, r: { status: number; body: string; tag: unknown }): void {
  if (r.status !== 200) tally.non200++;
  else if ((JSON.parse(r.body) as { correct: boolean }).correct !== r.tag) tally.mismatches++;
}

function randomFlag(like: string): string {
  const inner = like.replace(/^[^{]*\{|\}$/g, '');
  let s = '';
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  for (let i = 0; i < inner.length; i++) s += alphabet[Math.floor(Math.random() * alphabet.length)];
  return like.replace(inner, s);
}

function sessionGets(before: MetricsSnapshot, after: MetricsSnapshot): number {
  let n = 0;
  for (const [k, v] of after.requests) {
    const key = parseKey(k);
    if (key.verb === 'GET' && key.resource === 'challengesessions' && !key.subresource) n += v - (before.requests.get(k) ?? 0);
  }
  return n;
}

async function phase(
  ctx: BenchContext,
  engine: EngineProcess,
  tokens: Map<string, string>,
  targets: Target[],
  mix: Mix,
  connections: number,
  durationSeconds: number,
  run: number,
  solvedCount: () => number,
): Promise<Phase> {
  const solvedBefore = solvedCount();
  const answers = { mismatches: 0, non200: 0 };
  let rightSubmissions = 0;
  let k = 0;
  const before = await scrape(ctx.cluster);
  const solvesBefore = metricSum(await engine.metrics(), 'challenge_engine_solves_total');
  const cpu0 = await engine.cpuSeconds();
  const own0 = process.cpuUsage();
  const meter = cpuMeter(ctx, engine);
  const w0 = monotonicMicros();
  const load = await runLoad({
    url: engine.baseUrl,
    connections,
    durationSeconds,
    bodies: true,
    next: () => submission(targets, tokens, mix, k++),
    onResponse: (r) => {
      if (r.tag === true) rightSubmissions++;
      tallyAnswer(answers, r);
    },
  });
  const w1 = monotonicMicros();
  const cpu = meter.stop();
  const cpu1 = await engine.cpuSeconds();
  const own = process.cpuUsage(own0);
  const em = await engine.metrics();
  // The apiserver counts a request once it has answered; give the last ones a moment.
  await new Promise((r) => setTimeout(r, 1000));
  const after = await scrape(ctx.cluster);
  const writes = writesBetween(before, after);
  const rejected = rejectedBetween(before, after);
  const statusKey = 'PATCH ctf.challenge-engine.io/challengesessions/status';
  return {
    run,
    mix,
    rps: load.tagged / (load.elapsedMs / 1000),
    latency: distribution(load.latencies),
    requests: load.tagged,
    ...answers,
    statusWrites: (writes.get(statusKey) ?? 0) - (rejected.get(statusKey) ?? 0),
    solveWrites: metricSum(em, 'challenge_engine_solves_total') - solvesBefore,
    rejectedStatusWrites: rejected.get(statusKey) ?? 0,
    sessionGets: sessionGets(before, after),
    rightSubmissions,
    newlySolved: solvedCount() - solvedBefore,
    window: [w0, w1],
    serverCpuPercent: ((cpu1 - cpu0) / (load.elapsedMs / 1000)) * 100,
    loadCpuPercent: ((own.user + own.system) / 1000 / load.elapsedMs) * 100,
    loopLagP99Ms: metricSum(em, 'nodejs_eventloop_lag_p99_seconds') * 1000,
    cpu,
  };
}
