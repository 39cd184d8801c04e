import type { Logger } from 'pino';
import type { OwnerMode } from '../api/common.js';
import { isUnclaimedPool, type ChallengeSession } from '../api/session.js';
import type { Kube } from '../kube/client.js';
import { liveReads, type LiveReads } from '../kube/live-reads.js';
import { createRecorder } from '../kube/recorder.js';
import type { Writer } from '../kube/writes.js';
import type { Metrics } from '../metrics.js';
import type { Caches } from '../read-model/caches.js';
import { challengeOf, ownSessions, visibleSession, type PlayerDeps } from './deps.js';
import { FlagIndex } from './flag-index.js';
import { submitFlag } from './flags.js';
import { extendSession, stopSession } from './lifetime.js';
import { owns, ownersOf, slotPrefix } from './owner.js';
import { isPoolName } from '../reconcile/pool.js';
import { SessionWaits } from './read-your-writes.js';
import { spawnSession } from './spawn.js';
import { catalogueEntries, hasSettled, sessionView } from './views.js';
import { QueuePositions } from './queue.js';
import type { AccessDecision, AccessRequest, Caller, CatalogueEntry, FlagResult, FlagTarget, SessionService, SessionView } from './types.js';
import { accessKey } from '../access/tokens.js';
import { authorize, openLink, type AccessOptions } from './access.js';

/**
 * The player domain on top of the read model: what the HTTP API asks of sessions and
 * challenges. Each reason to change has its own module (spawn arbitration, flags, lifetime,
 * views, read-your-writes waits); this class only wires them to one set of dependencies.
 */

export interface ServiceOptions {
  kube: Kube;
  caches: Caches;
  writer: Writer;
  log: Logger;
  metrics: Metrics;
  flagKey: Buffer;
  /** Concurrent sessions per owner: a user, or a team for team-owned instances. */
  maxSessionsPerUser: number;
  /** Who owns the instances of a Challenge that does not say (spec.owner); default user. */
  instanceOwner?: OwnerMode;
  now?: () => Date;
  /** Reads past the cache; defaults to the apiserver behind `kube`. */
  live?: LiveReads;
  /** Scheme and port players open public hosts with (Secure cookies for https). */
  publicHttp?: { scheme: 'http' | 'https'; port: number };
  /** Record every solve in the webhook outbox (CTF_WEBHOOK_URL set). */
  webhooks?: boolean;
  /** CTF_MAX_INSTANCES, for queue positions; undefined: unlimited. */
  maxInstances?: number;
}

export class KubeSessionService implements SessionService {
  private readonly d: PlayerDeps;
  private readonly flags: FlagIndex;
  private readonly access: AccessOptions;
  private readonly queue: QueuePositions;
  /** Spawns this replica is answering, in the order they came. */
  private readonly spawnsInFlight = new Set<Promise<unknown>>();
  private apiserverOkUntil = 0;

  constructor(private readonly o: ServiceOptions) {
    this.d = {
      live: o.live ?? liveReads(o.kube, o.caches.namespace),
      caches: o.caches,
      writer: o.writer,
      events: createRecorder(o.writer, o.log),
      waits: new SessionWaits(o.caches),
      log: o.log,
      metrics: o.metrics,
      flagKey: o.flagKey,
      instanceOwner: o.instanceOwner ?? 'user',
      webhooks: o.webhooks ?? false,
      claiming: new Map(),
      spawning: new Map(),
      now: o.now ?? (() => new Date()),
    };
    this.flags = new FlagIndex(o.caches, o.flagKey);
    this.queue = new QueuePositions(o.caches, o.maxInstances);
    const pub = o.publicHttp ?? { scheme: 'https', port: 443 };
    const usual = pub.scheme === 'https' ? 443 : 80;
    this.access = { key: accessKey(o.flagKey), secure: pub.scheme === 'https', origin: (host) => `${pub.scheme}://${host}${pub.port === usual ? '' : `:${pub.port}`}` };
  }

  catalogue(): CatalogueEntry[] {
    return catalogueEntries(this.o.caches.allChallenges(), this.d.instanceOwner);
  }

  view(s: ChallengeSession): SessionView {
    return sessionView(s, challengeOf(this.d, s.spec.challenge), this.d.now(), this.queue.place(s));
  }

