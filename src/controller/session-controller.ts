import { randomUUID } from 'node:crypto';
import type { V1Pod } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { ANNOTATION_SPEC_HASH, LABEL_MANAGED_BY, LABEL_SESSION, MANAGED_BY } from '../api/group.js';
import type { Kube } from '../kube/client.js';
import type { Informer } from '../kube/informer.js';
import { classifyError, ignoreNotFound } from '../kube/errors.js';
import type { Writer } from '../kube/writes.js';
import { createRecorder } from '../kube/recorder.js';
import type { Metrics } from '../metrics.js';
import { baselinePolicies } from '../reconcile/network-policy.js';
import { withSpecHash } from '../reconcile/children.js';
import { childNames } from '../reconcile/names.js';
import { watchedInformer, type Caches, type WatchSettings } from '../read-model/caches.js';
import { reconcileSession, type ReconcileContext } from './reconcile-session.js';
import { OWNED_KINDS, type Owned, type OwnedCacheName } from './owned-kinds.js';
import { WorkQueue } from './workqueue.js';
import { CacheAudit } from './cache-audit.js';
import { getJson } from '../kube/raw.js';
import { GATEWAY_GROUP, type GatewayOptions } from '../reconcile/routes.js';

/**
 * Drives reconciles while this replica leads: watches the owned kinds, maps every event to the
 * session key, and runs the work queue. The session and challenge caches belong to Caches, which
 * every replica runs for the HTTP API.
 */

const CONTROLLER = 'challengesession';

export interface SessionControllerOptions {
  kube: Kube;
  caches: Caches;
  writer: Writer;
  log: Logger;
  metrics: Metrics;
  concurrency: number;
  resyncMs: number;
  /**
   * How often the pod cache is checked against the apiserver for sessions that should be Running
   * by now (0: never); see CacheAudit. Sessions younger than two periods are left alone.
   */
  auditMs?: number;
  watch?: WatchSettings;
  /** The Gateway session routes attach to; undefined: no routes. */
  gateway?: GatewayOptions;
  context: Omit<ReconcileContext, 'caches' | 'children' | 'writer' | 'events' | 'log' | 'metrics' | 'gateway'>;
}

/** Whether the apiserver serves the Gateway API kinds the routes need. */
async function gatewayApiInstalled(kube: Kube): Promise<boolean> {
  try {
    const list = await getJson<{ resources?: { name?: string }[] }>(kube.kc, `/apis/${GATEWAY_GROUP}/v1`, 10_000);
    const names = new Set((list.resources ?? []).map((r) => r.name));
    return names.has('httproutes') && names.has('tlsroutes');
  } catch (err) {
    if (classifyError(err).kind === 'NotFound') return false;
    throw err;
  }
}

export class SessionController {
  private children: Partial<Record<OwnedCacheName, Informer<Owned>>> | undefined;
  private gateway: ReconcileContext['gateway'];
  private gatewayMissingLogged = false;
  private queue: WorkQueue | undefined;
  private resync: NodeJS.Timeout | undefined;
  private audit: NodeJS.Timeout | undefined;
  private running = false;
  private readonly events;

  constructor(private readonly o: SessionControllerOptions) {
    this.events = createRecorder(o.writer, o.log);
    const enqueueSession = (obj: { metadata?: { name?: string } }) => {
      if (obj.metadata?.name) this.queue?.add(obj.metadata.name);
    };
    o.caches.sessions.on('add', enqueueSession);
    o.caches.sessions.on('update', enqueueSession);
    o.caches.sessions.on('delete', (obj) => {
      if (obj.metadata?.name) this.queue?.forget(obj.metadata.name);
    });
    const enqueueChallenge = (obj: { metadata?: { name?: string } }) => {
      const name = obj.metadata?.name;
      if (!name || !this.queue) return;
      for (const s of o.caches.sessionsOfChallenge(name)) this.queue.add(s.metadata.name);
    };
    o.caches.challenges.on('add', enqueueChallenge);
    o.caches.challenges.on('update', (obj, old) => {
      // Only catalogue or runtime edits matter; status-only churn does not.
      if ((obj as Owned & { metadata?: { generation?: number } }).metadata?.generation !== (old as { metadata?: { generation?: number } } | undefined)?.metadata?.generation) enqueueChallenge(obj);
    });
    o.caches.challenges.on('delete', enqueueChallenge);
  }

  isRunning(): boolean {
    return this.running;
  }

