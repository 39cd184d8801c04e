import type { OwnerMode } from '../../../src/api/common.js';
import { challengeSchema, type Challenge } from '../../../src/api/challenge.js';
import { sessionSchema, type ChallengeSession } from '../../../src/api/session.js';
import { flagForSession } from '../../../src/flags/derive.js';
import type { LiveReads } from '../../../src/kube/live-reads.js';
import { createMetrics } from '../../../src/metrics.js';
import { desiredSession } from '../../../src/reconcile/desired-session.js';
import { KubeSessionService } from '../../../src/sessions/service.js';
import type { Caller } from '../../../src/sessions/types.js';
import { apiError, memoryCaches, RecordingWriter, selectByOwner, silentLog, type Write } from '../../support/memory.js';
import { NAMESPACE, pwnChallenge, webChallenge } from '../reconcile/fixtures.js';

/**
 * The player domain over in-memory caches, a recording writer and an in-memory view of what the
 * apiserver holds, for team-owned instances: creates, deletes and patches land in that view and
 * in the cache (as this replica's watch would show them); a write over a stale resourceVersion
 * conflicts, a create of an existing name already exists.
 */

export const NOW = new Date('2030-01-01T10:05:00Z');
export const LIMIT = 3;
export const FLAG_KEY = Buffer.alloc(32, 7);
export const RED_A: Caller = { user: 'ann@red.example', team: 'red', admin: false };
export const RED_B: Caller = { user: 'ben@red.example', team: 'red', admin: false };
export const BLUE: Caller = { user: 'cat@blue.example', team: 'blue', admin: false };
export const LONER: Caller = { user: 'lou@example.org', admin: false };

/** web-notes under another name, played by teams. */
export function teamChallenge(name: string): Challenge {
  const c = webChallenge({ owner: 'team' });
  return challengeSchema.parse({ ...c, metadata: { ...c.metadata, name } });
}

const nameOf = (w: Write) => w.target.split(' ')[1] ?? '';

export function teamHarness(instanceOwner: OwnerMode = 'user', opts: { maxInstances?: number; now?: () => Date } = {}) {
  const mem = memoryCaches(NAMESPACE);
  const writer = new RecordingWriter();
  const server = new Map<string, ChallengeSession>();
  const store = (s: ChallengeSession) => {
    server.set(s.metadata.name, s);
    mem.sessions.put(s);
  };
  writer.fail = (w) => {
    const s = server.get(nameOf(w));
    if (w.verb === 'create') return s ? apiError(409, 'AlreadyExists') : undefined;
    if (w.verb === 'event') return undefined;
    if (!s) return apiError(404, 'NotFound');
    return w.resourceVersion && w.resourceVersion !== s.metadata.resourceVersion ? apiError(409, 'Conflict') : undefined;
  };
  writer.onCreated = (obj) => store(sessionSchema.parse(obj));
  writer.onWrite = (w) => {
    const s = server.get(nameOf(w));
    if (!s || w.verb === 'create' || w.verb === 'event') return;
    if (w.verb === 'delete') {
      server.delete(s.metadata.name);
      mem.sessions.remove(s);
      return;
    }
    const next = structuredClone(s);
    next.metadata.resourceVersion = String(Number(s.metadata.resourceVersion) + 1);
    if (w.verb === 'patch-metadata') {
      const patch = (w.body as { metadata: { annotations: Record<string, string | null> } }).metadata.annotations;
      const annotations = { ...next.metadata.annotations };
      for (const [k, v] of Object.entries(patch)) if (v === null) delete annotations[k]; else annotations[k] = v;
      next.metadata.annotations = annotations;
    }
    if (w.verb === 'patch-status') next.status = { ...next.status, ...(w.body as object) };
    store(next);
  };
  const live: LiveReads = {
    session: (name) => Promise.resolve(server.get(name)),
    sessionsAt: (owner, challenge) => Promise.resolve(selectByOwner(server.values(), owner, challenge)),
    secretValue: () => Promise.resolve(undefined),
    ping: () => Promise.resolve(),
  };
  const metrics = createMetrics();
  const service = new KubeSessionService({
    // Never reached: every read past the cache goes through `live`.
    kube: undefined as never,
    live,
    caches: mem.caches,
    writer,
    log: silentLog,
    metrics,
    flagKey: FLAG_KEY,
    maxSessionsPerUser: LIMIT,
    instanceOwner,
    maxInstances: opts.maxInstances,
    now: opts.now ?? (() => NOW),
    publicHttp: { scheme: 'https', port: 443 },
  });
  mem.challenges.put(webChallenge({ owner: 'team' }));
  mem.challenges.put(pwnChallenge());

  /** A session the apiserver holds (and, with `cached`, this replica's cache), as a spawn makes it. */
  const held = (o: { name: string; challenge: string; caller: Caller; owner?: OwnerMode; uid: string; cached?: boolean }) => {
    const body = desiredSession({ name: o.name, namespace: NAMESPACE, challenge: o.challenge, user: o.caller.user, team: o.caller.team, owner: o.owner, expiresAt: '2030-01-01T11:00:00Z' });
    const s = sessionSchema.parse({ ...body, metadata: { ...body.metadata, uid: o.uid, resourceVersion: '7', creationTimestamp: '2030-01-01T09:00:00Z' } });
    if (o.cached) store(s);
    else server.set(s.metadata.name, s);
    return s;
  };

  /** Marks a session Running with one published http port on `host`. */
  const running = (name: string, host: string) => {
    const s = server.get(name);
    if (!s) throw new Error(`no session ${name}`);
    store({ ...s, status: { phase: 'Running', endpoints: [{ name: 'http', protocol: 'http', host: `${name}.ctf.svc`, port: 8080, externalHost: host, url: `https://${host}`, route: `HTTPRoute ${name}-http` }] } });
  };

  /** The dynamic flag of a stored session. */
  const flagOf = (name: string) => {
    const s = server.get(name);
    const c = s && mem.caches.challenge(s.spec.challenge);
    if (!s || !c?.ok) throw new Error(`no session or challenge for ${name}`);
    return flagForSession(FLAG_KEY, s, c.value.spec) ?? '';
  };

  const open = (host: string, uri: string, cookie?: string) => service.authorize({ host, uri, cookie });
  return { mem, writer, server, service, metrics, held, running, flagOf, open };
}

export const creates = (w: RecordingWriter) => w.objectWrites().filter((x) => x.verb === 'create').map(nameOf);
export const objectWritesOf = (w: RecordingWriter) => w.writes.filter((x) => x.verb !== 'event').map((x) => `${x.verb} ${nameOf(x)}${x.refused ? ' (refused)' : ''}`);
