import type { Logger } from 'pino';
import type { Kube } from '../kube/client.js';
import { Informer } from '../kube/informer.js';
import { pagedList } from '../kube/raw.js';
import { GROUP, VERSION, CHALLENGE_PLURAL, SESSION_PLURAL } from '../api/group.js';
import { challengeSchema, type Challenge } from '../api/challenge.js';
import { isUnclaimedPool, sessionOwner, sessionSchema, type ChallengeSession } from '../api/session.js';
import type { Metrics } from '../metrics.js';
import type { ObjectMetaLike, WatchedCache } from './store.js';
import { SharedSnapshots } from './shared-snapshots.js';
import { shareSessionStrings } from './shared-strings.js';

/**
 * The read model every replica keeps: informer caches of Challenges and ChallengeSessions in the
 * engine's namespace, indexed by owner (user or team) and by challenge. The HTTP API reads only from here and
 * the controller reconciles from here. Objects are parsed with the zod schemas as they enter the
 * cache; one that parses is stored in its parsed form (one copy per object), one that does not
 * stays raw and reports its error when read.
 */

/** Watch settings of every cache (see InformerOptions); from the engine's configuration. */
export interface WatchSettings {
  timeoutSeconds?: number;
  stallMs?: number;
  relistEveryMs?: number;
}

/** An informer of `path` wired to the engine's watch settings and informer metrics. */
export function watchedInformer<T extends ObjectMetaLike>(
  kube: Kube,
  log: Logger,
  metrics: Metrics | undefined,
  watch: WatchSettings,
  o: { name: string; path: string; labelSelector?: string; transform?: (obj: T) => T },
): Informer<T> {
  return new Informer<T>({
    ...o,
    kc: kube.kc,
    list: pagedList<T>(kube.kc, o.path, o.labelSelector),
    log,
    watchTimeoutSeconds: watch.timeoutSeconds,
    stallMs: watch.stallMs,
    relistEveryMs: watch.relistEveryMs,
    onRelist: () => metrics?.informerRelists.inc({ informer: o.name }),
    onError: () => metrics?.informerErrors.inc({ informer: o.name }),
    onStale: (n) => metrics?.cacheStale.inc({ informer: o.name }, n),
  });
}

export type Raw = { metadata?: { name?: string; namespace?: string; resourceVersion?: string; uid?: string }; spec?: { user?: unknown; challenge?: unknown; team?: unknown; owner?: unknown; [field: string]: unknown } };

type Schema<T> = { safeParse: (v: unknown) => { success: true; data: T } | { success: false; error: { issues: { path: PropertyKey[]; message: string }[] } } };

export type Parsed<T> = { ok: true; value: T } | { ok: false; error: string };

/** Session index names (Caches.sessions.byIndex). */
/** User-owned sessions by spec.user (team-owned ones are under INDEX_TEAM, whoever started them). */
export const INDEX_USER = 'user';
/** Team-owned sessions (spec.owner team) by spec.team. */
export const INDEX_TEAM = 'team';
export const INDEX_CHALLENGE = 'challenge';
/** Unclaimed pool instances by challenge: what a spawn may claim. */
export const INDEX_POOL = 'pool';
/** Public hosts of the session's endpoints (status.endpoints[].externalHost). */
export const INDEX_HOST = 'host';

/** Makes the cache of one kind: `transform` must be applied to every object before it is stored. */
export type CacheSource = (o: { name: string; path: string; transform: (raw: Raw) => Raw }) => WatchedCache<Raw>;

/** Informer-backed caches: what the engine runs. */
export function informerSource(kube: Kube, log: Logger, metrics: Metrics | undefined, watch: WatchSettings): CacheSource {
  return (o) => watchedInformer<Raw>(kube, log, metrics, watch, o);
}

export class Caches {
  readonly sessions: WatchedCache<Raw>;
  readonly challenges: WatchedCache<Raw>;
  private readonly parsed = new WeakMap<object, Parsed<unknown>>();
  /** Sessions whose cached copy is suspected to be behind a write of this replica. */
  private readonly suspected = new Set<string>();
  private readonly confirmLossMs: number;

  constructor(
    readonly namespace: string,
    source: CacheSource,
    opts: { confirmLossMs?: number } = {},
  ) {
    this.confirmLossMs = opts.confirmLossMs ?? 10_000;
    const base = `/apis/${GROUP}/${VERSION}/namespaces/${namespace}`;
    const mk = (plural: string, schema: Schema<unknown>, share?: (value: Raw) => void) =>
      source({
        name: plural,
        path: `${base}/${plural}`,
        transform: (raw) => {
          const p = this.parse(raw, schema);
          if (!p.ok) return raw;
          const value = p.value as Raw;
          share?.(value);
          this.parsed.set(value, p);
          return value;
        },
      });
    const snapshots = new SharedSnapshots();
    this.sessions = mk(SESSION_PLURAL, sessionSchema, (s) => {
      snapshots.share(s);
      shareSessionStrings(s);
    });
    this.challenges = mk(CHALLENGE_PLURAL, challengeSchema);
    // A session's spec is immutable; a pool instance's owner moves once, when it is claimed.
    const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
    const owner = (raw: Raw) => (raw.metadata && typeof raw.spec?.challenge === 'string' ? sessionOwner(raw as unknown as ChallengeSession) : undefined);
    this.sessions.addIndexer(INDEX_USER, (raw) => {
      const o = owner(raw);
      return o?.mode === 'user' ? str(o.user) : undefined;
    });
    this.sessions.addIndexer(INDEX_TEAM, (raw) => {
      const o = owner(raw);
      return o?.mode === 'team' ? str(o.team) : undefined;
    });
    this.sessions.addIndexer(INDEX_POOL, (raw) => (raw.metadata && raw.spec?.pool === true && isUnclaimedPool(raw as unknown as ChallengeSession) ? str(raw.spec.challenge) : undefined));
    this.sessions.addIndexer(INDEX_CHALLENGE, (raw) => str(raw.spec?.challenge));
    this.sessions.addIndexer(INDEX_HOST, (raw) => {
      const endpoints = (raw as { status?: { endpoints?: { externalHost?: unknown }[] } }).status?.endpoints;
      return Array.isArray(endpoints) ? endpoints.map((e) => str(e.externalHost)).filter((h): h is string => h !== undefined) : undefined;
    });
  }

