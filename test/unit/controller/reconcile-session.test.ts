import { describe, it, expect } from 'vitest';
import { reconcileSession, type ReconcileContext } from '../../../src/controller/reconcile-session.js';
import { OWNED_KINDS, type Owned } from '../../../src/controller/owned-kinds.js';
import { createRecorder } from '../../../src/kube/recorder.js';
import { createMetrics } from '../../../src/metrics.js';
import { DEFAULT_POD_DEFAULTS } from '../../../src/reconcile/pod.js';
import { DEFAULT_NETWORK_OPTIONS } from '../../../src/reconcile/network-policy.js';
import { childNames } from '../../../src/reconcile/names.js';
import { Reason } from '../../../src/reconcile/reasons.js';
import type { ChallengeSession } from '../../../src/api/session.js';
import { apiError, memoryCaches, memoryChildren, RecordingWriter, silentLog, type Write } from '../../support/memory.js';
import { NAMESPACE, SESSION_UID, pwnChallenge, session, webChallenge } from '../reconcile/fixtures.js';
import type { Challenge } from '../../../src/api/challenge.js';
import type { GatewayOptions } from '../../../src/reconcile/routes.js';
import { hostKey, publicHost } from '../../../src/reconcile/public-host.js';

/**
 * The reconcile's orchestration against in-memory caches and a recording writer: which writes a
 * pass makes, in which order, and that a pass over an up-to-date session makes none.
 */

const NOW = new Date('2030-01-01T10:05:00Z');
const EXPIRES = '2030-01-01T11:00:00Z';
const NAME = 'web-notes-alice';
const names = childNames(NAME);

const GATEWAY: GatewayOptions = { gateway: { namespace: 'ctf-gateway', name: 'ctf' }, httpListener: 'http', tlsListener: 'tls' };
const PUBLIC = { domain: 'ctf.example', hostKey: hostKey(Buffer.alloc(32, 7)), httpScheme: 'https' as const, httpPort: 443, tlsPort: 443 };

interface HarnessOptions {
  /** Routes through a Gateway; `available: false` for a cluster without the Gateway API. */
  gateway?: { options?: GatewayOptions; available: boolean };
  challenge?: Challenge;
}

function harness(opts: HarnessOptions = {}) {
  const mem = memoryCaches(NAMESPACE);
  const all = memoryChildren(NAMESPACE);
  // The controller watches the route kinds only where the Gateway API is installed.
  const children = opts.gateway?.available ? all : { ...all, httproutes: undefined, tlsroutes: undefined };
  const writer = new RecordingWriter();
  const ctx: ReconcileContext = {
    caches: mem.caches,
    children,
    writer,
    events: createRecorder(writer, silentLog),
    log: silentLog,
    metrics: createMetrics(),
    flagKey: Buffer.from('0123456789abcdef0123456789abcdef'),
    readStaticFlag: () => Promise.resolve(undefined),
    pod: DEFAULT_POD_DEFAULTS,
    network: DEFAULT_NETWORK_OPTIONS,
    clusterDomain: 'cluster.local',
    public: opts.gateway ? PUBLIC : undefined,
    gateway: opts.gateway ? { options: opts.gateway.options ?? GATEWAY, available: opts.gateway.available } : undefined,
    now: () => NOW,
  };
  const challenge = opts.challenge ?? webChallenge();
  mem.challenges.put(challenge);
  mem.sessions.put(session({ name: NAME, expiresAt: EXPIRES, challenge: challenge.metadata.name }));
  /** What the apiserver would now hold: applied children in their caches, the status merged in. */
  const settle = (extra: { podStatus?: object } = {}) => {
    for (const w of writer.objectWrites()) {
      if (w.verb === 'apply') {
        const obj = structuredClone(w.body) as Owned & { status?: object };
        if (obj.kind === 'Pod' && extra.podStatus) obj.status = extra.podStatus;
        const kind = OWNED_KINDS.find((k) => k.kind === obj.kind);
        if (kind) all[kind.cache].put({ ...obj, metadata: { ...obj.metadata, namespace: NAMESPACE } });
      }
      if (w.verb === 'patch-status') {
        const current = mem.caches.session(NAME);
        if (!current?.ok) throw new Error('no session');
        mem.sessions.put({ ...current.value, status: mergeApply(current.value.status ?? {}, w.body as Record<string, unknown>) } as ChallengeSession);
      }
    }
    writer.writes.length = 0;
  };
  const run = () => reconcileSession(ctx, NAME);
  return { mem, children: all, writer, ctx, settle, run };
}

