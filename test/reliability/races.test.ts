import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ANNOTATION_EXPIRES_AT, GROUP, SESSION_PLURAL, VERSION } from '../../src/api/group.js';
import { Caches } from '../../src/read-model/caches.js';
import type { Engine } from '../../src/engine.js';
import { deriveFlag } from '../../src/flags/derive.js';
import { buildApp } from '../../src/http/app.js';
import { createTokenVerifier } from '../../src/http/auth.js';
import { createMetrics } from '../../src/metrics.js';
import type { Kube } from '../../src/kube/client.js';
import type { Writer } from '../../src/kube/writes.js';
import { KubeSessionService } from '../../src/sessions/service.js';
import { slotName } from '../../src/sessions/owner.js';
import { sessionName } from '../../src/sessions/spawn.js';
import { createSession, getSession, installSamples, installTeamChallenge, listSessions, startTestEngine, TEST_FLAG_KEY, TEST_TOKEN_SECRET, type LogCapture } from '../support/engine.js';
import { useCluster, waitUntil } from '../support/kube.js';
import { leakReport, phaseOf, prng, sleep, teamToken, token } from './helpers.js';

/**
 * Races through the real API and controller: concurrent spawns and stops of one user, and of the
 * members of one team, across two API replicas, and extend, solve and delete racing the controller's expiry of one session; then
 * the same races with their window held open so that they happen on every run.
 */
const cluster = useCluster(import.meta.filename);
const LIMIT = 3;
const inHour = () => new Date(Date.now() + 3600_000);
/** Copies of web-notes played by teams (spec.owner: team). */
const TEAM_CHALLENGES = ['team-a', 'team-b', 'team-c', 'team-d'];
let engine: Engine;
let engineLogs: LogCapture;
/** Every API replica built, to close; `replicas` are the two plain ones the races go through. */
const apis: { app: FastifyInstance; caches: Caches }[] = [];
const replicas: { app: FastifyInstance }[] = [];

/** An API replica over its own caches; `kube` and `writer` may be wrapped to widen a race window. */
async function apiReplica(opts: { kube?: Kube; writer?: Writer } = {}): Promise<{ app: FastifyInstance; caches: Caches }> {
  const log = pino({ level: 'silent' });
  const metrics = createMetrics();
  const kube = opts.kube ?? engine.kube;
  const caches = Caches.watching(engine.kube, cluster.namespace, log);
  await caches.start();
  const service = new KubeSessionService({ kube, caches, writer: opts.writer ?? engine.writer, log, metrics, flagKey: engine.flagKey, maxSessionsPerUser: LIMIT });
  const replica = { app: await buildApp({ service, tokens: createTokenVerifier(TEST_TOKEN_SECRET), metrics, log, corsOrigins: [], rateLimit: false }), caches };
  apis.push(replica);
  return replica;
}

beforeAll(async () => {
  await installSamples(cluster.kube, cluster.namespace);
  await cluster.kubectl('create', 'secret', 'generic', 'crypto-baby-rsa-flag', '--from-literal=flag=CTF{static_flag_for_tests}');
  for (const name of TEAM_CHALLENGES) await installTeamChallenge(cluster.kube, cluster.namespace, name);
  ({ engine, logs: engineLogs } = await startTestEngine(cluster.kubeconfig, cluster.namespace, { CTF_MAX_SESSIONS_PER_USER: String(LIMIT) }));
  replicas.push(await apiReplica(), await apiReplica());
});

afterAll(async () => {
  for (const a of apis) {
    await a.app.close();
    await a.caches.stop();
  }
  await engine?.stop();
});

function app(i: number): FastifyInstance {
  const a = replicas[i % replicas.length];
  if (!a) throw new Error('no api');
  return a.app;
}

interface Call {
  what: string;
  status: number;
  body: string;
}

const call = (what: string, r: LightMyRequestResponse): Call => ({ what, status: r.statusCode, body: r.body });

