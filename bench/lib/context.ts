import { join } from 'node:path';
import { createTokenIssuer, type TokenIssuer } from '../../src/http/auth.js';
import type { BenchCluster } from './cluster.js';
import { CpuMeter } from './cpu.js';
import { BENCH_TOKEN_SECRET, EngineProcess, type EngineOptions } from './engine-process.js';
import { createBenchKube, createNamespace, deleteNamespace, installChallenges, namespaceGone, PSA_LABELS, type Kube } from './kube.js';
import type { Mode } from './report.js';

/** What every scenario gets from the runner. */
export interface BenchContext {
  mode: Mode;
  cluster: BenchCluster;
  kube: Kube;
  /** Scratch directory for engine logs and CPU profiles. */
  workDir: string;
  /** Repetitions per scenario. */
  runs: number;
  /** Write CPU profiles of the engine processes and summarise them. */
  profile: boolean;
  issuer: TokenIssuer;
  log: (message: string) => void;
  /** Active sessions in the scale scenario, instead of the mode's size. */
  scaleSessions?: number;
  /** Delete each scenario's namespaces between scenarios (settleDeletions). */
  cleanup: boolean;
  /** Namespaces to delete between scenarios. */
  deleting: string[];
}

export function createContext(o: Omit<BenchContext, 'kube' | 'issuer' | 'deleting'>): BenchContext {
  return { ...o, kube: createBenchKube(o.cluster.kubeconfig), issuer: createTokenIssuer(BENCH_TOKEN_SECRET), deleting: [] };
}

/** CPU accounting for the control plane, this process and (when given) an engine process. */
export function cpuMeter(ctx: BenchContext, engine?: EngineProcess): CpuMeter {
  return new CpuMeter({ ...ctx.cluster.state.pids, benchmark: process.pid, ...(engine ? { engine: engine.pid } : {}) });
}

export function pick<T>(ctx: BenchContext, full: T, quick: T): T {
  return ctx.mode === 'full' ? full : quick;
}

/** A namespace with the sample challenges (plus `extraChallenges` copies); returns their names. */
export async function prepareNamespace(ctx: BenchContext, namespace: string, extraChallenges = 0): Promise<string[]> {
  await createNamespace(ctx.kube, namespace, PSA_LABELS);
  return installChallenges(ctx.kube, namespace, extraChallenges);
}

/**
 * Marks a scenario's namespace for deletion once its measurements are done. With --cleanup the
 * runner deletes them between scenarios and waits, so garbage collection never overlaps a
 * measurement; by default everything is left to the cluster teardown (the fake nodes and the
 * service range hold a full run).
 */
export async function cleanupNamespace(ctx: BenchContext, namespace: string): Promise<void> {
  if (ctx.cleanup) ctx.deleting.push(namespace);
}

/** Deletes the namespaces marked by cleanupNamespace and waits (bounded) until they are gone. */
export async function settleDeletions(ctx: BenchContext, maxMs = 600_000): Promise<void> {
  if (ctx.deleting.length === 0) return;
  const t = Date.now();
  const names = ctx.deleting.splice(0);
  await Promise.all(names.map((n) => deleteNamespace(ctx.kube, n)));
  const gone = await Promise.all(names.map((n) => namespaceGone(ctx.kube, n, maxMs)));
  const left = names.filter((_, i) => !gone[i]);
  ctx.log(`  removed ${names.length - left.length} namespace(s) in ${((Date.now() - t) / 1000).toFixed(0)} s${left.length ? `; still terminating: ${left.join(', ')}` : ''}`);
}

/**
 * An engine process for a scenario. BENCH_ENGINE_ENTRY=<file.ts> runs the engine from another
 * entry point (through tsx) wherever `node dist/main.js` would run, to measure a change to the
 * composition (a different client setup, say) before making it.
 */
export function engineFor(ctx: BenchContext, namespace: string, tag: string, opts: Partial<EngineOptions> = {}): EngineProcess {
  const entry = process.env.BENCH_ENGINE_ENTRY;
  return new EngineProcess({
    kubeconfig: ctx.cluster.kubeconfig,
    namespace,
    logFile: join(ctx.workDir, `${tag}.log`),
    ...(ctx.profile ? { cpuProfileDir: join(ctx.workDir, 'profiles', tag) } : {}),
    ...(entry ? { tsxEntry: entry } : {}),
    ...opts,
  });
}

export async function issueTokens(ctx: BenchContext, users: string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const u of users) out.set(u, await ctx.issuer.issue({ user: u, ttlSeconds: 6 * 3600 }));
  return out;
}

export function userName(i: number): string {
  return `bench-user-${String(i).padStart(5, '0')}`;
}

export const seconds = (ms: number) => ms / 1000;