  /** The caches of `namespace` backed by informers, with the engine's watch settings. */
  static watching(kube: Kube, namespace: string, log: Logger, metrics?: Metrics, watch: WatchSettings & { confirmLossMs?: number } = {}): Caches {
    return new Caches(namespace, informerSource(kube, log, metrics, watch), { confirmLossMs: watch.confirmLossMs });
  }

  /** The sessions one user owns that parse (not the team-owned ones they started). */
  sessionsOfUser(user: string): ChallengeSession[] {
    return this.parsedSessions(this.sessions.byIndex(INDEX_USER, user));
  }

  /** The sessions one team owns that parse. */
  sessionsOfTeam(team: string): ChallengeSession[] {
    return this.parsedSessions(this.sessions.byIndex(INDEX_TEAM, team));
  }

  /** The unclaimed pool instances of one challenge that parse (ready or not). */
  unclaimedPool(challenge: string): ChallengeSession[] {
    return this.parsedSessions(this.sessions.byIndex(INDEX_POOL, challenge));
  }

  /** The sessions of one challenge that parse. */
  sessionsOfChallenge(challenge: string): ChallengeSession[] {
    return this.parsedSessions(this.sessions.byIndex(INDEX_CHALLENGE, challenge));
  }

  /** The live session that publishes `host`, if any. */
  sessionByHost(host: string): ChallengeSession | undefined {
    return this.parsedSessions(this.sessions.byIndex(INDEX_HOST, host)).find((s) => !s.metadata.deletionTimestamp);
  }

  /**
   * Called when a write of this replica did not show in the session cache within the
   * read-your-writes wait. A watch that merely lags shows it soon after; if `shows` is still
   * false `confirmLossMs` later, the watch event is taken as lost by the apiserver (see
   * CacheAudit) and the cache is repaired (Informer.repair).
   */
  suspectBehind(name: string, shows: () => boolean): void {
    if (this.suspected.has(name)) return;
    this.suspected.add(name);
    const since = Date.now();
    const timer = setTimeout(() => {
      this.suspected.delete(name);
      if (!shows() && this.sessions.hasSynced()) this.sessions.repair([`${this.namespace}/${name}`], since);
    }, this.confirmLossMs);
    timer.unref();
  }

  /**
   * The apiserver's answer to this replica's own write of a session, stored ahead of its watch
   * event (WatchedCache.assume): the replica's next read, and its controller, see the write at
   * once instead of after the watch's lag, which under a burst of writes is seconds.
   */
  assumeSession(stored: unknown): void {
    if (stored && typeof stored === 'object' && (stored as Raw).metadata?.name) this.sessions.assume(stored);
  }

  async start(): Promise<void> {
    await Promise.all([this.sessions.start(), this.challenges.start()]);
  }

  async stop(): Promise<void> {
    await Promise.all([this.sessions.stop(), this.challenges.stop()]);
  }

  synced(): boolean {
    return this.sessions.hasSynced() && this.challenges.hasSynced();
  }

  private parse<T>(raw: Raw, schema: Schema<T>): Parsed<T> {
    const hit = this.parsed.get(raw);
    if (hit) return hit as Parsed<T>;
    const r = schema.safeParse(raw);
    const out: Parsed<T> = r.success
      ? { ok: true, value: r.data }
      : { ok: false, error: r.error.issues.map((i) => `${i.path.map(String).join('.')}: ${i.message}`).join('; ') };
    this.parsed.set(raw, out);
    return out;
  }

  session(name: string): Parsed<ChallengeSession> | undefined {
    const raw = this.sessions.get(`${this.namespace}/${name}`);
    return raw ? this.parse(raw, sessionSchema) : undefined;
  }

  challenge(name: string): Parsed<Challenge> | undefined {
    const raw = this.challenges.get(`${this.namespace}/${name}`);
    return raw ? this.parse(raw, challengeSchema) : undefined;
  }

  /** Every session that parses; malformed ones are skipped (the controller reports them). */
  allSessions(): ChallengeSession[] {
    return this.parsedSessions(this.sessions.list());
  }

  allChallenges(): Challenge[] {
    const out: Challenge[] = [];
    for (const raw of this.challenges.list()) {
      const p = this.parse(raw, challengeSchema);
      if (p.ok) out.push(p.value);
    }
    return out;
  }

  private parsedSessions(raws: Raw[]): ChallengeSession[] {
    const out: ChallengeSession[] = [];
    for (const raw of raws) {
      const p = this.parse(raw, sessionSchema);
      if (p.ok) out.push(p.value);
    }
    return out;
  }
}
