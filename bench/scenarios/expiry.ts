import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { ANNOTATION_EXPIRES_AT, GROUP, SESSION_PLURAL, VERSION } from '../../src/api/group.js';
import { cleanupNamespace, engineFor, pick, prepareNamespace, userName, type BenchContext } from '../lib/context.js';
import { challengeDocs, createSessionDirect, isoMs, Observer, pool, withRetry } from '../lib/kube.js';
import type { ScenarioResult } from '../lib/report.js';
import { distribution, figure, type Distribution } from '../lib/stats.js';

/**
 * Expiry precision. N sessions are created and provisioned with a far expiry; then their
 * expires-at annotations are moved (in expiry order) to instants spread evenly over a window
 * starting a few seconds later, the way an extension moves them. A watch timestamps each
 * deletion; the figure is deletion seen minus expiry.
 */

interface ExpiryRun {
  lagMs: Distribution;
  deleted: number;
  /** Sessions whose annotation was written after their new expiry had passed (left out). */
  late: number;
  sessions: number;
}

/**
 * From the start of the annotation patches to the first expiry. Every patch makes the engine
 * rewrite status.expiresAt, so the lead must cover the patches and the engine working through
 * them, or the first expiries queue behind that work.
 */
const leadMs = (ctx: BenchContext) => pick(ctx, 15_000, 3_000);

export async function expiryScenario(ctx: BenchContext): Promise<ScenarioResult> {
  const n = pick(ctx, 500, 50);
  const spreadMs = pick(ctx, 30_000, 10_000);
  const runs: ExpiryRun[] = [];
  for (let run = 0; run < ctx.runs; run++) {
    runs.push(await expiryRun(ctx, run, n, spreadMs));
    const r = runs[runs.length - 1] as ExpiryRun;
    ctx.log(`  run ${run + 1}/${ctx.runs}: ${r.deleted}/${n} deleted; lag p50 ${r.lagMs.p50.toFixed(0)} ms, p99 ${r.lagMs.p99.toFixed(0)} ms, max ${r.lagMs.max.toFixed(0)} ms`);
  }
  const late = runs.reduce((s, r) => s + r.late, 0);
  const missing = runs.reduce((s, r) => s + (r.sessions - r.late - r.deleted), 0);
  return {
    id: 'expiry',
    title: '3. Expiry precision',
    config: { sessions: n, 'expiries spread over': `${spreadMs / 1000} s`, 'expiry resolution': 'milliseconds (RFC 3339 with fraction)' },
    notes: [
      `Sessions are created directly and provisioned first; then each expires-at annotation is patched to its new instant, earliest first, with the first expiry ${leadMs(ctx) / 1000} s after the patching starts (each patch also makes the engine rewrite status.expiresAt; the lead lets it finish that first). Lag = the time a watch in the benchmark process sees the DELETED event minus the expiry instant; it includes the engine timer, the reconcile, the DELETE call and the watch delivery.`,
      ...(late ? [`${late} session(s) were left out because their annotation was written after their new expiry had passed.`] : []),
      ...(missing ? [`${missing} session(s) were not seen deleted within the wait; their lag counts as the wait time.`] : []),
    ],
    figures: [
      figure('expiry.p50_ms', 'deletion lag p50', 'ms', runs.map((r) => r.lagMs.p50)),
      figure('expiry.p99_ms', 'deletion lag p99', 'ms', runs.map((r) => r.lagMs.p99), { op: '<=', value: 1000, text: '<= 1000 ms' }),
      figure('expiry.max_ms', 'deletion lag max', 'ms', runs.map((r) => r.lagMs.max)),
    ],
    tables: [
      {
        title: 'Per run (ms)',
        columns: ['run', 'deleted', 'min', 'p50', 'p90', 'p99', 'max'],
        rows: runs.map((r, i) => [i + 1, `${r.deleted}/${r.sessions}`, r.lagMs.min, r.lagMs.p50, r.lagMs.p90, r.lagMs.p99, r.lagMs.max]),
      },
    ],
    details: { runs },
    failures: missing ? [`${missing} session(s) were not deleted within 15 s of the last expiry`] : [],
    seconds: 0,
  };
}

async function expiryRun(ctx: BenchContext, run: number, n: number, spreadMs: number): Promise<ExpiryRun> {
  const ns = `bench-expiry-${run + 1}`;
  await prepareNamespace(ctx, ns);
  const dynamic = challengeDocs().filter((c) => !c.spec.flag?.static).map((c) => c.metadata.name);
  const engine = engineFor(ctx, ns, `expiry-engine-${run + 1}`);
  const observer = Observer.sessions(ctx.kube, ns);
  try {
    await engine.start();
    await engine.waitReady();
    await observer.start();
    const names = Array.from({ length: n }, (_, i) => `e-${i}`);
    await pool(names, 50, (name, i) => createSessionDirect(ctx.kube, ns, name, dynamic[i % dynamic.length] as string, userName(i), Date.now() + 3_600_000));
    if (!(await observer.until(() => observer.count('Running', names) >= n, pick(ctx, 300_000, 60_000)))) {
      throw new Error(`only ${observer.count('Running', names)} of ${n} sessions reached Running`);
    }
    const start = Date.now() + leadMs(ctx);
    const expiry = new Map(names.map((name, i) => [name, start + Math.round((i * spreadMs) / n)]));
    const writtenAt = new Map<string, number>();
    const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
    await pool(names, 20, async (name) => {
      const body = { metadata: { annotations: { [ANNOTATION_EXPIRES_AT]: isoMs(expiry.get(name) as number) } } };
      await withRetry(() => ctx.kube.custom.patchNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: SESSION_PLURAL, name, body }, mergePatch));
      writtenAt.set(name, Date.now());
    });
    const deadline = start + spreadMs + 15_000;
    await observer.until(() => names.every((x) => observer.deletedAt.has(x)), Math.max(0, deadline - Date.now()));
    const lags: number[] = [];
    let late = 0;
    let deleted = 0;
    for (const name of names) {
      const at = expiry.get(name) as number;
      if ((writtenAt.get(name) ?? 0) >= at) {
        late++;
        continue;
      }
      const gone = observer.deletedAt.get(name);
      if (gone !== undefined) deleted++;
      lags.push((gone ?? deadline) - at);
    }
    // Let garbage collection of the children finish, so it does not run into the next scenario.
    const podsGone = Date.now() + pick(ctx, 120_000, 0);
    while (Date.now() < podsGone && (await ctx.kube.core.listNamespacedPod({ namespace: ns, limit: 1 })).items.length > 0) await new Promise((r) => setTimeout(r, 1000));
    return { lagMs: distribution(lags), deleted, late, sessions: n };
  } finally {
    observer.stop();
    await engine.stop();
    await cleanupNamespace(ctx, ns);
  }
}
