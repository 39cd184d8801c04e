import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createReceiver, type Receiver } from '../../scripts/webhook-receiver.js';
import { LABEL_OUTBOX } from '../../src/webhooks/outbox.js';
import { GROUP, SESSION_PLURAL, VERSION } from '../../src/api/group.js';
import { createWriter } from '../../src/kube/writes.js';
import { installSamples } from '../support/engine.js';
import { freePort, httpJson } from '../support/faults.js';
import { useCluster, waitUntil } from '../support/kube.js';
import { ApiEngine, sleep, token } from './helpers.js';

/**
 * Solve webhooks, at least once, through outages of the receiver and of the engine: the receiver
 * is down for 30 s, then answers 500 for a while, then recovers, while the engine is killed with
 * SIGKILL twice. Every solve arrives (one of them of a session stopped right after its solve),
 * none twice by event id, every signature verifies. With the receiver gone for good, the events
 * stay pending, are reported (metric and Event), and hold no session back.
 */
const cluster = useCluster(import.meta.filename);
const SECRET = 'webhook-secret-5b1e7f0c9a2d4e6b8c3f1a7d';
const USERS = ['ana', 'ben', 'cleo', 'dan', 'eva', 'fin'];
let engine: ApiEngine | undefined;
let receiver: Receiver | undefined;

async function flagOf(id: string): Promise<string> {
  const s = await waitUntil(`the flag Secret of ${id}`, () => cluster.kube.core.readNamespacedSecret({ name: `${id}-flag`, namespace: cluster.namespace }).catch(() => undefined), 30_000, 100);
  return Buffer.from(s.data?.flag ?? '', 'base64').toString('utf8');
}

async function spawnAndSolve(base: string, user: string, stopAfter = false): Promise<string> {
  const t = await token(user);
  const spawned = await httpJson(base, 'POST', '/api/challenges', t, { challenge: 'web-notes' });
  expect([200, 201]).toContain(spawned.status);
  const id = (spawned.body as { session: { id: string } }).session.id;
  const flag = await flagOf(id);
  const solved = await httpJson(base, 'POST', '/api/flags', t, { sessionId: id, flag });
  expect(solved.body).toEqual({ correct: true });
  if (stopAfter) expect([200, 202, 204]).toContain((await httpJson(base, 'DELETE', `/api/challenges/${id}`, t)).status);
  return id;
}

const pendingEntries = async () => (await cluster.kube.core.listNamespacedConfigMap({ namespace: cluster.namespace, labelSelector: `${LABEL_OUTBOX}=webhook` })).items;

beforeAll(async () => {
  await installSamples(cluster.kube, cluster.namespace);
});

afterAll(async () => {
  await engine?.kill();
  await new Promise<void>((r) => (receiver?.server.listening ? receiver.server.close(() => r()) : r()));
});

