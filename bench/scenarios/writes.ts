import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { ANNOTATION_EXPIRES_AT, GROUP, SESSION_PLURAL, VERSION } from '../../src/api/group.js';
import { isBackgroundWrite, isEngineWrite, scrape, subtract, sum, waitForQuiet, writesBetween } from '../lib/apiserver-metrics.js';
import { cleanupNamespace, engineFor, issueTokens, pick, prepareNamespace, userName, type BenchContext } from '../lib/context.js';
import { metricSum, type EngineProcess } from '../lib/engine-process.js';
import { challengeDocs, isoMs, Observer, pool, withRetry } from '../lib/kube.js';
import type { ScenarioResult } from '../lib/report.js';
import { figure } from '../lib/stats.js';

/**
 * Write efficiency: every apiserver write over sessions' whole lives (spawn over the API, Running,
 * solved over the API, then half stopped over the API and half expired), from the apiserver's
 * request counters, per session and per resource; and the writes across one idle periodic resync.
 */

interface WritesRun {
  sessions: number;
  perSession: Map<string, number>;
  enginePerSession: number;
  allPerSession: number;
  idleWrites: number;
  idleAllWrites: number;
  resyncReconciles: number;
}


export async function writesScenario(ctx: BenchContext): Promise<ScenarioResult> {
  const m = pick(ctx, 200, 20);
  const resyncSeconds = pick(ctx, 10, 3);
  const runs: WritesRun[] = [];
  for (let run = 0; run < ctx.runs; run++) {
    runs.push(await writesRun(ctx, run, m, resyncSeconds));
    const r = runs[runs.length - 1] as WritesRun;
    ctx.log(`  run ${run + 1}/${ctx.runs}: ${r.enginePerSession.toFixed(2)} engine writes per session (${r.allPerSession.toFixed(2)} by all components); idle resync: ${r.resyncReconciles} reconciles, ${r.idleWrites} engine writes`);
  }
  const keys = new Set(runs.flatMap((r) => [...r.perSession.keys()]));
  const rows = [...keys]
    .map((k) => ({ k, v: runs.map((r) => r.perSession.get(k) ?? 0) }))
    .sort((a, b) => (b.v[0] ?? 0) - (a.v[0] ?? 0))
    .map(({ k, v }) => [k, isEngineWrite(k) ? 'engine' : 'other component', ...v]);
  return {
    id: 'writes',
    title: '5. Write efficiency',
    config: { sessions: m, CTF_RESYNC_SECONDS: resyncSeconds },
    notes: [
      'Life of each session: spawned over the API by its own user, Running, its right flag submitted twice over the API (the first solves it), then half are stopped over the API (DELETE /api/challenges/<id>) and half expire (the benchmark moves their expires-at annotation 2 s ahead; those patches are subtracted). Counted from the first spawn until every session and Pod is gone and the counters stand still, from apiserver_request_total (verbs POST, PUT, PATCH, DELETE, APPLY), less the idle-resync window.',
      'Attribution: every component uses the same admin identity, so writes are told apart by what they write: the engine creates, patches and deletes sessions, applies children (server-side apply) and posts core/v1 Events; the scheduler binds Pods and posts events.k8s.io Events, kwok patches Pod status and renews its node Lease, garbage collection deletes children, the endpoint-slice controller maintains EndpointSlices.',
      `Idle resync: with every session Running and solved and nothing else going on, writes are counted across ${resyncSeconds + 3} s, which holds at least one periodic resync (CTF_RESYNC_SECONDS=${resyncSeconds}); the engine's reconcile counter shows the resync happened.`,
    ],
    figures: [
      figure('writes.engine_per_session', 'engine writes per session lifetime', 'writes', runs.map((r) => r.enginePerSession)),
      figure('writes.all_per_session', 'all components\' writes per session lifetime', 'writes', runs.map((r) => r.allPerSession)),
      figure('writes.idle_resync', 'engine writes during an idle resync', 'writes', runs.map((r) => r.idleWrites), { op: '~0', value: 0, text: '0' }),
      figure('writes.idle_resync_reconciles', 'reconciles during that resync window', 'reconciles', runs.map((r) => r.resyncReconciles)),
    ],
    tables: [
      {
        title: 'Writes per session lifetime, by request (one column per run)',
        columns: ['request', 'by', ...runs.map((_, i) => `run ${i + 1}`)],
        rows,
      },
    ],
    details: { runs: runs.map((r) => ({ ...r, perSession: Object.fromEntries(r.perSession) })) },
    failures: [],
    seconds: 0,
  };
}

