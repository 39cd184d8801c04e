import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { ANNOTATION_EXPIRES_AT, API_VERSION, GROUP, LABEL_CHALLENGE, LABEL_USER_HASH, SESSION_KIND, SESSION_PLURAL, VERSION } from '../api/group.js';
import { parseDuration } from '../api/duration.js';
import type { Challenge } from '../api/challenge.js';
import type { ChallengeSession } from '../api/session.js';
import { sessionSchema } from '../api/session.js';
import type { Caches } from '../controller/caches.js';
import type { Kube } from '../kube/client.js';
import { classifyError, ignoreNotFound } from '../kube/errors.js';
import { getJson } from '../kube/raw.js';
import { sessionRef, type Writer } from '../kube/writes.js';
import type { Metrics } from '../metrics.js';
import { effectiveRuntime } from '../reconcile/runtime.js';
import { effectiveExpiry, extendedExpiry, formatExpiry, formatTimestamp, initialExpiry } from '../reconcile/expiry.js';
import { sessionLabels } from '../reconcile/labels.js';
import { userHash } from '../reconcile/names.js';
import { flagForSession, verifyFlag } from '../flags/derive.js';
import { FlagIndex } from './flag-index.js';
import { DomainError, type Caller, type CatalogueEntry, type FlagResult, type FlagTarget, type SessionService, type SessionView } from './types.js';

/**
 * The player domain on top of the caches. Spawning arbitrates the per-user limit through the
 * apiserver: a user's sessions are named s-<userhash>-<slot> with slot < limit, so at most
 * `limit` can exist at once whatever the number of replicas, and slots are probed in an order
 * derived from the challenge so concurrent spawns of one challenge collide on the same name and
 * the loser returns the winner's session (idempotent spawn). When a stop frees a slot in between,
 * two spawns of one challenge can land in different slots; each creator then reads the user's
 * sessions exactly as they were at its own create's resourceVersion, and whoever finds an older
 * one of the same challenge there deletes its own and returns the older one.
 */

export interface ServiceOptions {
  kube: Kube;
  caches: Caches;
  writer: Writer;
  log: Logger;
  metrics: Metrics;
  flagKey: Buffer;
  maxSessionsPerUser: number;
  now?: () => Date;
}

export function sessionName(user: string, slot: number): string {
  return `s-${userHash(user)}-${slot}`;
}

/** The order in which a spawn of `challenge` probes the user's slots. */
export function slotOrder(challenge: string, slots: number): number[] {
  const start = createHash('sha256').update(challenge).digest().readUInt32BE(0) % slots;
  return Array.from({ length: slots }, (_, i) => (start + i) % slots);
}

function readyCondition(s: ChallengeSession) {
  return s.status?.conditions?.find((c) => c.type === 'Ready');
}

export class KubeSessionService implements SessionService {
  private readonly now: () => Date;
  private readonly changes = new EventEmitter();
  private readonly flags: FlagIndex;
  private apiserverOkUntil = 0;

  constructor(private readonly o: ServiceOptions) {
    this.now = o.now ?? (() => new Date());
    this.changes.setMaxListeners(0);
    const notify = (obj: { metadata?: { name?: string } }) => {
      if (obj.metadata?.name) this.changes.emit(obj.metadata.name);
    };
    o.caches.sessions.on('add', notify);
    o.caches.sessions.on('update', notify);
    o.caches.sessions.on('delete', notify);
    this.flags = new FlagIndex(o.caches, o.flagKey);
  }

  catalogue(): CatalogueEntry[] {
    return this.o.caches
      .allChallenges()
      .filter((c) => c.spec.enabled)
      .map((c) => ({
        name: c.metadata.name,
        title: c.spec.title,
        description: c.spec.description,
        category: c.spec.category,
        points: c.spec.points,
        tags: c.spec.tags,
        protocols: [...new Set(c.spec.expose.map((e) => e.protocol))],
        lifetimeSeconds: (parseDuration(c.spec.lifetime.default) ?? 0) / 1000,
        maxLifetimeSeconds: (parseDuration(c.spec.lifetime.max) ?? 0) / 1000,
      }))
      .sort((a, b) => a.category.localeCompare(b.category) || a.points - b.points || a.name.localeCompare(b.name));
  }

