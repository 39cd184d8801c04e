import { accessKey, issueCookie } from '../../src/access/tokens.js';
import { GROUP, SESSION_PLURAL, VERSION } from '../../src/api/group.js';
import type { ChallengeSession } from '../../src/api/session.js';
import { cookieName } from '../../src/sessions/access.js';
import { cleanupNamespace, engineFor, pick, prepareNamespace, userName, type BenchContext } from '../lib/context.js';
import { BENCH_FLAG_KEY } from '../lib/engine-process.js';
import { challengeDocs, createSessionDirect, Observer, pool } from '../lib/kube.js';
import { runLoad } from '../lib/load.js';
import type { ScenarioResult } from '../lib/report.js';
import { distribution, figure, type Distribution } from '../lib/stats.js';

/**
 * The forward-auth check the gateway makes before every request to an instance: GET
 * /gateway/auth with the instance's host and the player's cookie, as Traefik sends it. Half the
 * requests carry the owner's cookie for the right host (200 expected), half another session's
 * cookie (403 expected): a wrong answer either way fails the run.
 */

interface Target {
  host: string;
  cookie: string;
  other: string;
}

interface Phase {
  rps: number;
  latency: Distribution;
  requests: number;
  wrong: number;
}

export async function accessScenario(ctx: BenchContext): Promise<ScenarioResult> {
  const sessions = pick(ctx, 200, 20);
  const connections = pick(ctx, 50, 20);
  const seconds = pick(ctx, 10, 2);
  const ns = 'bench-access';
  const domain = 'ctf.bench';
  await prepareNamespace(ctx, ns);
  // web-notes: one http port and a dynamic flag, as challenges/web-notes.yaml.
  const web = challengeDocs().find((c) => c.metadata.name === 'web-notes')?.metadata.name ?? 'web-notes';
  const engine = engineFor(ctx, ns, 'access', { env: { CTF_EXTERNAL_DOMAIN: domain } });
  const observer = Observer.sessions(ctx.kube, ns);
  const phases: Phase[] = [];
  try {
    await engine.start();
    await engine.waitReady();
    await observer.start();
    const names = Array.from({ length: sessions }, (_, i) => `a-${i}`);
    await pool(names, 20, (name, i) => createSessionDirect(ctx.kube, ns, name, web, userName(i), Date.now() + 3 * 3_600_000));
    if (!(await observer.until(() => observer.count('Running', names) >= sessions, pick(ctx, 300_000, 60_000)))) throw new Error(`only ${observer.count('Running', names)} of ${sessions} sessions reached Running`);
    const list = (await ctx.kube.custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: SESSION_PLURAL })) as { items: ChallengeSession[] };
    const key = accessKey(Buffer.from(BENCH_FLAG_KEY));
    const until = new Date(Date.now() + 3_600_000);
    const hosts = list.items.map((s) => ({ host: s.status?.endpoints?.find((e) => e.protocol === 'http')?.externalHost ?? '', uid: s.metadata.uid ?? '' })).filter((h) => h.host);
    if (hosts.length < sessions) throw new Error(`only ${hosts.length} of ${sessions} sessions have a public host`);
    const name = cookieName(true);
    const targets: Target[] = hosts.map((h, i) => {
      const next = hosts[(i + 1) % hosts.length] ?? h;
      return { host: h.host, cookie: `${name}=${issueCookie(key, h.host, h.uid, until)}`, other: `${name}=${issueCookie(key, next.host, next.uid, until)}` };
    });
    const one = async (durationSeconds: number): Promise<Phase> => {
      let wrong = 0;
      const load = await runLoad({
        url: engine.baseUrl,
        connections,
        durationSeconds,
        next: () => {
          const t = targets[Math.floor(Math.random() * targets.length)] as Target;
          const owner = Math.random() < 0.5;
          return { method: 'GET', path: '/gateway/auth', headers: { 'x-forwarded-host': t.host, 'x-forwarded-uri': '/notes', 'x-forwarded-method': 'GET', cookie: owner ? t.cookie : t.other }, tag: owner };
        },
        onResponse: (r) => {
          if (r.status !== (r.tag === true ? 200 : 403)) wrong++;
        },
      });
      return { rps: load.tagged / (load.elapsedMs / 1000), latency: distribution(load.latencies), requests: load.tagged, wrong };
    };
    await one(2); // warm-up: JIT and connections, not counted
    for (let run = 0; run < ctx.runs; run++) {
      const p = await one(seconds);
      phases.push(p);
      ctx.log(`  run ${run + 1}/${ctx.runs}: ${Math.round(p.rps)} req/s, p50 ${p.latency.p50.toFixed(2)} ms, p99 ${p.latency.p99.toFixed(2)} ms, ${p.wrong} wrong answers`);
    }
    return {
      id: 'access',
      title: '6. Forward auth',
      config: { sessions, concurrency: connections, 'seconds per run': seconds },
      notes: [
        'GET /gateway/auth as the gateway calls it (X-Forwarded-Host, X-Forwarded-Uri, the Cookie header), against the engine process (API and controller), half with the owner\'s cookie for the host (200), half with another session\'s cookie (403). The check is a host-index lookup and one HMAC; it reads nothing from the apiserver.',
        'Load from autocannon in the benchmark process; both share the two cores with the control plane.',
      ],
      figures: [
        figure('access.rps', 'forward-auth checks: throughput', 'req/s', phases.map((p) => p.rps)),
        figure('access.p50_ms', 'forward-auth checks: latency p50', 'ms', phases.map((p) => p.latency.p50)),
        figure('access.p99_ms', 'forward-auth checks: latency p99', 'ms', phases.map((p) => p.latency.p99)),
      ],
      tables: [{ title: 'Per run', columns: ['run', 'req/s', 'p50 ms', 'p99 ms', 'max ms', 'requests', 'wrong answers'], rows: phases.map((p, i) => [i + 1, p.rps, p.latency.p50, p.latency.p99, p.latency.max, p.requests, p.wrong]) }],
      details: { phases },
      failures: phases.filter((p) => p.wrong > 0).map((p, i) => `run ${i + 1}: ${p.wrong} forward-auth answers were wrong`),
      seconds: 0,
    };
  } finally {
    observer.stop();
    await engine.stop();
    await cleanupNamespace(ctx, ns);
  }
}
