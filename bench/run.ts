/**
 * Benchmark runner: builds the engine, starts a throwaway local control plane, runs the
 * scenarios, writes docs/benchmarks.{json,md} and stops everything it started.
 *
 *   npm run bench                 full sizes (the targets are set for these); 15-25 minutes
 *   npm run bench -- --quick      small sizes, a smoke run; under two minutes
 *   options: --runs N  --only spawn,flags,expiry,writes,access,queue,scale  --profile  --out DIR  --keep-work
 *   (the report keeps the latest results of scenarios a run leaves out; --cleanup deletes each
 *   scenario's namespaces and waits for them between scenarios)
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { REPO_ROOT } from '../scripts/lib/control-plane.js';
import { machineInfo, startBenchCluster, type BenchCluster } from './lib/cluster.js';
import { createContext, settleDeletions, type BenchContext } from './lib/context.js';
import { liveEngines } from './lib/engine-process.js';
import { writeReport, type Mode, type ScenarioResult } from './lib/report.js';
import { expiryScenario } from './scenarios/expiry.js';
import { flagsScenario } from './scenarios/flags.js';
import { scaleScenario } from './scenarios/scale.js';
import { spawnScenario } from './scenarios/spawn.js';
import { writesScenario } from './scenarios/writes.js';
import { accessScenario } from './scenarios/access.js';
import { poolsScenario } from './scenarios/pools.js';
import { queueScenario } from './scenarios/queue.js';

const SCENARIOS: Record<string, (ctx: BenchContext) => Promise<ScenarioResult>> = {
  spawn: spawnScenario,
  flags: flagsScenario,
  expiry: expiryScenario,
  writes: writesScenario,
  access: accessScenario,
  pools: poolsScenario,
  queue: queueScenario,
  // Last: it leaves thousands of objects behind for the teardown.
  scale: scaleScenario,
};

const log = (m: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${m}\n`);

function usage(): never {
  process.stderr.write(
    'usage: npm run bench [-- --quick] [--runs N] [--only spawn,flags,expiry,writes,access,queue,scale] [--profile] [--out DIR] [--keep-work] [--cleanup] [--scale-sessions N]\n',
  );
  process.exit(2);
}

async function newestMtime(dir: string): Promise<number> {
  let newest = 0;
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? await newestMtime(p) : (await stat(p)).mtimeMs);
  }
  return newest;
}

/** Runs `npm run build` unless dist/ is newer than every source file. */
async function build(): Promise<void> {
  const built = await stat(join(REPO_ROOT, 'dist', 'main.js')).then((s) => s.mtimeMs).catch(() => 0);
  const sources = Math.max(await newestMtime(join(REPO_ROOT, 'src')), (await stat(join(REPO_ROOT, 'tsconfig.build.json'))).mtimeMs, (await stat(join(REPO_ROOT, 'tsconfig.json'))).mtimeMs);
  if (built > sources) {
    log('dist/ is up to date');
    return;
  }
  log('building the engine (npm run build)');
  const child = spawn('npm', ['run', '-s', 'build'], { cwd: REPO_ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`npm run build failed with exit code ${String(code)}`);
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      runs: { type: 'string' },
      only: { type: 'string' },
      profile: { type: 'boolean', default: false },
      out: { type: 'string' },
      'keep-work': { type: 'boolean', default: false },
      cleanup: { type: 'boolean', default: false },
      'scale-sessions': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) usage();
  const mode: Mode = values.quick ? 'quick' : 'full';
  const runs = values.runs ? Number(values.runs) : mode === 'full' ? 3 : 1;
  if (!Number.isInteger(runs) || runs < 1 || runs > 10) usage();
  const only = values.only ? values.only.split(',').map((s) => s.trim()) : Object.keys(SCENARIOS);
  for (const s of only) if (!(s in SCENARIOS)) usage();
  const outDir = values.out ?? join(REPO_ROOT, 'docs');
  const scaleSessions = values['scale-sessions'] === undefined ? undefined : Number(values['scale-sessions']);
  if (scaleSessions !== undefined && (!Number.isInteger(scaleSessions) || scaleSessions < 10 || scaleSessions > 50_000)) usage();
  const argv = process.argv.slice(2).join(' ');
  const started = Date.now();

  let cluster: BenchCluster | undefined;
  let clusterStarting: Promise<BenchCluster> | undefined;
  const workDir = await mkdtemp(join(tmpdir(), 'challenge-engine-bench-work-'));
  let cleaned: Promise<void> | undefined;
  let interrupted = false;
  // One clean-up, however many paths (signal, normal end) ask for it; all of them wait for it.
  const cleanup = () => (cleaned ??= stopEverything());
  const stopEverything = async () => {
    await Promise.all([...liveEngines].map((e) => e.kill().catch(() => undefined)));
    // A signal during start-up: let the start finish (it is bounded), then stop what it started.
    cluster ??= await clusterStarting?.catch(() => undefined);
    await cluster?.stop().catch((err: unknown) => log(`could not stop the cluster: ${String(err)}`));
  };
  const onSignal = (signal: string) => {
    interrupted = true;
    log(`${signal}: stopping the engine processes and the cluster (the report keeps only the scenarios already finished)`);
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', () => onSignal('SIGINT'));
  process.once('SIGTERM', () => onSignal('SIGTERM'));

  const results: ScenarioResult[] = [];
  let failed = false;
  try {
    log(`${mode} mode, ${runs} run(s) per scenario: ${only.join(', ')}`);
    // Building and starting the control plane do not depend on each other.
    clusterStarting = startBenchCluster((m) => log(`cluster: ${m}`));
    const [built, up] = await Promise.allSettled([build(), clusterStarting]);
    if (up.status === 'fulfilled') cluster = up.value;
    if (built.status === 'rejected') throw built.reason;
    if (up.status === 'rejected') throw up.reason;
    if (!cluster) throw new Error('the control plane did not start');
    const machine = await machineInfo(cluster);
    const ctx = createContext({ mode, cluster, workDir, runs, profile: values.profile, cleanup: values.cleanup, scaleSessions, log });
    for (const id of only) {
      if (interrupted) break;
      const fn = SCENARIOS[id] as (ctx: BenchContext) => Promise<ScenarioResult>;
      log(`scenario ${id}`);
      const t = Date.now();
      try {
        const r = await fn(ctx);
        r.seconds = (Date.now() - t) / 1000;
        r.ranAt = new Date(t).toISOString();
        results.push(r);
        log(`  scenario ${id} took ${r.seconds.toFixed(0)} s`);
        for (const f of r.failures) log(`  CHECK FAILED: ${f}`);
        if (r.failures.length) failed = true;
        for (const f of r.figures) {
          const verdict = f.target ? (f.met ? 'met' : 'MISSED') : '';
          log(`  ${f.label}: ${f.median} ${f.unit} [${f.min}..${f.max}] ${f.target ? `target ${f.target.text}: ${verdict}` : ''}`);
        }
      } catch (err) {
        failed = true;
        const message = err instanceof Error ? err.message : String(err);
        log(`  scenario ${id} failed: ${err instanceof Error ? (err.stack ?? message) : message}`);
        results.push({ id, title: id, config: {}, notes: [], figures: [], tables: [], failures: [], error: message, seconds: (Date.now() - t) / 1000 });
        await Promise.all([...liveEngines].map((e) => e.kill().catch(() => undefined)));
      }
      if (interrupted) break;
      // Written after every scenario, so an interrupted run keeps what it finished; scenarios
      // not (yet) run keep their latest results of this mode.
      const files = await writeReport(outDir, {
        mode,
        date: new Date().toISOString(),
        command: `npm run bench${argv ? ` -- ${argv}` : ''}`,
        machine: { ...machine, loadAverageAtEnd: loadavg().map((v) => Math.round(v * 100) / 100) },
        totalSeconds: (Date.now() - started) / 1000,
        scenarios: [...results],
      });
      log(`  wrote ${files.json} and ${files.md}`);
      if (id !== only[only.length - 1] && values.cleanup) await settleDeletions(ctx).catch((err: unknown) => log(`  could not remove namespaces: ${String(err)}`));
    }
    if (interrupted) return 130;
  } catch (err) {
    failed = true;
    log(`benchmark failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  } finally {
    await cleanup();
    if (values['keep-work'] || values.profile || failed) log(`engine logs${values.profile ? ' and CPU profiles' : ''} are in ${workDir}`);
    else await rm(workDir, { recursive: true, force: true });
  }
  log(`done in ${((Date.now() - started) / 1000).toFixed(0)} s${failed ? ' with failures' : ''}`);
  return failed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    log(String(err));
    process.exit(1);
  },
);