  async spawn(caller: Caller, challenge: string): Promise<{ created: boolean; session: SessionView }> {
    const earlier = [...this.spawnsInFlight];
    const work = spawnSession(this.d, this.o.maxSessionsPerUser, caller, challenge);
    this.spawnsInFlight.add(work);
    try {
      const out = await work;
      // Spawns this replica took first are ahead of this one in the queue: until they show in
      // the cache, the place computed would leave them out (and say this one starts now).
      if (earlier.length > 0 && this.queue.limits(challenge)) await settledWithin(earlier, EARLIER_SPAWNS_WAIT_MS);
      const cached = this.d.waits.cached(out.session.metadata.name);
      return { created: out.created, session: this.view(cached && cached.metadata.uid === out.session.metadata.uid ? cached : out.session) };
    } finally {
      this.spawnsInFlight.delete(work);
    }
  }

  list(caller: Caller, all = false): SessionView[] {
    return this.listed(caller, all)
      .map((s) => this.view(s))
      .sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
  }

  async waitList(caller: Caller, all: boolean, timeoutMs: number, signal?: AbortSignal): Promise<SessionView[]> {
    // A session being deleted leaves the list, so it no longer holds the reply up.
    const settled = (s: ChallengeSession) => s.metadata.deletionTimestamp !== undefined || hasSettled(this.view(s));
    await this.d.waits.untilEach(() => this.listed(caller, all), settled, timeoutMs, { signal });
    return this.list(caller, all);
  }

  /** What list shows, unsorted: the caller's live sessions, or every live one for `all`. */
  private listed(caller: Caller, all: boolean): ChallengeSession[] {
    // Unclaimed pool instances are nobody's sessions yet (the pool gauge counts them).
    return caller.admin && all ? this.o.caches.allSessions().filter((s) => !s.metadata.deletionTimestamp && !isUnclaimedPool(s)) : ownSessions(this.d, caller);
  }

  get(caller: Caller, id: string): SessionView {
    return this.view(visibleSession(this.d, caller, id));
  }

  async waitReady(caller: Caller, id: string, timeoutMs: number, signal?: AbortSignal): Promise<SessionView> {
    const settled = (s: ChallengeSession) => hasSettled(this.view(s));
    const owned = (s: ChallengeSession | undefined) => s !== undefined && owns(caller, s);
    const { waits } = this.d;
    // A session just created through another replica may not be in this cache yet; only the
    // slot names of the caller and their team are waited for, so unknown ids still fail fast.
    if (!waits.cached(id) && ownersOf(caller).some((o) => id.startsWith(slotPrefix(o)))) await waits.until(id, (c) => c !== undefined, Math.min(timeoutMs, 2_000), { signal });
    // Likewise a pool instance just claimed through another replica may still look unclaimed here.
    else if (isPoolName(id) && !owned(waits.cached(id))) await waits.until(id, owned, Math.min(timeoutMs, 2_000), { signal });
    const first = visibleSession(this.d, caller, id);
    if (settled(first) || timeoutMs <= 0) return this.view(first);
    await waits.until(id, (c) => c === undefined || settled(c), timeoutMs, { signal });
    return this.get(caller, id);
  }

  stop(caller: Caller, id: string): Promise<void> {
    return stopSession(this.d, caller, id);
  }

  async extend(caller: Caller, id: string): Promise<SessionView> {
    const { session, expiresAt } = await extendSession(this.d, caller, id);
    return { ...this.view(session), expiresAt };
  }

  submitFlag(caller: Caller, target: FlagTarget, flag: string): Promise<FlagResult> {
    return submitFlag(this.d, this.flags, caller, target, flag);
  }

  openLink(caller: Caller, id: string, port?: string): Promise<{ url: string; expiresAt: string }> {
    return openLink(this.d, this.access, caller, id, port);
  }

  authorize(req: AccessRequest): Promise<AccessDecision> {
    return authorize(this.d, this.access, req);
  }

  async ready(): Promise<boolean> {
    if (!this.o.caches.synced()) return false;
    if (Date.now() < this.apiserverOkUntil) return true;
    try {
      await this.d.live.ping();
      this.apiserverOkUntil = Date.now() + 2000;
      return true;
    } catch {
      return false;
    }
  }
}

/** How long a spawn's answer waits for the spawns that came before it on this replica. */
const EARLIER_SPAWNS_WAIT_MS = 2_000;

/** Resolves once every promise has settled, or after `ms`. */
async function settledWithin(promises: Promise<unknown>[], ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([Promise.allSettled(promises), new Promise<void>((r) => (timer = setTimeout(r, ms)))]);
  clearTimeout(timer);
}