  /** Called when this replica becomes leader. */
  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    const { kube, log, metrics } = this.o;
    const ns = this.o.caches.namespace;
    const selector = `${LABEL_MANAGED_BY}=${MANAGED_BY}`;
    // One watch per owned kind; every event of a child re-queues the session it belongs to.
    const toSession = (obj: Owned) => {
      const s = obj.metadata?.labels?.[LABEL_SESSION];
      if (s) this.queue?.add(s);
    };
    const gw = this.o.gateway;
    const available = gw ? await gatewayApiInstalled(kube) : false;
    this.gateway = gw ? { options: gw, available } : undefined;
    if (gw && !available && !this.gatewayMissingLogged) {
      this.gatewayMissingLogged = true;
      log.warn({ gateway: `${gw.gateway.namespace}/${gw.gateway.name}` }, 'The Gateway API (HTTPRoute, TLSRoute in gateway.networking.k8s.io/v1) is not installed: sessions get no routes and say so in their Routed condition');
    }
    const children = Object.fromEntries(
      OWNED_KINDS.filter((k) => !('requires' in k) || available).map((k) => {
        const inf = watchedInformer<Owned>(kube, log, metrics, this.o.watch ?? {}, { name: k.cache, path: k.path(ns), transform: k.trim, labelSelector: selector });
        for (const ev of ['add', 'update', 'delete'] as const) inf.on(ev, toSession);
        return [k.cache, inf];
      }),
    ) as Partial<Record<OwnedCacheName, Informer<Owned>>>;
    this.children = children;
    // Every child cache must be complete before the first reconcile: a reconcile that ran on a
    // partial cache would take existing children for missing ones and apply them again.
    await Promise.all(Object.values(children).map((i) => i?.start()));
    if (!this.running) return;
    const q = 'challengesession';
    this.queue = new WorkQueue((key) => this.reconcile(key), {
      concurrency: this.o.concurrency,
      hooks: {
        onDepth: (d) => metrics.queueDepth.set({ name: q }, d),
        onAdd: () => metrics.queueAdds.inc({ name: q }),
        onRetry: () => metrics.queueRetries.inc({ name: q }),
        onLatency: (ms) => metrics.queueLatency.observe({ name: q }, ms / 1000),
        onWorkDuration: (ms) => metrics.queueWork.observe({ name: q }, ms / 1000),
      },
      onError: (key, err, retryInMs) => log.warn({ session: key, err: classifyError(err).message, retryInMs }, 'Reconcile failed; will retry'),
    });
    await this.ensureNamespaceBaseline().catch((err: unknown) => log.error({ err: classifyError(err).message }, 'Could not apply the baseline NetworkPolicy'));
    this.enqueueAll();
    this.resync = setInterval(() => this.enqueueAll(), this.o.resyncMs);
    this.resync.unref();
    if (children.pods) this.startAudit(children.pods);
    log.info({ namespace: ns, sessions: this.o.caches.sessions.list().length }, 'Controller started');
  }

  /** Called when leadership is lost or at shutdown: finishes in-flight reconciles, then stops. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    if (this.resync) clearInterval(this.resync);
    if (this.audit) clearTimeout(this.audit);
    this.audit = undefined;
    const q = this.queue;
    this.queue = undefined;
    await q?.shutdown();
    if (this.children) await Promise.all(Object.values(this.children).map((i) => i?.stop()));
    this.children = undefined;
  }

  /** Resolves when no reconcile is queued or running (tests and benchmarks). */
  async idle(): Promise<void> {
    await this.queue?.drained();
  }

  private enqueueAll(): void {
    for (const raw of this.o.caches.sessions.list()) if (raw.metadata?.name) this.queue?.add(raw.metadata.name);
  }

  /**
   * Rounds of the pod-cache audit, one after another: sessions not Running some time after they
   * were created are the ones a lost Pod event would leave stuck.
   */
  private startAudit(pods: Informer<V1Pod>): void {
    const every = this.o.auditMs ?? 10_000;
    if (every <= 0) return;
    const after = 2 * every;
    const { kube, log } = this.o;
    const ns = this.o.caches.namespace;
    const audit = new CacheAudit({
      informer: pods,
      perRound: 5,
      readLive: async (key) => (await ignoreNotFound(kube.core.readNamespacedPod({ name: key.slice(ns.length + 1), namespace: ns })))?.metadata?.resourceVersion ?? null,
    });
    const tick = async () => {
      const cutoff = Date.now() - after;
      const candidates: string[] = [];
      for (const s of this.o.caches.allSessions()) {
        const phase = s.status?.phase ?? 'Pending';
        if ((phase !== 'Pending' && phase !== 'Provisioning') || s.metadata.deletionTimestamp) continue;
        if (new Date(String(s.metadata.creationTimestamp)).getTime() > cutoff) continue;
        candidates.push(`${ns}/${childNames(s.metadata.name).pod}`);
      }
      await audit.round(candidates);
    };
    const schedule = () => {
      this.audit = setTimeout(() => {
        void tick()
          .catch((err: unknown) => log.warn({ err: classifyError(err).message }, 'Cache audit failed'))
          .finally(() => {
            if (this.running && this.audit) schedule();
          });
      }, every);
      this.audit.unref();
    };
    schedule();
  }

  private async ensureNamespaceBaseline(): Promise<void> {
    for (const p of baselinePolicies(this.o.caches.namespace)) {
      const observed = this.children?.networkpolicies?.get(`${this.o.caches.namespace}/${p.metadata?.name ?? ''}`);
      const desired = withSpecHash(p);
      if (observed?.metadata?.annotations?.[ANNOTATION_SPEC_HASH] === desired.metadata?.annotations?.[ANNOTATION_SPEC_HASH]) continue;
      await this.o.writer.apply(desired);
    }
  }

  private async reconcile(name: string) {
    const children = this.children;
    if (!children) return {};
    const end = this.o.metrics.reconcileTime.startTimer({ controller: CONTROLLER });
    try {
      const log = this.o.log.child({ controller: CONTROLLER, session: name, reconcileID: randomUUID() });
      const out = await reconcileSession({ ...this.o.context, gateway: this.gateway, caches: this.o.caches, children, writer: this.o.writer, events: this.events, log, metrics: this.o.metrics }, name);
      this.o.metrics.reconcileTotal.inc({ controller: CONTROLLER, result: out.requeueAfterMs !== undefined ? 'requeue_after' : 'success' });
      return out;
    } catch (err) {
      this.o.metrics.reconcileTotal.inc({ controller: CONTROLLER, result: 'error' });
      this.o.metrics.reconcileErrors.inc({ controller: CONTROLLER });
      throw err;
    } finally {
      end();
    }
  }
}