async function noOrphansAfterGc(): Promise<void> {
  const leaks = await waitUntil('garbage collection of every stopped session\u2019s children', async () => {
    const r = await leakReport(cluster.kube, cluster.namespace);
    return r.orphans.length === 0 ? r : undefined;
  }, 60_000, 250).catch(async () => leakReport(cluster.kube, cluster.namespace));
  expect(leaks.orphans).toEqual([]);
  expect(leaks.duplicatePods).toEqual([]);
}

describe('one user, two API replicas: concurrent spawns of mixed challenges and stops', () => {
  it('never holds more than the limit, answers every request without a 5xx, and leaks nothing', async () => {
    const user = 'racer-mixed';
    const h = { authorization: `Bearer ${await token(user)}` };
    const challenges = ['web-notes', 'pwn-echo', 'sql-two-tier', 'crypto-baby-rsa'];
    // Session ids are the user's slots, so stops can be aimed at them before they exist.
    const slots = Array.from({ length: LIMIT }, (_, i) => sessionName(user, i));
    let maxLive = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const live = (await listSessions(cluster.kube, cluster.namespace)).filter((s) => s.spec.user === user && !s.metadata.deletionTimestamp);
        maxLive = Math.max(maxLive, live.length);
        await sleep(20);
      }
    })();

    const random = prng(7);
    const calls: Call[] = [];
    for (let round = 0; round < 3; round++) {
      const requests = Array.from({ length: 50 }, (_, i) => {
        const replica = app(i);
        if (i % 5 === 4) {
          const id = slots[Math.floor(random() * slots.length)] ?? '';
          return async () => call(`stop ${id}`, await replica.inject({ method: 'DELETE', url: `/api/challenges/${id}`, headers: h }));
        }
        const challenge = challenges[Math.floor(random() * challenges.length)] ?? 'web-notes';
        return async () => call(`spawn ${challenge}`, await replica.inject({ method: 'POST', url: '/api/challenges', headers: h, payload: { challenge } }));
      });
      calls.push(...(await Promise.all(requests.map(async (f) => (await sleep(random() * 30), f())).map((p, i) => p.then((c) => ({ ...c, what: `${round}:${i} ${c.what}` }))))));
      await sleep(300);
    }

    const live = await waitUntil('the user\u2019s remaining sessions Running', async () => {
      const mine = (await listSessions(cluster.kube, cluster.namespace)).filter((s) => s.spec.user === user);
      return mine.every((s) => phaseOf(s) === 'Running') ? mine : undefined;
    }, 60_000, 250);
    sampling = false;
    await sampler;

    expect(calls.filter((c) => c.status >= 500)).toEqual([]);
    expect(calls.filter((c) => c.what.includes('spawn') && ![200, 201, 429].includes(c.status))).toEqual([]);
    expect(calls.filter((c) => c.what.includes('stop') && ![204, 404].includes(c.status))).toEqual([]);
    expect(calls.filter((c) => c.status === 201).length).toBeGreaterThan(LIMIT);
    expect(calls.filter((c) => c.status === 204).length).toBeGreaterThan(0);
    expect(maxLive).toBeLessThanOrEqual(LIMIT);
    expect(live.length).toBeLessThanOrEqual(LIMIT);
    expect(new Set(live.map((s) => s.spec.challenge)).size).toBe(live.length);
    await noOrphansAfterGc();
    const counts = (s: number) => calls.filter((c) => c.status === s).length;
    console.log(
      `[reliability] spawn/stop race: ${calls.length} requests (201 x${counts(201)}, 200 x${counts(200)}, 429 x${counts(429)}, 204 x${counts(204)}, 404 x${counts(404)}); ` +
        `max ${maxLive} live sessions at once (limit ${LIMIT}); ${live.length} left, all Running; no orphans`,
    );
  });
});

