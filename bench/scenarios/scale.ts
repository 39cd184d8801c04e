import { isEngineWrite, scrape, sum, toRecord, waitForQuiet, writeTotal, writesBetween, type MetricsSnapshot } from '../lib/apiserver-metrics.js';
import { cpuMeter, engineFor, pick, prepareNamespace, seconds, userName, type BenchContext } from '../lib/context.js';
import { metricSum, type EngineProcess } from '../lib/engine-process.js';
import { challengeDocs, createSessionDirect, Observer, pool } from '../lib/kube.js';
import { cpuColumns, cpuRow, type CpuUsage } from '../lib/cpu.js';
import { profileTables, summarizeProfiles } from '../lib/profile.js';
import type { ScenarioResult, Table } from '../lib/report.js';
import { figure } from '../lib/stats.js';

/**
 * Scale: many active sessions created directly and provisioned by the engine; then the engine
 * process's memory, its CPU while nothing happens, and how long it takes after a crash (SIGKILL)
 * and restart until its caches are synced, a full pass of reconciles is done, the apiserver
 * write counter has stopped moving and a session created after the restart is Running.
 */

interface Restart {
  cachesSyncedS: number;
  controllerStartedS: number;
  passDoneS: number;
  probeRunningS: number;
  lastWriteS: number;
  resyncS: number;
  reconciles: number;
  /** Engine writes during the resync, the probe session's own provisioning excluded. */
  writes: Record<string, number>;
  engineWrites: number;
  /** What the probe itself cost, taken off engineWrites. */
  probeWrites: number;
  rssMB: number;
  cpu: CpuUsage;
}

interface Idle {
  cpuPercent: number;
  rssMB: number;
  writes: number;
}

const MB = 1024 * 1024;