  view(s: ChallengeSession): SessionView {
    const ready = readyCondition(s);
    const eff = effectiveRuntime(s, this.challengeOf(s.spec.challenge));
    return {
      id: s.metadata.name,
      challenge: s.spec.challenge,
      user: s.spec.user,
      phase: s.status?.phase ?? 'Pending',
      ready: s.status?.phase === 'Running',
      reason: ready?.reason,
      message: ready?.message,
      createdAt: String(s.metadata.creationTimestamp ?? ''),
      expiresAt: formatExpiry(effectiveExpiry(s, eff?.runtime, this.now())),
      endpoints: s.status?.endpoints ?? [],
      solved: s.status?.solved ?? false,
      solvedAt: s.status?.solvedAt,
    };
  }

  private challengeOf(name: string): Challenge | undefined {
    const c = this.o.caches.challenge(name);
    return c?.ok ? c.value : undefined;
  }

  private ownSessions(caller: Caller): ChallengeSession[] {
    return this.o.caches.sessionsOfUser(caller.user).filter((s) => !s.metadata.deletionTimestamp);
  }

  /** The session if the caller may see it; NotFound otherwise, so ids cannot be probed. */
  private visible(caller: Caller, id: string): ChallengeSession {
    const p = this.o.caches.session(id);
    if (!p?.ok || (!caller.admin && p.value.spec.user !== caller.user) || p.value.metadata.deletionTimestamp) {
      throw new DomainError('NotFound', `session ${id} not found`);
    }
    return p.value;
  }