describe('members of one team, two API replicas', () => {
  const teamSessions = async (team: string) => (await listSessions(cluster.kube, cluster.namespace)).filter((s) => s.spec.owner === 'team' && s.spec.team === team);

  it('ends every round of concurrent spawns of one challenge by the members with exactly one session', async () => {
    const team = 'racers';
    const members = await Promise.all(Array.from({ length: 6 }, (_, i) => teamToken(`racer-${i}@${team}.example`, team)));
    const random = prng(11);
    const N = 60;
    const rounds: { created: number; ids: number; stored: number }[] = [];
    for (let round = 0; round < 3; round++) {
      const calls = await Promise.all(
        Array.from({ length: N }, async (_, i) => {
          await sleep(random() * 30);
          const r = await app(i).inject({ method: 'POST', url: '/api/challenges', headers: { authorization: `Bearer ${members[i % members.length] ?? ''}` }, payload: { challenge: 'team-a' } });
          return { status: r.statusCode, id: r.statusCode < 300 ? r.json<{ session: { id: string } }>().session.id : r.body };
        }),
      );
      expect(calls.filter((c) => c.status !== 200 && c.status !== 201), `round ${round}`).toEqual([]);
      const stored = (await teamSessions(team)).filter((s) => !s.metadata.deletionTimestamp);
      rounds.push({ created: calls.filter((c) => c.status === 201).length, ids: new Set(calls.map((c) => c.id)).size, stored: stored.length });
      expect(rounds[round], `round ${round}`).toEqual({ created: 1, ids: 1, stored: 1 });
      expect(stored[0]?.metadata.name).toBe(calls[0]?.id);
      // A member stops it, so the next round races for a free slot again.
      const stop = await app(round).inject({ method: 'DELETE', url: `/api/challenges/${calls[0]?.id ?? ''}`, headers: { authorization: `Bearer ${members[round] ?? ''}` } });
      expect(stop.statusCode).toBe(204);
      await waitUntil('the team\u2019s session gone', async () => (await teamSessions(team)).length === 0, 20_000, 50);
    }
    await noOrphansAfterGc();
    console.log(`[reliability] team spawn race: ${rounds.length} rounds of ${N} spawns by 6 members on 2 replicas; each: 1 created, 1 session`);
  });

  it('never holds more than the limit per team under spawns of mixed team challenges and stops, and leaks nothing', async () => {
    const team = 'mixers';
    const members = await Promise.all(Array.from({ length: 5 }, (_, i) => teamToken(`mixer-${i}@${team}.example`, team)));
    const slots = Array.from({ length: LIMIT }, (_, i) => slotName({ mode: 'team', team }, i));
    let maxLive = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        maxLive = Math.max(maxLive, (await teamSessions(team)).filter((s) => !s.metadata.deletionTimestamp).length);
        await sleep(20);
      }
    })();
    const random = prng(23);
    const calls: Call[] = [];
    for (let round = 0; round < 3; round++) {
      const requests = Array.from({ length: 50 }, (_, i) => {
        const replica = app(i);
        const h = { authorization: `Bearer ${members[Math.floor(random() * members.length)] ?? ''}` };
        if (i % 5 === 4) {
          const id = slots[Math.floor(random() * slots.length)] ?? '';
          return async () => call(`stop ${id}`, await replica.inject({ method: 'DELETE', url: `/api/challenges/${id}`, headers: h }));
        }
        const challenge = TEAM_CHALLENGES[Math.floor(random() * TEAM_CHALLENGES.length)] ?? 'team-a';
        return async () => call(`spawn ${challenge}`, await replica.inject({ method: 'POST', url: '/api/challenges', headers: h, payload: { challenge } }));
      });
      calls.push(...(await Promise.all(requests.map(async (f) => (await sleep(random() * 30), f())))));
      await sleep(300);
    }
    const live = await waitUntil('the team\u2019s remaining sessions Running', async () => {
      const mine = await teamSessions(team);
      return mine.every((s) => phaseOf(s) === 'Running') ? mine : undefined;
    }, 60_000, 250);
    sampling = false;
    await sampler;

    expect(calls.filter((c) => c.status >= 500)).toEqual([]);
    expect(calls.filter((c) => c.what.startsWith('spawn') && ![200, 201, 429].includes(c.status))).toEqual([]);
    expect(calls.filter((c) => c.what.startsWith('stop') && ![204, 404].includes(c.status))).toEqual([]);
    expect(calls.filter((c) => c.status === 201).length).toBeGreaterThan(LIMIT);
    expect(maxLive).toBeLessThanOrEqual(LIMIT);
    expect(new Set(live.map((s) => s.spec.challenge)).size).toBe(live.length);
    await noOrphansAfterGc();
    const counts = (st: number) => calls.filter((c) => c.status === st).length;
    console.log(
      `[reliability] team spawn/stop race: ${calls.length} requests by 5 members (201 x${counts(201)}, 200 x${counts(200)}, 429 x${counts(429)}, 204 x${counts(204)}, 404 x${counts(404)}); ` +
        `max ${maxLive} live team sessions at once (limit ${LIMIT}); ${live.length} left, all Running; no orphans`,
    );
  });
});