function mergeApply(target: Record<string, unknown>, patch: Record<string, unknown>): Record<string, unknown> {
  const out = { ...target };
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else if (typeof v === 'object' && !Array.isArray(v) && typeof out[k] === 'object' && out[k] !== null) out[k] = mergeApply(out[k] as Record<string, unknown>, v as Record<string, unknown>);
    else out[k] = v;
  }
  return out;
}

const targets = (ws: Write[]) => ws.map((w) => `${w.verb} ${w.target}`);
/** Events are written in the background; let them land. */
const flush = () => new Promise((r) => setImmediate(r));

describe('reconcileSession orchestration', () => {
  it('creates every owned child in the declared order, then writes the status once', async () => {
    const h = harness();
    const out = await h.run();
    await flush();
    expect(targets(h.writer.objectWrites())).toEqual([
      `apply Secret ${names.secret}`,
      `apply NetworkPolicy ${names.networkPolicy}`,
      `apply Service ${names.service}`,
      `apply Pod ${names.pod}`,
      `patch-status ChallengeSession ${NAME}`,
    ]);
    expect((h.writer.objectWrites()[4]?.body as { phase?: string }).phase).toBe('Provisioning');
    expect(h.writer.events().map((e) => e.body)).toEqual([
      { type: 'Normal', reason: 'Created', message: `Created Secret ${names.secret}, NetworkPolicy ${names.networkPolicy}, Service ${names.service}, Pod ${names.pod}` },
    ]);
    expect(out.requeueAfterMs).toBe(new Date(EXPIRES).getTime() - NOW.getTime());
  });

  it('writes nothing when the children and the status are up to date', async () => {
    const h = harness();
    await h.run();
    h.settle();
    await h.run();
    await flush();
    expect(h.writer.writes).toEqual([]);
  });

  it('writes only the status, and no Event, when the Pod becomes ready', async () => {
    const h = harness();
    await h.run();
    h.settle({ podStatus: { phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }] } });
    await h.run();
    await flush();
    expect(targets(h.writer.objectWrites())).toEqual([`patch-status ChallengeSession ${NAME}`]);
    expect((h.writer.objectWrites()[0]?.body as { phase?: string }).phase).toBe('Running');
    expect(h.writer.events()).toEqual([]);
  });

  it('re-applies a child whose spec hash differs, and never updates the Pod', async () => {
    const h = harness();
    await h.run();
    h.settle();
    for (const cache of ['services', 'pods'] as const) {
      const obj = h.children[cache].get(`${NAMESPACE}/${NAME}`);
      if (!obj) throw new Error(`no ${cache}`);
      h.children[cache].put({ ...obj, metadata: { ...obj.metadata, annotations: { 'ctf.challenge-engine.io/spec-hash': 'stale' } } });
    }
    await h.run();
    expect(targets(h.writer.objectWrites())).toEqual([`apply Service ${names.service}`]);
  });

  it.each(OWNED_KINDS.map((k) => [k.kind, k] as const))('waits, without writing, while a %s of an earlier session of the same name remains', async (kind, k) => {
    const opts: HarnessOptions = { gateway: { available: true }, challenge: kind === 'TLSRoute' ? pwnChallenge() : webChallenge() };
    // The names of this session's children, from a pass over a clean cluster.
    const clean = harness(opts);
    await clean.run();
    const all = targets(clean.writer.objectWrites().filter((w) => w.verb === 'apply'));
    const index = all.findIndex((t) => t.startsWith(`apply ${kind} `));
    const name = all[index]?.split(' ')[2] ?? '';
    const h = harness(opts);
    h.children[k.cache].put({ apiVersion: 'v1', kind: k.kind, metadata: { name, namespace: NAMESPACE, ownerReferences: [{ apiVersion: 'ctf.challenge-engine.io/v1alpha1', kind: 'ChallengeSession', name: NAME, uid: 'an-earlier-session', controller: true }] } });
    const out = await h.run();
    expect(targets(h.writer.objectWrites())).toEqual(all.slice(0, index));
    expect(out.requeueAfterMs).toBe(1_000);
    expect(SESSION_UID).not.toBe('an-earlier-session');
  });

  it('publishes an http port with an HTTPRoute after every other child, and its endpoint carries the public URL and the route', async () => {
    const h = harness({ gateway: { available: true } });
    await h.run();
    const host = publicHost(PUBLIC.hostKey, SESSION_UID, 'http', PUBLIC.domain);
    const writes = h.writer.objectWrites();
    expect(targets(writes).slice(-2)).toEqual([`apply HTTPRoute ${NAME}-http`, `patch-status ChallengeSession ${NAME}`]);
    expect(writes.at(-2)?.body).toMatchObject({ spec: { hostnames: [host], parentRefs: [{ name: 'ctf', namespace: 'ctf-gateway', sectionName: 'http' }] } });
    h.settle({ podStatus: { phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }] } });
    await h.run();
    const running = h.writer.objectWrites();
    expect(targets(running)).toEqual([`patch-status ChallengeSession ${NAME}`]);
    expect(running[0]?.body).toMatchObject({
      phase: 'Running',
      endpoints: [{ name: 'http', externalHost: host, url: `https://${host}`, route: `HTTPRoute ${NAME}-http` }],
      conditions: expect.arrayContaining([expect.objectContaining({ type: 'Routed', status: 'True', reason: Reason.Routed })]) as unknown,
    });
    h.settle();
    await h.run();
    expect(h.writer.objectWrites()).toEqual([]);
  });

  it('reports a missing Gateway API in the Routed condition and keeps provisioning without routes', async () => {
    const h = harness({ gateway: { available: false } });
    await h.run();
    const writes = h.writer.objectWrites();
    expect(targets(writes).filter((t) => t.includes('Route'))).toEqual([]);
    expect(targets(writes)).toContain(`apply Pod ${names.pod}`);
    expect(writes.at(-1)?.body).toMatchObject({ conditions: expect.arrayContaining([expect.objectContaining({ type: 'Routed', status: 'False', reason: Reason.GatewayAPIMissing })]) as unknown });
  });

  it('names a tcp port no listener can carry in the Routed condition', async () => {
    const h = harness({ gateway: { available: true, options: { ...GATEWAY, tlsListener: undefined } }, challenge: pwnChallenge() });
    await h.run();
    const writes = h.writer.objectWrites();
    expect(targets(writes).filter((t) => t.includes('Route'))).toEqual([]);
    const routed = (writes.at(-1)?.body as { conditions: { type: string; reason: string; message: string }[] }).conditions.find((c) => c.type === 'Routed');
    expect(routed).toMatchObject({ reason: Reason.NoListener, message: expect.stringContaining('tcp-1337 (tcp)') as unknown });
  });

  it('reports an unknown challenge in the status and creates nothing', async () => {
    const h = harness();
    h.mem.challenges.remove(webChallenge());
    await h.run();
    const writes = h.writer.objectWrites();
    expect(targets(writes)).toEqual([`patch-status ChallengeSession ${NAME}`]);
    expect(writes[0]?.body).toMatchObject({ phase: 'Failed', conditions: expect.arrayContaining([expect.objectContaining({ reason: Reason.UnknownChallenge })]) as unknown });
  });

  it('turns a child the apiserver refuses into an InvalidChallenge status, checked again in a minute', async () => {
    const h = harness();
    h.writer.fail = (w) => (w.target.startsWith('Service ') ? apiError(422, 'Invalid') : undefined);
    const out = await h.run();
    const writes = h.writer.objectWrites();
    expect(targets(writes)).toEqual([`apply Secret ${names.secret}`, `apply NetworkPolicy ${names.networkPolicy}`, `patch-status ChallengeSession ${NAME}`]);
    expect(writes[2]?.body).toMatchObject({ phase: 'Failed', conditions: expect.arrayContaining([expect.objectContaining({ reason: Reason.InvalidChallenge })]) as unknown });
    expect(out.requeueAfterMs).toBe(60_000);
  });

  it('rethrows a transient failure for the work queue to retry', async () => {
    const h = harness();
    h.writer.fail = (w) => (w.target.startsWith('Pod ') ? apiError(503, 'ServiceUnavailable') : undefined);
    await expect(h.run()).rejects.toThrow();
    expect(h.writer.objectWrites().some((w) => w.verb === 'patch-status')).toBe(false);
  });

  it('deletes an expired session over the resourceVersion it read, and nothing else', async () => {
    const h = harness();
    h.mem.sessions.put({ ...session({ name: NAME, expiresAt: '2030-01-01T10:04:59Z' }), metadata: { ...session({ name: NAME, expiresAt: '2030-01-01T10:04:59Z' }).metadata, resourceVersion: '42' } });
    await h.run();
    expect(h.writer.objectWrites()).toEqual([{ verb: 'delete', target: `ChallengeSession ${NAME}`, body: { uid: SESSION_UID }, resourceVersion: '42' }]);
  });

  it('does nothing for a session being deleted or gone', async () => {
    const h = harness();
    const s = session({ name: NAME, expiresAt: EXPIRES });
    h.mem.sessions.put({ ...s, metadata: { ...s.metadata, deletionTimestamp: '2030-01-01T10:04:00Z' } } as ChallengeSession);
    expect(await h.run()).toEqual({});
    h.mem.sessions.remove(s);
    expect(await h.run()).toEqual({});
    expect(h.writer.writes).toEqual([]);
  });
});