  async spawn(caller: Caller, challengeName: string): Promise<{ created: boolean; session: SessionView }> {
    const challenge = this.challengeOf(challengeName);
    if (!challenge || !challenge.spec.enabled) throw new DomainError('NotFound', `challenge ${challengeName} not found`);
    const existing = this.ownSessions(caller).find((s) => s.spec.challenge === challengeName);
    if (existing) return { created: false, session: this.view(existing) };

    const now = this.now();
    const lifetime = challenge.spec.lifetime;
    // Slots this replica's cache shows taken are tried last rather than skipped: the cache may
    // lag a stop, and the apiserver's answer to the create is what decides.
    const order = slotOrder(challengeName, this.o.maxSessionsPerUser);
    const taken = (slot: number) => this.o.caches.session(sessionName(caller.user, slot)) !== undefined;
    for (const slot of [...order.filter((s) => !taken(s)), ...order.filter(taken)]) {
      const name = sessionName(caller.user, slot);
      const body = {
        apiVersion: API_VERSION,
        kind: SESSION_KIND,
        metadata: {
          name,
          namespace: this.o.caches.namespace,
          labels: sessionLabels({ metadata: { name }, spec: { challenge: challengeName, user: caller.user } }),
          annotations: { [ANNOTATION_EXPIRES_AT]: formatExpiry(initialExpiry({ lifetime }, now)) },
        },
        spec: { challenge: challengeName, user: caller.user, ...(caller.team ? { team: caller.team } : {}) },
      };
      try {
        const created: unknown = await this.o.kube.custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: this.o.caches.namespace, plural: SESSION_PLURAL, body });
        this.o.log.info({ session: name, challenge: challengeName, userHash: userHash(caller.user) }, 'Created ChallengeSession');
        const session = sessionSchema.parse(created);
        const older = await this.olderDuplicate(session).catch((err: unknown) => {
          // Rare and harmless to skip: at worst the user holds two sessions of one challenge.
          this.o.log.warn({ session: name, err: classifyError(err).message }, 'Could not check for a concurrent duplicate spawn');
          return undefined;
        });
        if (older) {
          await ignoreNotFound(this.o.writer.deleteSession(this.o.caches.namespace, name, session.metadata.uid));
          this.o.log.info({ session: name, kept: older.metadata.name, challenge: challengeName }, 'Deleted a duplicate from a concurrent spawn');
          await this.untilCached(older.metadata.name, (c) => c !== undefined, 2_000);
          return { created: false, session: this.view(older) };
        }
        // Read-your-writes: the caller's next request on this replica must find the session.
        await this.untilCached(name, (c) => c?.metadata.uid === session.metadata.uid, 2_000);
        return { created: true, session: this.view(session) };
      } catch (err) {
        if (classifyError(err).kind !== 'AlreadyExists') throw err;
      }
      const occupant = await this.readLive(name);
      if (occupant && occupant.spec.user === caller.user && occupant.spec.challenge === challengeName && !occupant.metadata.deletionTimestamp) {
        return { created: false, session: this.view(occupant) };
      }
    }
    throw new DomainError('LimitReached', `at most ${this.o.maxSessionsPerUser} sessions at a time; stop one first`);
  }

  /**
   * Another live session of the same user and challenge that existed when `own` was created:
   * a list at exactly the create's resourceVersion holds everything created before it and
   * nothing after, so of two concurrent creators exactly the later one finds the other.
   */
  private async olderDuplicate(own: ChallengeSession): Promise<ChallengeSession | undefined> {
    const rv = own.metadata.resourceVersion;
    if (!rv) return undefined;
    const selector = `${LABEL_USER_HASH}=${userHash(own.spec.user)},${LABEL_CHALLENGE}=${own.spec.challenge}`;
    const query = new URLSearchParams({ labelSelector: selector, resourceVersion: rv, resourceVersionMatch: 'Exact' });
    const path = `/apis/${GROUP}/${VERSION}/namespaces/${this.o.caches.namespace}/${SESSION_PLURAL}?${query.toString()}`;
    const list = await getJson<{ items?: unknown[] }>(this.o.kube.kc, path, 10_000);
    for (const item of list.items ?? []) {
      const p = sessionSchema.safeParse(item);
      if (!p.success) continue;
      const s = p.data;
      if (s.metadata.uid !== own.metadata.uid && s.spec.user === own.spec.user && s.spec.challenge === own.spec.challenge && !s.metadata.deletionTimestamp) return s;
    }
    return undefined;
  }

  private async readLive(name: string): Promise<ChallengeSession | undefined> {
    const raw: unknown = await ignoreNotFound(this.o.kube.custom.getNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: this.o.caches.namespace, plural: SESSION_PLURAL, name }));
    return raw === undefined ? undefined : sessionSchema.parse(raw);
  }

  list(caller: Caller, all = false): SessionView[] {
    const sessions = caller.admin && all ? this.o.caches.allSessions().filter((s) => !s.metadata.deletionTimestamp) : this.ownSessions(caller);
    return sessions.map((s) => this.view(s)).sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
  }

  get(caller: Caller, id: string): SessionView {
    return this.view(this.visible(caller, id));
  }

  /**
   * Read-your-writes: resolves once this replica's cache shows the session in a state that
   * satisfies `seen` (called with undefined when the cache has no such session), or after
   * `timeoutMs`. The player's next request on this replica then sees what it just did.
   * `known`: the apiserver is known to hold what is awaited (this replica wrote or just read it),
   * so a timeout makes the cache suspect (Caches.suspectBehind); a player's guess at an id never
   * does.
   */
  private untilCached(name: string, seen: (s: ChallengeSession | undefined) => boolean, timeoutMs: number, known = true): Promise<void> {
    const cached = () => {
      const p = this.o.caches.session(name);
      return seen(p?.ok ? p.value : undefined);
    };
    if (cached()) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.changes.off(name, check);
        resolve();
      };
      const check = () => {
        if (cached()) done();
      };
      const timer = setTimeout(() => {
        done();
        if (known) this.o.caches.suspectBehind(name, cached);
      }, timeoutMs);
      this.changes.on(name, check);
    });
  }

  /** Until the cache shows the session `uid` gone, replaced by another, or as `shows` wants it. */
  private untilCachedShows(name: string, uid: string | undefined, shows: (s: ChallengeSession) => boolean): Promise<void> {
    return this.untilCached(name, (c) => c === undefined || c.metadata.uid !== uid || shows(c), 2_000);
  }

  async waitReady(caller: Caller, id: string, timeoutMs: number, signal?: AbortSignal): Promise<SessionView> {
    const settled = (v: SessionView) => v.phase === 'Running' || v.phase === 'Failed' || v.phase === 'Expired';
    // A session just created through another replica may not be in this cache yet; only the
    // caller's own slot names are waited for, so unknown ids still fail fast.
    if (!this.o.caches.session(id) && id.startsWith(`s-${userHash(caller.user)}-`)) await this.untilCached(id, (c) => c !== undefined, Math.min(timeoutMs, 2_000), false);
    const first = this.get(caller, id);
    if (settled(first) || timeoutMs <= 0) return first;
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.changes.off(id, check);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const check = () => {
        const p = this.o.caches.session(id);
        if (!p?.ok || settled(this.view(p.value))) done();
      };
      const timer = setTimeout(done, timeoutMs);
      this.changes.on(id, check);
      signal?.addEventListener('abort', done);
    });
    return this.get(caller, id);
  }

  async stop(caller: Caller, id: string): Promise<void> {
    const s = this.visible(caller, id);
    try {
      await this.o.writer.deleteSession(this.o.caches.namespace, id, s.metadata.uid);
    } catch (err) {
      const kind = classifyError(err).kind;
      if (kind === 'NotFound' || kind === 'Conflict') throw new DomainError('NotFound', `session ${id} not found`);
      throw err;
    }
    this.o.metrics.sessionsEnded.inc({ reason: 'deleted' });
    this.o.log.info({ session: id, byAdmin: caller.admin && s.spec.user !== caller.user }, 'Deleted ChallengeSession');
    await this.untilCachedShows(id, s.metadata.uid, (c) => c.metadata.deletionTimestamp !== undefined);
  }

  async extend(caller: Caller, id: string): Promise<SessionView> {
    this.visible(caller, id);
    for (let attempt = 0; attempt < 5; attempt++) {
      const live = await this.readLive(id);
      if (!live || live.metadata.deletionTimestamp || (!caller.admin && live.spec.user !== caller.user)) throw new DomainError('NotFound', `session ${id} not found`);
      const eff = effectiveRuntime(live, this.challengeOf(live.spec.challenge));
      if (!eff) throw new DomainError('Invalid', `challenge ${live.spec.challenge} no longer exists`);
      const next = extendedExpiry(live, eff.runtime, this.now());
      if ('error' in next) {
        this.o.metrics.extensions.inc({ result: 'refused' });
        throw new DomainError('MaxLifetime', next.error === 'Expired' ? 'the session has expired' : 'the session is already at its maximum lifetime');
      }
      try {
        const expiresAt = formatExpiry(next.at);
        await this.o.writer.patchSessionMetadata(this.o.caches.namespace, id, { metadata: { annotations: { [ANNOTATION_EXPIRES_AT]: expiresAt } } }, live.metadata.resourceVersion);
        this.o.metrics.extensions.inc({ result: 'extended' });
        this.o.log.info({ session: id, expiresAt }, 'Extended ChallengeSession');
        await this.untilCachedShows(id, live.metadata.uid, (c) => c.metadata.annotations?.[ANNOTATION_EXPIRES_AT] === expiresAt);
        return { ...this.view(live), expiresAt };
      } catch (err) {
        const kind = classifyError(err).kind;
        // Deleted (stopped or expired) between the read and the write.
        if (kind === 'NotFound') throw new DomainError('NotFound', `session ${id} not found`);
        if (kind !== 'Conflict') throw err;
      }
    }
    throw new DomainError('Unavailable', 'the session is changing too fast; try again');
  }

  async submitFlag(caller: Caller, target: FlagTarget, flag: string): Promise<FlagResult> {
    let own: ChallengeSession | undefined;
    let challengeName: string;
    if ('sessionId' in target) {
      own = this.visible({ ...caller, admin: false }, target.sessionId);
      challengeName = own.spec.challenge;
    } else {
      challengeName = target.challenge;
      if (!this.challengeOf(challengeName)) throw new DomainError('NotFound', `challenge ${challengeName} not found`);
      own = this.ownSessions(caller).find((s) => s.spec.challenge === challengeName);
    }
    const correct = own ? await this.check(own, flag) : false;
    if (correct && own) {
      this.o.metrics.flagSubmissions.inc({ result: 'correct' });
      // Already solved as far as the cache knows: nothing to read or write.
      if (!own.status?.solved) await this.recordSolve(own);
      return { correct: true };
    }
    const owner = this.flags.ownerOf(challengeName, flag);
    if (owner && owner.spec.user !== caller.user) {
      this.o.metrics.flagSubmissions.inc({ result: 'shared' });
      this.o.metrics.flagSharing.inc();
      this.o.log.warn({ challenge: challengeName, flagOwnerSession: owner.metadata.name, submitterSession: own?.metadata.name, submitterHash: userHash(caller.user) }, 'Suspected flag sharing');
      const message = `User ${caller.user}${own ? ` (session ${own.metadata.name})` : ''} submitted the flag of session ${owner.metadata.name} (user ${owner.spec.user})`;
      await this.o.writer.event(sessionRef(owner), 'Warning', 'FlagShared', message, own ? sessionRef(own) : undefined).catch(() => undefined);
    } else {
      this.o.metrics.flagSubmissions.inc({ result: 'wrong' });
    }
    return { correct: false };
  }

  private async check(s: ChallengeSession, flag: string): Promise<boolean> {
    const eff = effectiveRuntime(s, this.challengeOf(s.spec.challenge));
    if (!eff || !s.metadata.uid) return false;
    const dyn = eff.runtime.flag.dynamic;
    if (dyn) return verifyFlag(flagForSession(this.o.flagKey, s, eff.runtime) ?? '', flag);
    const ref = eff.runtime.flag.static?.secretRef;
    if (!ref) return false;
    const expected = await this.flags.staticFlag(this.o.kube, this.o.caches.namespace, ref.name, ref.key);
    return expected !== undefined && verifyFlag(expected, flag);
  }

  /** Records the first solve; a conflict means someone else wrote first, so re-read and retry. */
  private async recordSolve(s: ChallengeSession): Promise<void> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const live = await this.readLive(s.metadata.name);
      if (!live || live.status?.solved) return;
      try {
        await this.o.kube.custom.patchNamespacedCustomObjectStatus(
          {
            group: GROUP,
            version: VERSION,
            namespace: this.o.caches.namespace,
            plural: SESSION_PLURAL,
            name: s.metadata.name,
            body: [
              { op: 'test', path: '/metadata/resourceVersion', value: live.metadata.resourceVersion },
              { op: 'add', path: '/status', value: { ...(live.status ?? {}), solved: true, solvedAt: formatTimestamp(this.now()) } },
            ],
          },
        );
        this.o.metrics.solves.inc({ challenge: s.spec.challenge });
        this.o.log.info({ session: s.metadata.name, challenge: s.spec.challenge }, 'Solved');
        await this.untilCachedShows(s.metadata.name, live.metadata.uid, (c) => c.status?.solved === true);
        return;
      } catch (err) {
        const kind = classifyError(err).kind;
        if (kind === 'NotFound') {
          // The flag was right; the session ended (stopped or expired) before the solve was stored.
          this.o.log.warn({ session: s.metadata.name }, 'Solve not recorded: the session is gone');
          return;
        }
        if (kind !== 'Conflict' && kind !== 'Invalid') throw err;
      }
    }
  }

  async ready(): Promise<boolean> {
    if (!this.o.caches.synced()) return false;
    if (Date.now() < this.apiserverOkUntil) return true;
    try {
      await getJson(this.o.kube.kc, '/version', 2000);
      this.apiserverOkUntil = Date.now() + 2000;
      return true;
    } catch {
      return false;
    }
  }
}