async function api(engine: EngineProcess, method: string, path: string, token: string, body?: object): Promise<{ status: number; json: unknown }> {
  const res = await fetch(`${engine.baseUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, json: text ? (JSON.parse(text) as unknown) : undefined };
}

async function writesRun(ctx: BenchContext, run: number, m: number, resyncSeconds: number): Promise<WritesRun> {
  const ns = `bench-writes-${run + 1}`;
  await prepareNamespace(ctx, ns);
  const dynamic = challengeDocs().filter((c) => !c.spec.flag?.static).map((c) => c.metadata.name);
  const engine = engineFor(ctx, ns, `writes-engine-${run + 1}`, { env: { CTF_RESYNC_SECONDS: String(resyncSeconds) } });
  const observer = Observer.sessions(ctx.kube, ns);
  try {
    await engine.start();
    await engine.waitReady();
    await observer.start();
    const users = Array.from({ length: m }, (_, i) => userName(i));
    const tokens = await issueTokens(ctx, users);
    await waitForQuiet(ctx.cluster, 2_000, 30_000, (k) => !isBackgroundWrite(k));
    const before = await scrape(ctx.cluster);

    const ids = await pool(users, 10, async (u, i) => {
      const r = await api(engine, 'POST', '/api/challenges', tokens.get(u) as string, { challenge: dynamic[i % dynamic.length] });
      if (r.status !== 201) throw new Error(`spawn answered ${r.status}`);
      return (r.json as { session: { id: string } }).session.id;
    });
    if (!(await observer.until(() => observer.count('Running', ids) >= m, pick(ctx, 180_000, 60_000)))) throw new Error(`only ${observer.count('Running', ids)} of ${m} sessions reached Running`);

    await pool(ids, 10, async (id, i) => {
      const secret = await ctx.kube.core.readNamespacedSecret({ name: `${id}-flag`, namespace: ns });
      const flag = Buffer.from(secret.data?.flag ?? '', 'base64').toString('utf8');
      for (let k = 0; k < 2; k++) {
        const r = await api(engine, 'POST', '/api/flags', tokens.get(users[i] as string) as string, { sessionId: id, flag });
        if (r.status !== 200 || (r.json as { correct: boolean }).correct !== true) throw new Error(`a right flag was answered ${r.status} ${JSON.stringify(r.json)}`);
      }
    });
    await waitForQuiet(ctx.cluster, pick(ctx, 3_000, 2_000), 60_000, isEngineWrite);

    // One idle periodic resync.
    const m0 = metricSum(await engine.metrics(), 'controller_runtime_reconcile_total');
    const idleBefore = await scrape(ctx.cluster);
    await new Promise((r) => setTimeout(r, (resyncSeconds + 3) * 1000));
    const idleAfter = await scrape(ctx.cluster);
    const m1 = metricSum(await engine.metrics(), 'controller_runtime_reconcile_total');
    const idle = writesBetween(idleBefore, idleAfter);

    // End of life: half stopped by their players, half expired.
    const half = Math.floor(m / 2);
    const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
    await pool(ids, 10, async (id, i) => {
      if (i < half) {
        const r = await api(engine, 'DELETE', `/api/challenges/${id}`, tokens.get(users[i] as string) as string);
        if (r.status !== 204) throw new Error(`stop answered ${r.status}`);
      } else {
        const body = { metadata: { annotations: { [ANNOTATION_EXPIRES_AT]: isoMs(Date.now() + 2_000) } } };
        await withRetry(() => ctx.kube.custom.patchNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: SESSION_PLURAL, name: id, body }, mergePatch));
      }
    });
    if (!(await observer.until(() => ids.every((id) => observer.deletedAt.has(id)), 60_000))) throw new Error('not every session was deleted');
    const podsDeadline = Date.now() + 120_000;
    while (Date.now() < podsDeadline) {
      const pods = await ctx.kube.core.listNamespacedPod({ namespace: ns });
      if (pods.items.length === 0) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    await waitForQuiet(ctx.cluster, pick(ctx, 3_000, 2_000), 60_000, (k) => !isBackgroundWrite(k));
    const after = await scrape(ctx.cluster);

    const benchPatches = new Map([['PATCH ctf.challenge-engine.io/challengesessions', m - half]]);
    const life = subtract(subtract(writesBetween(before, after), idle), benchPatches);
    for (const k of [...life.keys()]) if (isBackgroundWrite(k)) life.delete(k);
    const perSession = new Map([...life].map(([k, v]) => [k, Math.round((v / m) * 100) / 100]));
    return {
      sessions: m,
      perSession,
      enginePerSession: sum(life, isEngineWrite) / m,
      allPerSession: sum(life) / m,
      idleWrites: sum(idle, isEngineWrite),
      idleAllWrites: sum(idle, (k) => !isBackgroundWrite(k)),
      resyncReconciles: m1 - m0,
    };
  } finally {
    observer.stop();
    await engine.stop();
    await cleanupNamespace(ctx, ns);
  }
}
