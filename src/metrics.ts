import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * All metrics of one engine process, on a registry of its own (no globals, so tests can run
 * several engines in one process). Names follow controller-runtime and client-go where they exist.
 */
export type SessionSource = () => Iterable<{ challenge: string; phase: string }>;

export function createMetrics() {
  const registry = new Registry();
  // Sessions by challenge and phase are counted from the cache at scrape time, so the gauge is
  // always exact and costs nothing between scrapes.
  let sessionSource: SessionSource | undefined;
  collectDefaultMetrics({ register: registry });
  const r = [registry];
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
    sessions: new Gauge({
      name: 'challenge_engine_sessions',
      help: 'Sessions by challenge and phase',
      labelNames: ['challenge', 'phase'],
      registers: r,
      collect() {
        if (!sessionSource) return;
        const counts = new Map<string, number>();
        for (const s of sessionSource()) {
          const key = `${s.challenge}\u0000${s.phase}`;
          counts.set(key, (counts.get(key) ?? 0) + 1);
        }
        this.reset();
        for (const [key, n] of counts) {
          const [challenge = '', phase = ''] = key.split('\u0000');
          this.set({ challenge, phase }, n);
        }
      },
    }),
    /** Where the sessions gauge counts from (the informer cache). */
    setSessionSource(source: SessionSource): void {
      sessionSource = source;
    },
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