describe('solve webhooks', () => {
  it('delivers every solve once by id through a 30 s receiver outage, 500s and two SIGKILLs of the engine', async () => {
    const port = await freePort();
    receiver = createReceiver(SECRET);
    engine = await ApiEngine.create(cluster, { CTF_WEBHOOK_URL: `http://127.0.0.1:${port}/solves`, CTF_WEBHOOK_SECRET: SECRET, CTF_WEBHOOK_MAX_BACKOFF_SECONDS: '4', CTF_WEBHOOK_ALLOW_PRIVATE: 'true', CTF_MAX_SESSIONS_PER_USER: '2' });
    await engine.start();
    const t0 = Date.now();
    // The receiver is down: solves are answered at once all the same.
    const ids = [await spawnAndSolve(engine.base, USERS[0] as string, true)];
    for (const u of USERS.slice(1, 3)) ids.push(await spawnAndSolve(engine.base, u));
    await sleep(3000);
    await engine.kill('SIGKILL');
    await engine.start();
    for (const u of USERS.slice(3, 5)) ids.push(await spawnAndSolve(engine.base, u));
    expect((await pendingEntries()).length).toBe(ids.length);
    await sleep(Math.max(0, 30_000 - (Date.now() - t0)));
    // Up, but failing.
    receiver.mode = 'fail';
    await new Promise<void>((r) => receiver?.server.listen(port, '127.0.0.1', r));
    await waitUntil('a failed delivery', () => (receiver?.deliveries.length ?? 0) > 0, 20_000, 100);
    await engine.kill('SIGKILL');
    await engine.start();
    ids.push(await spawnAndSolve(engine.base, USERS[5] as string));
    await sleep(4000);
    receiver.mode = 'ok';
    await waitUntil('every solve delivered', () => (receiver?.events.length === ids.length ? true : undefined), 60_000, 200);
    await waitUntil('the outbox empty', async () => ((await pendingEntries()).length === 0 ? true : undefined), 20_000, 200);

    expect(receiver.events.map((e) => e.session).sort()).toEqual([...ids].sort());
    expect(new Set(receiver.events.map((e) => e.id)).size).toBe(ids.length);
    const accepted = receiver.deliveries.filter((d) => d.signed);
    expect(accepted.length).toBe(receiver.deliveries.length);
    expect(receiver.deliveries.length).toBeGreaterThan(ids.length);
    for (const e of receiver.events) expect(e).toMatchObject({ type: 'solve', challenge: 'web-notes', owner: { mode: 'user' } });
    process.stderr.write(`[reliability] webhooks: ${ids.length} solves, ${receiver.deliveries.length} deliveries (${receiver.deliveries.length - ids.length} retries or failures), all delivered ${((Date.now() - t0) / 1000).toFixed(1)} s after the first solve\n`);
  });

  it('keeps events pending and reported while the receiver is gone for good, holding no session back', async () => {
    await new Promise<void>((r) => (receiver?.server.listening ? receiver.server.close(() => r()) : r()));
    const id = await spawnAndSolve(engine?.base ?? '', 'gus');
    const metric = await waitUntil('the pending metric', async () => {
      const res = await httpJson(engine?.base ?? '', 'GET', '/metrics', undefined);
      const text = typeof res.body === 'string' ? res.body : '';
      return /challenge_engine_webhook_pending 1\b/.test(text) ? text : undefined;
    }, 20_000, 250);
    expect(metric).toMatch(/challenge_engine_webhook_deliveries_total\{result="failed"\} \d+/);
    const event = await waitUntil('a WebhookFailing Event', async () => {
      const events = await cluster.kube.core.listNamespacedEvent({ namespace: cluster.namespace, fieldSelector: `involvedObject.name=${id}` });
      return events.items.find((e) => e.reason === 'WebhookFailing');
    }, 60_000, 500);
    expect(event.message).toMatch(/failed 5 times/);
    expect(event.message).not.toContain(SECRET);
    // The session itself lives on: the player stops it, and the event still waits for the receiver.
    const t = await token('gus');
    expect([200, 202, 204]).toContain((await httpJson(engine?.base ?? '', 'DELETE', `/api/challenges/${id}`, t)).status);
    expect((await pendingEntries()).map((c) => c.metadata?.name)).toEqual([expect.stringContaining('webhook-solve-')]);
  });

  it('records and delivers once a solve whose event the API never wrote (it stopped between its two writes)', async () => {
    await engine?.kill();
    const port = await freePort();
    const rx = createReceiver(SECRET);
    await new Promise<void>((r) => rx.server.listen(port, '127.0.0.1', r));
    engine = await ApiEngine.create(cluster, { CTF_WEBHOOK_URL: `http://127.0.0.1:${port}/solves`, CTF_WEBHOOK_SECRET: SECRET, CTF_WEBHOOK_MAX_BACKOFF_SECONDS: '4', CTF_WEBHOOK_ALLOW_PRIVATE: 'true', CTF_MAX_SESSIONS_PER_USER: '2' });
    try {
      await engine.start();
      const t = await token('hal');
      const spawned = await httpJson(engine.base, 'POST', '/api/challenges', t, { challenge: 'web-notes' });
      expect(spawned.status).toBe(201);
      const id = (spawned.body as { session: { id: string } }).session.id;
      // The API's first write exactly as it makes it, and not the second (the outbox entry).
      const solvedAt = new Date().toISOString();
      await createWriter(cluster.kube, { component: 'challenge-engine', instance: 'test' }).patchSessionStatus(cluster.namespace, id, { solved: true, solvedAt, solvedBy: { user: 'hal', team: 'blue' } });
      const event = await waitUntil('the solve delivered', () => rx.events.find((e) => e.session === id), 30_000, 100);
      expect(event).toMatchObject({ type: 'solve', challenge: 'web-notes', solvedAt, solvedBy: { user: 'hal', team: 'blue' }, owner: { mode: 'user', user: 'hal' } });
      const read = async () => (await cluster.kube.custom.getNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: cluster.namespace, plural: SESSION_PLURAL, name: id })) as { status?: { solveReportedAt?: string } };
      await waitUntil('the session marked reported', async () => (await read()).status?.solveReportedAt, 20_000, 200);
      await waitUntil('its entry gone', async () => ((await pendingEntries()).every((c) => !c.metadata?.name?.endsWith(event.id.slice('solve-'.length))) ? true : undefined), 20_000, 200);
      // Several passes later: delivered once, not put in the outbox again.
      await sleep(4000);
      expect(rx.deliveries.filter((d) => d.id === event.id).length).toBe(1);
    } finally {
      await new Promise<void>((r) => rx.server.close(() => r()));
    }
  });
});