describe('extend, solve and delete racing the controller\u2019s expiry of one session', () => {
  it('ends every session in a consistent state, without a 5xx or a leak', async () => {
    const random = prng(99);
    const ITERATIONS = 24;
    const BATCH = 8;
    const calls: Call[] = [];
    const problems: string[] = [];
    const outcomes = { gone: 0, extended: 0 };
    for (let b = 0; b < ITERATIONS / BATCH; b++) {
      await Promise.all(
        Array.from({ length: BATCH }, async (_, k) => {
          const i = b * BATCH + k;
          const name = `race-${i}`;
          const user = `race-user-${i}`;
          const h = { authorization: `Bearer ${await token(user)}` };
          // Expiry two to three seconds ahead (the annotation has whole seconds).
          const created = await createSession(cluster.kube, cluster.namespace, name, 'web-notes', user, new Date(Date.now() + 3_000));
          const expiresAt = Date.parse(created.metadata.annotations?.[ANNOTATION_EXPIRES_AT] ?? '');
          const flag = deriveFlag(TEST_FLAG_KEY, { challenge: 'web-notes', sessionUid: created.metadata.uid ?? '', user }, { format: 'CTF{%s}', length: 32 });
          await waitUntil(`${name} visible through both replicas`, async () => (await app(0).inject({ method: 'GET', url: `/api/sessions/${name}`, headers: h })).statusCode === 200 && (await app(1).inject({ method: 'GET', url: `/api/sessions/${name}`, headers: h })).statusCode === 200, 10_000, 20);

          const withDelete = random() < 0.35;
          if (expiresAt - Date.now() < 500) throw new Error(`${name}: too little time left before its expiry to race it`);
          const at = (offset: number) => sleep(Math.max(0, expiresAt + offset - Date.now()));
          const ops: Promise<Call>[] = [
            at(-250 + random() * 250).then(async () => call(`${name} extend`, await app(i).inject({ method: 'POST', url: `/api/sessions/${name}/extend`, headers: h }))),
            at(-350 + random() * 400).then(async () => call(`${name} solve`, await app(i + 1).inject({ method: 'POST', url: '/api/flags', headers: h, payload: { sessionId: name, flag } }))),
          ];
          if (withDelete) ops.push(at(-350 + random() * 400).then(async () => call(`${name} delete`, await app(i).inject({ method: 'DELETE', url: `/api/challenges/${name}`, headers: h }))));
          const results = await Promise.all(ops);
          calls.push(...results);
          const [extend, solve, del] = results;

          // Settle: the controller deletes what has expired within about a second.
          await sleep(1_500);
          const final = await waitUntil(`${name} settled`, async () => {
            const s = await getSession(cluster.kube, cluster.namespace, name);
            if (!s) return { gone: true as const };
            const annotated = s.metadata.annotations?.[ANNOTATION_EXPIRES_AT] ?? '';
            if (Date.parse(annotated) <= Date.now()) return undefined;
            return s.status?.expiresAt === annotated && phaseOf(s) === 'Running' ? { gone: false as const, s } : undefined;
          }, 20_000, 100);

          if (del?.status === 204 && !final.gone) problems.push(`${name}: stop answered 204 but the session is still there`);
          if (!final.gone) {
            outcomes.extended++;
            if (extend?.status !== 200) problems.push(`${name}: present after its expiry although extend answered ${extend?.status}`);
            const promised = (JSON.parse(extend?.body ?? '{}') as { session?: { expiresAt?: string } }).session?.expiresAt;
            if (promised !== final.s.metadata.annotations?.[ANNOTATION_EXPIRES_AT]) problems.push(`${name}: extend promised ${promised}, the annotation says ${final.s.metadata.annotations?.[ANNOTATION_EXPIRES_AT]}`);
            if (solve?.body.includes('"correct":true') && !final.s.status?.solved) problems.push(`${name}: the correct flag was accepted but the session is not solved`);
          } else {
            outcomes.gone++;
            // An extension the API confirmed must not be undone by a stale expiry.
            if (extend?.status === 200 && del?.status !== 204) {
              const expiry = engineLogs.lines.find((l) => l.session === name && typeof l.msg === 'string' && l.msg.startsWith('Session expired'));
              problems.push(
                `${name}: extend answered 200 (expires ${extend.body.match(/"expiresAt":"([^"]+)"/)?.[1]}) but the controller deleted the session as expired ` +
                  `(its log at ${expiry ? new Date(Number(expiry.time)).toISOString() : '?'}: "${String(expiry?.msg)}")`,
              );
            }
          }
        }),
      );
    }

    // Soft: every kind of inconsistency is reported, not only the first.
    const show = (c: Call) => `${c.what}: ${c.status} ${c.body.slice(0, 160)}`;
    expect.soft(calls.filter((c) => c.status >= 500).map(show), 'no request may fail with a 5xx').toEqual([]);
    const allowed: Record<string, number[]> = { extend: [200, 404, 409], solve: [200, 404], delete: [204, 404] };
    expect.soft(calls.filter((c) => c.status < 500 && !(allowed[c.what.split(' ')[1] ?? ''] ?? []).includes(c.status)).map(show)).toEqual([]);
    expect.soft(problems).toEqual([]);
    await noOrphansAfterGc();
    const byOp = (op: string) =>
      Object.entries(calls.filter((c) => c.what.endsWith(op)).reduce<Record<number, number>>((acc, c) => ({ ...acc, [c.status]: (acc[c.status] ?? 0) + 1 }), {}))
        .map(([s, n]) => `${s}x${n}`)
        .join(' ');
    console.log(`[reliability] expiry race: ${ITERATIONS} sessions; extend ${byOp('extend')}; solve ${byOp('solve')}; delete ${byOp('delete')}; ${outcomes.gone} gone, ${outcomes.extended} extended and Running`);
  });
});

