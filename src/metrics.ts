import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * All metrics of one engine process, on a registry of its own (no globals, so tests can run
 * several engines in one process). Names follow controller-runtime and client-go where they exist.
 */
export type SessionSource = () => Iterable<{ challenge: string; phase: string }>;
/** Per challenge with a pool: its target size and its unclaimed instances, ready or starting. */
export type PoolSource = () => Iterable<{ challenge: string; size: number; ready: number; starting: number }>;
/** Queued sessions by reason (QueueReason), as a cache shows them. */
export type QueueSource = () => Iterable<{ reason: string }>;

/**
 * A gauge computed at scrape time from a source given later (the informer cache), so it is always
 * exact and costs nothing between scrapes; `fill` sets its values from the source's items.
 */
function sourcedGauge<T>(registers: Registry[], o: { name: string; help: string; labelNames: string[] }, fill: (gauge: Gauge, items: Iterable<T>) => void) {
  let source: (() => Iterable<T>) | undefined;
  const gauge = new Gauge({
    ...o,
    registers,
    collect() {
      if (!source) return;
      this.reset();
      fill(this, source());
    },
  });
  return { gauge, setSource: (s: () => Iterable<T>) => void (source = s) };
}

/** Sets `gauge` to the number of items per label set `labels` gives. */
function countInto<T>(gauge: Gauge, items: Iterable<T>, labels: (item: T) => Record<string, string>): void {
  const counts = new Map<string, { labels: Record<string, string>; n: number }>();
  for (const item of items) {
    const l = labels(item);
    const key = Object.values(l).join('\u0000');
    const c = counts.get(key);
    if (c) c.n++;
    else counts.set(key, { labels: l, n: 1 });
  }
  for (const { labels: l, n } of counts.values()) gauge.set(l, n);
}

