import type { Logger } from 'pino';
import type { Kube } from '../kube/client.js';
import { Informer, type ObjectMetaLike } from '../kube/informer.js';
import { pagedList } from '../kube/raw.js';
import { GROUP, VERSION, CHALLENGE_PLURAL, SESSION_PLURAL } from '../api/group.js';
import { challengeSchema, type Challenge } from '../api/challenge.js';
import { sessionSchema, type ChallengeSession } from '../api/session.js';
import type { Metrics } from '../metrics.js';

/**
 * Informer caches of Challenges and ChallengeSessions in the engine's namespace. Every replica
 * keeps them (the HTTP API reads only from here); objects are parsed with the zod schemas on
 * first access and the result is memoised per stored object, so a changed object is re-parsed.
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

type Raw = { metadata?: { name?: string; namespace?: string; resourceVersion?: string; uid?: string }; spec?: { user?: unknown; challenge?: unknown } };

type Schema<T> = { safeParse: (v: unknown) => { success: true; data: T } | { success: false; error: { issues: { path: PropertyKey[]; message: string }[] } } };

export type Parsed<T> = { ok: true; value: T } | { ok: false; error: string };

export class Caches {
  readonly sessions: Informer<Raw>;
  readonly challenges: Informer<Raw>;
  private readonly parsed = new WeakMap<object, Parsed<unknown>>();
  /** user -> names of that user's sessions; keeps per-player requests O(own sessions). */
  private readonly byUser = new Map<string, Set<string>>();
  /** Sessions whose cached copy is suspected to be behind a write of this replica. */
  private readonly suspected = new Set<string>();
  private readonly confirmLossMs: number;

  constructor(
    kube: Kube,
    readonly namespace: string,
    log: Logger,
    metrics?: Metrics,
    watch: WatchSettings & { confirmLossMs?: number } = {},
  ) {
    this.confirmLossMs = watch.confirmLossMs ?? 10_000;
    const base = `/apis/${GROUP}/${VERSION}/namespaces/${namespace}`;
    // Objects are parsed as they enter the cache, and one that parses is stored as its parsed
    // form: one copy per object instead of the raw JSON plus the parsed one.
    const mk = (plural: string, schema: Schema<unknown>) =>
      watchedInformer<Raw>(kube, log, metrics, watch, {
        name: plural,
        path: `${base}/${plural}`,
        transform: (raw) => {
          const p = this.parse(raw, schema);
          if (!p.ok) return raw;
          const value = p.value as Raw;
          this.parsed.set(value, p);
          return value;
        },
      });
    this.sessions = mk(SESSION_PLURAL, sessionSchema);
    this.challenges = mk(CHALLENGE_PLURAL, challengeSchema);
    const index = (raw: Raw) => {
      const user = raw.spec?.user;
      const name = raw.metadata?.name;
      if (typeof user !== 'string' || !name) return;
      let names = this.byUser.get(user);
      if (!names) this.byUser.set(user, (names = new Set()));
      names.add(name);
    };
    this.sessions.on('add', index);
    this.sessions.on('update', index);
    this.sessions.on('delete', (raw) => {
      const user = raw.spec?.user;
      const name = raw.metadata?.name;
      if (typeof user !== 'string' || !name) return;
      const names = this.byUser.get(user);
      names?.delete(name);
      if (names?.size === 0) this.byUser.delete(user);
    });
  }

  /** The sessions of one user that parse (a session's user never changes: spec is immutable). */
  sessionsOfUser(user: string): ChallengeSession[] {
    const out: ChallengeSession[] = [];
    for (const name of this.byUser.get(user) ?? []) {
      const p = this.session(name);
      if (p?.ok) out.push(p.value);
    }
    return out;
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
    const out: ChallengeSession[] = [];
    for (const raw of this.sessions.list()) {
      const p = this.parse(raw, sessionSchema);
      if (p.ok) out.push(p.value);
    }
    return out;
  }

  allChallenges(): Challenge[] {
    const out: Challenge[] = [];
    for (const raw of this.challenges.list()) {
      const p = this.parse(raw, challengeSchema);
      if (p.ok) out.push(p.value);
    }
    return out;
  }
}