export async function scaleScenario(ctx: BenchContext): Promise<ScenarioResult> {
  const n = ctx.scaleSessions ?? pick(ctx, 10_000, 150);
  const idleSeconds = pick(ctx, 30, 10);
  const ns = 'bench-scale';
  await prepareNamespace(ctx, ns);
  const dynamic = challengeDocs().filter((c) => !c.spec.flag?.static).map((c) => c.metadata.name);
  let engine = engineFor(ctx, ns, 'scale-engine');
  const observer = Observer.sessions(ctx.kube, ns);
  const idles: Idle[] = [];
  const restarts: Restart[] = [];
  const tables: Table[] = [];
  let provisionS = Number.NaN;
  let calibration = { writes: 0, statusWrites: 0 };
  try {
    await engine.start();
    await engine.waitReady();
    await observer.start();
    const names = Array.from({ length: n }, (_, i) => `x-${String(i).padStart(6, '0')}`);
    ctx.log(`  creating ${n} sessions directly (concurrency 50)`);
    const t0 = Date.now();
    await pool(names, 50, (name, i) => createSessionDirect(ctx.kube, ns, name, dynamic[i % dynamic.length] as string, userName(i), Date.now() + 6 * 3_600_000));
    const createdS = seconds(Date.now() - t0);
    ctx.log(`  created in ${createdS.toFixed(1)} s; waiting for Running`);
    const ok = await observer.until(() => observer.count('Running', names) >= n, pick(ctx, 3_600_000, 90_000));
    provisionS = seconds(Date.now() - t0);
    if (!ok) throw new Error(`only ${observer.count('Running', names)} of ${n} sessions reached Running within the wait`);
    ctx.log(`  all ${n} Running after ${provisionS.toFixed(1)} s`);
    await waitForQuiet(ctx.cluster, pick(ctx, 3_000, 2_000), 120_000, isEngineWrite);
    // What provisioning one session writes, so the probe's own writes can be told apart from
    // resync writes after a restart.
    calibration = await calibrate(ctx, observer, ns, n);
    ctx.log(`  one session costs ${calibration.writes} engine writes to provision, ${calibration.statusWrites} of them status writes`);

    for (let i = 0; i < ctx.runs; i++) {
      idles.push(await idleWindow(ctx, engine, idleSeconds));
      const last = idles[idles.length - 1] as Idle;
      ctx.log(`  idle ${i + 1}/${ctx.runs}: CPU ${last.cpuPercent.toFixed(2)}% over ${idleSeconds} s, RSS ${last.rssMB.toFixed(0)} MB, ${last.writes} engine writes`);
    }
    for (let i = 0; i < ctx.runs; i++) {
      const r = await restart(ctx, engine, observer, ns, n, i, calibration.writes - calibration.statusWrites);
      engine = r.engine;
      restarts.push(r.result);
      ctx.log(`  restart ${i + 1}/${ctx.runs}: resync ${r.result.resyncS.toFixed(2)} s (caches ${r.result.cachesSyncedS.toFixed(2)} s, controller ${r.result.controllerStartedS.toFixed(2)} s, pass ${r.result.passDoneS.toFixed(2)} s, probe Running ${r.result.probeRunningS.toFixed(2)} s), ${r.result.engineWrites} writes, RSS ${r.result.rssMB.toFixed(0)} MB`);
    }
  } finally {
    observer.stop();
    await engine.stop();
    if (ctx.profile) {
      const [p] = await summarizeProfiles(`${ctx.workDir}/profiles/scale-engine`);
      if (p) tables.push(...profileTables('the engine after its last restart (resync, idle)', p));
    }
    // The namespace is left to the cluster teardown: deleting this many objects takes minutes.
  }
  return {
    id: 'scale',
    title: `4. Scale (${n.toLocaleString('en-US')} sessions)`,
    config: { 'active sessions': n, 'idle window': `${idleSeconds} s`, CTF_RESYNC_SECONDS: '600 (default)', 'restart log level': 'info' },
    notes: [
      `Sessions are created directly (concurrency 50) across ${dynamic.length} dynamic-flag challenges; the engine (\`node dist/main.js\`) provisions them: ${n} sessions, ${4 * n} children. Created and all Running after ${Number.isFinite(provisionS) ? provisionS.toFixed(1) : 'n/a'} s.`,
      'RSS: VmRSS of the engine process from /proc, at the end of each idle window and after each restart\'s resync. Idle CPU: utime + stime from /proc/<pid>/stat over the window, as a share of one core.',
      'Resync after restart: SIGKILL, start again, create a probe session at once (named to sort after every other session, so the initial pass reaches it last). Resync ends at the latest of: the reconcile counter on the engine\'s /metrics reaching the number of sessions with an empty queue, the probe seen Running, and the last change of the apiserver\'s engine-write counter (sampled every second). "Caches synced" and "Controller started" are the engine\'s own log lines, timed from the process start.',
      `Resync writes: engine writes counted from the kill until the end of the resync, less what provisioning the probe cost: the ${calibration.writes - calibration.statusWrites} writes besides status that a calibration session (alone on the idle engine) cost (${calibration.writes} in all, ${calibration.statusWrites} status writes), plus the probe's own status writes, counted as the status versions a watch saw (two or three, as the engine saw its Pod's steps).`,
    ],
    figures: [
      figure('scale.provision_rate', 'provisioning throughput (create to all Running)', 'sessions/s', [n / provisionS]),
      figure('scale.rss_mb', 'engine RSS', 'MB', [...idles.map((x) => x.rssMB), ...restarts.map((r) => r.rssMB)], { op: '<=', value: 250, text: '<= 250 MB' }),
      figure('scale.resync_s', 'full resync after restart', 's', restarts.map((r) => r.resyncS), { op: '<=', value: 10, text: '<= 10 s' }),
      figure('scale.caches_synced_s', 'restart: caches synced', 's', restarts.map((r) => r.cachesSyncedS)),
      figure('scale.controller_started_s', 'restart: controller started', 's', restarts.map((r) => r.controllerStartedS)),
      figure('scale.resync_writes', 'restart: engine writes during resync (less what provisioning the probe costs)', 'writes', restarts.map((r) => r.engineWrites), { op: '~0', value: 0, text: '0' }),
      figure('scale.idle_cpu_pct', 'idle CPU', '% of a core', idles.map((x) => x.cpuPercent), { op: '<=', value: 1, text: '~0 (<= 1%)' }),
    ],
    tables: [
      {
        title: 'Restarts (seconds from process start)',
        columns: ['restart', 'caches synced', 'controller started', 'pass done', 'probe Running', 'last write', 'resync', 'reconciles', 'engine writes', 'RSS MB'],
        rows: restarts.map((r, i) => [i + 1, r.cachesSyncedS, r.controllerStartedS, r.passDoneS, r.probeRunningS, r.lastWriteS, r.resyncS, r.reconciles, r.engineWrites, r.rssMB]),
      },
      {
        title: 'CPU used from each restart until the end of its resync and the settling after it (cores, averaged)',
        columns: ['restart', ...cpuColumns()],
        rows: restarts.map((r, i) => [i + 1, ...cpuRow(r.cpu)]),
      },
      ...(restarts.some((r) => Object.keys(r.writes).length > 0)
        ? [{ title: 'Engine writes during the first restart\'s resync, probe included', columns: ['request', 'count'], rows: Object.entries(restarts[0]?.writes ?? {}) }]
        : []),
      ...tables,
    ],
    details: { idles, restarts, provisionSeconds: provisionS, calibration },
    failures: [],
    seconds: 0,
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function idleWindow(ctx: BenchContext, engine: EngineProcess, windowS: number): Promise<Idle> {
  const before = await scrape(ctx.cluster);
  const cpu0 = await engine.cpuSeconds();
  const t0 = Date.now();
  await sleep(windowS * 1000);
  const cpu1 = await engine.cpuSeconds();
  const elapsed = (Date.now() - t0) / 1000;
  const after = await scrape(ctx.cluster);
  return { cpuPercent: ((cpu1 - cpu0) / elapsed) * 100, rssMB: (await engine.rssBytes()) / MB, writes: sum(writesBetween(before, after), isEngineWrite) };
}

/**
 * What provisioning one session alone costs besides its status writes, which vary with timing
 * (a status for each step the engine saw the Pod take: two or three on this machine).
 */
async function calibrate(ctx: BenchContext, observer: Observer, ns: string, n: number): Promise<{ writes: number; statusWrites: number }> {
  const before = await scrape(ctx.cluster);
  const name = 'zz-calibration';
  observer.trackStatus(name);
  await createSessionDirect(ctx.kube, ns, name, challengeDocs()[0]?.metadata.name ?? 'pwn-echo', userName(n + 100), Date.now() + 3_600_000);
  if (!(await observer.until(() => observer.when(name, 'Running') !== undefined, 120_000))) throw new Error('the calibration session did not reach Running');
  await waitForQuiet(ctx.cluster, pick(ctx, 3_000, 2_000), 60_000, isEngineWrite);
  return { writes: sum(writesBetween(before, await scrape(ctx.cluster)), isEngineWrite), statusWrites: observer.statusVersions(name) };
}

async function restart(ctx: BenchContext, old: EngineProcess, observer: Observer, ns: string, n: number, i: number, probeOtherWrites: number): Promise<{ engine: EngineProcess; result: Restart }> {
  await old.kill();
  const before = await scrape(ctx.cluster);
  const engine = engineFor(ctx, ns, 'scale-engine', { env: { LOG_LEVEL: 'info' } });
  await engine.start();
  const meter = cpuMeter(ctx, engine);
  const t0 = engine.startedAt;
  const probe = `zz-probe-${i + 1}`;
  observer.trackStatus(probe);
  await createSessionDirect(ctx.kube, ns, probe, challengeDocs()[0]?.metadata.name ?? 'pwn-echo', userName(n + i), Date.now() + 3_600_000);
  const caches = await engine.milestone('Caches synced', 300_000);
  const controller = await engine.milestone('Controller started', 300_000);

  // Poll the engine's queue and the apiserver's write counter until both have settled.
  let passDone = Number.NaN;
  let lastWrite = t0;
  let lastCount = writeTotal(before, isEngineWrite);
  let reconciles = 0;
  let after: MetricsSnapshot = before;
  const deadline = Date.now() + 600_000;
  for (;;) {
    const m = await engine.metrics().catch(() => undefined);
    if (m) {
      reconciles = metricSum(m, 'controller_runtime_reconcile_total');
      const depth = metricSum(m, 'workqueue_depth');
      // n sessions, the calibration session and the probes of this and earlier restarts.
      if (Number.isNaN(passDone) && reconciles >= n + 2 + i && depth === 0) passDone = Date.now();
    }
    after = await scrape(ctx.cluster);
    const count = writeTotal(after, isEngineWrite);
    if (count !== lastCount) {
      lastCount = count;
      lastWrite = after.at;
    }
    const probeAt = observer.when(probe, 'Running');
    if (!Number.isNaN(passDone) && probeAt !== undefined && Date.now() - lastWrite > pick(ctx, 3_000, 2_000)) break;
    if (Date.now() > deadline) throw new Error('the engine did not finish its resync within 600 s');
    await sleep(1000);
  }
  const cpu = meter.stop();
  const probeAt = observer.when(probe, 'Running') as number;
  const writes = new Map([...writesBetween(before, after)].filter(([k]) => isEngineWrite(k)));
  // The probe's own cost: what the calibration wrote besides status, and the statuses it got.
  const probeWrites = probeOtherWrites + observer.statusVersions(probe);
  const engineWrites = Math.max(0, sum(writes) - probeWrites);
  const end = Math.max(passDone, probeAt, lastWrite);
  return {
    engine,
    result: {
      cachesSyncedS: seconds(caches.time - t0),
      controllerStartedS: seconds(controller.time - t0),
      passDoneS: seconds(passDone - t0),
      probeRunningS: seconds(probeAt - t0),
      lastWriteS: seconds(lastWrite - t0),
      resyncS: seconds(end - t0),
      reconciles,
      writes: toRecord(writes),
      engineWrites,
      probeWrites,
      rssMB: (await engine.rssBytes()) / MB,
      cpu,
    },
  };
}