/**
 * The same races with their window held open, so that they happen on every run: a client whose
 * reads are followed by a concurrent delete, and writes that are slow to reach the apiserver.
 */
describe('the races above, with their window held open', () => {
  /** engine.kube with a hook that runs after a read of the named session returns, before the caller sees it. */
  function kubeWithHookAfterRead(name: string, hook: () => Promise<void>): Kube {
    let armed = true;
    const custom = new Proxy(engine.kube.custom, {
      get(target, prop) {
        const value: unknown = Reflect.get(target, prop, target);
        if (prop !== 'getNamespacedCustomObject' || typeof value !== 'function') return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
        return async (args: { name: string }) => {
          const read: unknown = await (value as (a: unknown) => Promise<unknown>).call(target, args);
          if (armed && args.name === name) {
            armed = false;
            await hook();
          }
          return read;
        };
      },
    });
    return { ...engine.kube, custom };
  }

  async function deleteAndWait(name: string): Promise<void> {
    await cluster.kube.custom.deleteNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: cluster.namespace, plural: SESSION_PLURAL, name });
    await waitUntil(`${name} deleted`, async () => (await getSession(cluster.kube, cluster.namespace, name)) === undefined, 10_000, 20);
  }

  const sessionFor = (name: string, user: string) => createSession(cluster.kube, cluster.namespace, name, 'web-notes', user, inHour());

  it('answers a correct flag without a 5xx when the session is deleted while the solve is recorded', async () => {
    const user = 'held-solve';
    const s = await sessionFor('held-solve', user);
    const replica = await apiReplica({ kube: kubeWithHookAfterRead('held-solve', () => deleteAndWait('held-solve')) });
    await waitUntil('cached', () => replica.caches.session('held-solve')?.ok);
    const flag = deriveFlag(TEST_FLAG_KEY, { challenge: 'web-notes', sessionUid: s.metadata.uid ?? '', user }, { format: 'CTF{%s}', length: 32 });
    const r = await replica.app.inject({ method: 'POST', url: '/api/flags', headers: { authorization: `Bearer ${await token(user)}` }, payload: { sessionId: 'held-solve', flag } });
    expect(r.statusCode, `POST /api/flags -> ${r.statusCode} ${r.body}`).toBeLessThan(500);
  });

  it('answers an extension without a 5xx when the session is deleted while it is being extended', async () => {
    const user = 'held-extend';
    await sessionFor('held-extend', user);
    const replica = await apiReplica({ kube: kubeWithHookAfterRead('held-extend', () => deleteAndWait('held-extend')) });
    await waitUntil('cached', () => replica.caches.session('held-extend')?.ok);
    const r = await replica.app.inject({ method: 'POST', url: '/api/sessions/held-extend/extend', headers: { authorization: `Bearer ${await token(user)}` } });
    expect(r.statusCode, `POST /api/sessions/held-extend/extend -> ${r.statusCode} ${r.body}`).toBeLessThan(500);
  });

  it('keeps an extension it confirmed when the expiry decision was taken on the session as it was before', async () => {
    const name = 'held-expiry';
    const user = 'held-expiry-user';
    const created = await createSession(cluster.kube, cluster.namespace, name, 'web-notes', user, new Date(Date.now() + 3_000));
    const expiresAt = Date.parse(created.metadata.annotations?.[ANNOTATION_EXPIRES_AT] ?? '');
    // The API's write of the new expiry takes 400 ms to reach the apiserver; the controller's delete takes 1 s.
    const slowWriter: Writer = { ...engine.writer, patchSessionMetadata: async (...a) => (await sleep(400), engine.writer.patchSessionMetadata(...a)) };
    const replica = await apiReplica({ writer: slowWriter });
    const writer = engine.writer;
    const deleteSession = writer.deleteSession.bind(writer);
    writer.deleteSession = async (...args: Parameters<Writer['deleteSession']>) => {
      if (args[1] === name) await sleep(1_000);
      return deleteSession(...args);
    };
    try {
      await waitUntil('cached', () => replica.caches.session(name)?.ok);
      await sleep(Math.max(0, expiresAt - 100 - Date.now()));
      const r = await replica.app.inject({ method: 'POST', url: `/api/sessions/${name}/extend`, headers: { authorization: `Bearer ${await token(user)}` } });
      expect(r.statusCode, r.body).toBe(200);
      const promised = r.json<{ session: { expiresAt: string } }>().session.expiresAt;
      await sleep(2_000);
      const after = await getSession(cluster.kube, cluster.namespace, name);
      const expiry = engineLogs.lines.find((l) => l.session === name && typeof l.msg === 'string' && l.msg.startsWith('Session expired'));
      expect(after?.metadata.annotations?.[ANNOTATION_EXPIRES_AT], `extend answered 200 (expires ${promised}); the controller logged "${String(expiry?.msg)}" and the session is ${after ? 'there' : 'gone'}`).toBe(promised);
    } finally {
      writer.deleteSession = deleteSession;
    }
  });
});