export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const r = [registry];
  const sessions = sourcedGauge<{ challenge: string; phase: string }>(r, { name: 'challenge_engine_sessions', help: 'Sessions by challenge and phase', labelNames: ['challenge', 'phase'] }, (g, items) =>
    countInto(g, items, (s) => ({ challenge: s.challenge, phase: s.phase })),
  );
  const pool = sourcedGauge<{ challenge: string; size: number; ready: number; starting: number }>(
    r,
    { name: 'challenge_engine_pool_instances', help: 'Unclaimed warm pool instances by challenge and state (ready: claimable; starting: not ready yet; target: spec.pool.size)', labelNames: ['challenge', 'state'] },
    (g, items) => {
      for (const p of items) {
        g.set({ challenge: p.challenge, state: 'target' }, p.size);
        g.set({ challenge: p.challenge, state: 'ready' }, p.ready);
        g.set({ challenge: p.challenge, state: 'starting' }, p.starting);
      }
    },
  );
  const queued = sourcedGauge<{ reason: string }>(r, { name: 'challenge_engine_sessions_queued', help: 'Sessions waiting in the first-come queue, by reason (EngineCapacity, ChallengeCapacity, ClusterFull)', labelNames: ['reason'] }, (g, items) =>
    countInto(g, items, (q) => ({ reason: q.reason })),
  );
  return {
    registry,
    reconcileTotal: new Counter({ name: 'controller_runtime_reconcile_total', help: 'Total reconciliations per controller and result', labelNames: ['controller', 'result'], registers: r }),
    reconcileErrors: new Counter({ name: 'controller_runtime_reconcile_errors_total', help: 'Total reconciliation errors per controller', labelNames: ['controller'], registers: r }),
    reconcileTime: new Histogram({
      name: 'controller_runtime_reconcile_time_seconds',
      help: 'Length of time per reconciliation per controller',
      labelNames: ['controller'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: r,
    }),
    queueDepth: new Gauge({ name: 'workqueue_depth', help: 'Current depth of workqueue', labelNames: ['name'], registers: r }),
    queueAdds: new Counter({ name: 'workqueue_adds_total', help: 'Total number of adds handled by workqueue', labelNames: ['name'], registers: r }),
    queueRetries: new Counter({ name: 'workqueue_retries_total', help: 'Total number of retries handled by workqueue', labelNames: ['name'], registers: r }),
    queueLatency: new Histogram({
      name: 'workqueue_queue_duration_seconds',
      help: 'How long in seconds an item stays in workqueue before being requested',
      labelNames: ['name'],
      buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10],
      registers: r,
    }),
    queueWork: new Histogram({
      name: 'workqueue_work_duration_seconds',
      help: 'How long in seconds processing an item from workqueue takes',
      labelNames: ['name'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10],
      registers: r,
    }),
    leader: new Gauge({ name: 'leader_election_master_status', help: '1 while this process holds the lease', labelNames: ['name'], registers: r }),
    informerRelists: new Counter({ name: 'challenge_engine_informer_relists_total', help: 'Full relists per informer', labelNames: ['informer'], registers: r }),
    informerErrors: new Counter({ name: 'challenge_engine_informer_errors_total', help: 'Watch failures per informer', labelNames: ['informer'], registers: r }),
    cacheStale: new Counter({ name: 'challenge_engine_cache_stale_total', help: 'Cached objects found behind the apiserver (watch events lost), by informer; the cache relists to repair them', labelNames: ['informer'], registers: r }),
    sessions: sessions.gauge,
    /** Where the sessions gauge counts from (the informer cache). */
    setSessionSource(source: SessionSource): void {
      sessions.setSource(source);
    },
    pool: pool.gauge,
    /** Where the pool gauge counts from (the informer cache). */
    setPoolSource(source: PoolSource): void {
      pool.setSource(source);
    },
    poolClaims: new Counter({
      name: 'challenge_engine_pool_claims_total',
      help: 'Spawns of challenges with a pool, by result: claimed (a warm instance), miss (none ready: a fresh instance), conflict (another replica claimed the same instance first; retried)',
      labelNames: ['challenge', 'result'],
      registers: r,
    }),
    poolRefill: new Histogram({
      name: 'challenge_engine_pool_refill_seconds',
      help: 'Time from creating a pool instance to it being ready to claim',
      buckets: [0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300],
      registers: r,
    }),
    poolClaimToPublished: new Histogram({
      name: 'challenge_engine_pool_claim_to_published_seconds',
      help: 'Time from a claim to the controller publishing the claimed instance (ingress, routes, status)',
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10],
      registers: r,
    }),
    queued: queued.gauge,
    /** Where the queued gauge counts from (the informer cache). */
    setQueueSource(source: QueueSource): void {
      queued.setSource(source);
    },
    queueWait: new Histogram({
      name: 'challenge_engine_queue_wait_seconds',
      help: 'Time from the spawn request to admission (0 when capacity was free)',
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800],
      registers: r,
    }),
    queueTimeouts: new Counter({ name: 'challenge_engine_queue_timeouts_total', help: 'Sessions that waited longer than CTF_QUEUE_TIMEOUT and failed, by challenge', labelNames: ['challenge'], registers: r }),
    spawnToReady: new Histogram({
      name: 'challenge_engine_spawn_to_ready_seconds',
      help: 'Time from session creation to Running',
      buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300],
      registers: r,
    }),
    sessionsEnded: new Counter({ name: 'challenge_engine_sessions_ended_total', help: 'Sessions ended, by reason (expired, deleted, failed, challenge_deleted)', labelNames: ['reason'], registers: r }),
    sessionsFailed: new Counter({ name: 'challenge_engine_sessions_failed_total', help: 'Sessions that entered Failed, by reason', labelNames: ['reason'], registers: r }),
    flagSubmissions: new Counter({ name: 'challenge_engine_flag_submissions_total', help: 'Flag submissions by result', labelNames: ['result'], registers: r }),
    solves: new Counter({ name: 'challenge_engine_solves_total', help: 'Sessions recorded as solved (one status write each), by challenge', labelNames: ['challenge'], registers: r }),
    webhookDeliveries: new Counter({ name: 'challenge_engine_webhook_deliveries_total', help: 'Solve webhook delivery attempts by result (delivered, failed)', labelNames: ['result'], registers: r }),
    webhookPending: new Gauge({ name: 'challenge_engine_webhook_pending', help: 'Solve webhook events recorded in the outbox and not delivered yet (seen by the leader)', registers: r }),
    flagSharing: new Counter({ name: 'challenge_engine_flag_sharing_suspected_total', help: 'Flags of a session submitted by someone who does not own it (another user, or a member of another team)', registers: r }),
    extensions: new Counter({ name: 'challenge_engine_session_extensions_total', help: 'Session extensions by result', labelNames: ['result'], registers: r }),
    httpDuration: new Histogram({
      name: 'http_request_duration_seconds',
      help: 'HTTP request duration by route, method and status',
      labelNames: ['route', 'method', 'status_code'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: r,
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
