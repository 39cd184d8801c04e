import type { Logger } from 'pino';
import { guessableSecret, NEW_SECRET_HINT, type Config } from './config.js';
import { createKube, type Kube } from './kube/client.js';
import { classifyError } from './kube/errors.js';
import { liveReads } from './kube/live-reads.js';
import { createWriter, type Writer } from './kube/writes.js';
import { createMetrics, type Metrics } from './metrics.js';
import { Caches } from './read-model/caches.js';
import { LeaderElector } from './controller/leader.js';
import { WebhookDelivery } from './webhooks/outbox.js';
import { webhookTargetProblem } from './webhooks/target.js';
import { SessionController } from './controller/session-controller.js';
import { PoolController } from './controller/pool-controller.js';
import { isUnclaimedPool } from './api/session.js';
import { DEFAULT_POD_DEFAULTS } from './reconcile/pod.js';
import { DEFAULT_NETWORK_OPTIONS } from './reconcile/network-policy.js';
import { LABEL_MANAGED_BY, MANAGED_BY } from './api/group.js';
import { KubeSessionService } from './sessions/service.js';
import { hostKey } from './reconcile/public-host.js';

/**
 * The engine without its HTTP listener: caches on every replica, the controller on the leader.
 * main.ts composes it with the HTTP API; tests start it in-process or as a child process.
 */

export interface Engine {
  config: Readonly<Config>;
  kube: Kube;
  caches: Caches;
  controller: SessionController;
  pools: PoolController;
  leader: LeaderElector | undefined;
  metrics: Metrics;
  writer: Writer;
  flagKey: Buffer;
  stop(): Promise<void>;
}

export async function loadFlagKey(kube: Kube, config: Readonly<Config>): Promise<Buffer> {
  if ('literal' in config.flagKey) return Buffer.from(config.flagKey.literal, 'utf8');
  const { secretName, key } = config.flagKey;
  try {
    const secret = await kube.core.readNamespacedSecret({ name: secretName, namespace: config.engineNamespace });
    const value = secret.data?.[key];
    if (!value) throw new Error(`Secret ${config.engineNamespace}/${secretName} has no key "${key}"`);
    const buf = Buffer.from(value, 'base64');
    const where = `Secret ${config.engineNamespace}/${secretName} key "${key}"`;
    const why = guessableSecret(buf.toString('utf8'));
    if (why) throw new Error(`${where} ${why}: ${NEW_SECRET_HINT}`);
    if (buf.length < 16) throw new Error(`${where} holds a flag key shorter than 16 bytes: ${NEW_SECRET_HINT}`);
    return buf;
  } catch (err) {
    if (err instanceof Error && !('code' in err)) throw err;
    throw new Error(`cannot read the flag key Secret ${config.engineNamespace}/${secretName}: ${classifyError(err).message}`);
  }
}

export async function startEngine(config: Readonly<Config>, log: Logger, opts: { metrics?: Metrics; kube?: Kube } = {}): Promise<Engine> {
  const kube = opts.kube ?? createKube(config.kubeconfig);
  const metrics = opts.metrics ?? createMetrics();
  const flagKey = await loadFlagKey(kube, config);
  const writer = createWriter(kube, { component: 'challenge-engine', instance: config.identity });
  const live = liveReads(kube, config.namespace);
  const caches = Caches.watching(kube, config.namespace, log, metrics, config.watch);
  await caches.start();
  metrics.setSessionSource(function* () {
    // Players' sessions only: unclaimed pool instances have a gauge of their own.
    for (const s of caches.allSessions()) if (!isUnclaimedPool(s)) yield { challenge: s.spec.challenge, phase: s.status?.phase ?? 'Pending' };
  });
  metrics.setQueueSource(function* () {
    for (const s of caches.allSessions()) {
      if (s.status?.phase !== 'Queued' || s.metadata.deletionTimestamp) continue;
      yield { reason: s.status.conditions?.find((c) => c.type === 'Ready')?.reason ?? 'Unknown' };
    }
  });
  log.info({ namespace: config.namespace, sessions: caches.sessions.list().length, challenges: caches.challenges.list().length }, 'Caches synced');

  const controller = new SessionController({
    kube,
    caches,
    writer,
    log,
    metrics,
    concurrency: config.reconcileConcurrency,
    resyncMs: config.resyncMs,
    auditMs: config.auditMs,
    watch: config.watch,
    queue: config.queue,
    gateway: config.gateway ? { gateway: { namespace: config.gateway.namespace, name: config.gateway.name }, httpListener: config.gateway.httpListener, tlsListener: config.gateway.tlsListener, authFilter: config.gateway.authFilter } : undefined,
    context: {
      flagKey,
      readStaticFlag: async (name, key) => (await live.secretValue(name, key)) || undefined,
      pod: DEFAULT_POD_DEFAULTS,
      network: {
        ...DEFAULT_NETWORK_OPTIONS,
        entryPoint: {
          namespaceSelector: config.entryPoint.namespaceSelector ? { matchLabels: config.entryPoint.namespaceSelector } : DEFAULT_NETWORK_OPTIONS.entryPoint.namespaceSelector,
          podSelector: config.entryPoint.podSelector ? { matchLabels: config.entryPoint.podSelector } : DEFAULT_NETWORK_OPTIONS.entryPoint.podSelector,
        },
        forbiddenCidrs: [...DEFAULT_NETWORK_OPTIONS.forbiddenCidrs, ...config.extraForbiddenCidrs],
      },
      clusterDomain: config.clusterDomain,
      public: config.externalDomain ? { domain: config.externalDomain, hostKey: hostKey(flagKey), ...config.publicAccess } : undefined,
      now: () => new Date(),
    },
  });

  // The leader keeps the warm pools full; every replica's API claims from them.
  const pools = new PoolController({ caches, writer, log, metrics, resyncMs: config.resyncMs });
  // The leader delivers the webhook outbox; every replica's API records into it.
  const webhooks = config.webhook ? new WebhookDelivery({ kube, writer, caches, namespace: config.namespace, url: config.webhook.url, secret: config.webhook.secret, maxBackoffMs: config.webhook.maxBackoffMs, log, metrics, checkTarget: config.webhook.allowPrivate ? undefined : cachedTargetCheck(config.webhook.url) }) : undefined;
  const startController = async () => {
    await ensureSessionNamespace(kube, writer, config.namespace).catch((err: unknown) =>
      log.error({ err: classifyError(err).message }, 'Could not label the sessions namespace for Pod Security Admission'),
    );
    await controller.start();
    pools.start();
    webhooks?.start();
  };
  let leader: LeaderElector | undefined;
  if (config.runController) {
    if (config.leaderElection) {
      leader = new LeaderElector({
        coord: kube.coord,
        namespace: config.engineNamespace,
        name: config.leaseName,
        identity: config.identity,
        leaseMs: config.leaseMs,
        renewDeadlineMs: Math.max(1000, Math.floor(config.leaseMs * 0.66)),
        retryMs: Math.max(500, Math.floor(config.leaseMs / 7.5)),
        log,
        onStartedLeading: () => {
          metrics.leader.set({ name: config.leaseName }, 1);
          startController().catch((err: unknown) => log.error({ err }, 'Controller failed to start'));
        },
        onStoppedLeading: () => {
          metrics.leader.set({ name: config.leaseName }, 0);
          controller.stop().catch((err: unknown) => log.error({ err }, 'Controller failed to stop'));
          pools.stop().catch((err: unknown) => log.error({ err }, 'Pool controller failed to stop'));
          webhooks?.stop().catch((err: unknown) => log.error({ err }, 'Webhook delivery failed to stop'));
        },
      });
      leader.start();
    } else {
      await startController();
    }
  }

  return {
    config,
    kube,
    caches,
    controller,
    pools,
    leader,
    metrics,
    writer,
    flagKey,
    async stop() {
      await leader?.stop();
      await webhooks?.stop();
      await pools.stop();
      await controller.stop();
      await caches.stop();
    },
  };
}

/** The player domain over this engine's caches, clients and flag key (what the HTTP API serves). */
export function sessionService(engine: Engine, log: Logger): KubeSessionService {
  return new KubeSessionService({
    kube: engine.kube,
    caches: engine.caches,
    writer: engine.writer,
    log,
    metrics: engine.metrics,
    flagKey: engine.flagKey,
    maxSessionsPerUser: engine.config.maxSessionsPerUser,
    maxInstances: engine.config.queue.maxInstances,
    instanceOwner: engine.config.instanceOwner,
    webhooks: engine.config.webhook !== undefined,
    publicHttp: { scheme: engine.config.publicAccess.httpScheme, port: engine.config.publicAccess.httpPort },
  });
}

/** Labels the sessions namespace so Pod Security Admission enforces `restricted` on every pod. */
export async function ensureSessionNamespace(kube: Kube, writer: Writer, namespace: string): Promise<void> {
  const ns = await kube.core.readNamespace({ name: namespace });
  const labels = ns.metadata?.labels ?? {};
  const want: Record<string, string> = {
    'pod-security.kubernetes.io/enforce': 'restricted',
    'pod-security.kubernetes.io/enforce-version': 'latest',
    'pod-security.kubernetes.io/warn': 'restricted',
    'pod-security.kubernetes.io/audit': 'restricted',
  };
  if (Object.entries(want).every(([k, v]) => labels[k] === v)) return;
  await writer.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace, labels: { ...want, [`${LABEL_MANAGED_BY}-psa`]: MANAGED_BY } } });
}

/** The receiver's address check, at most once a minute (a name can resolve elsewhere later). */
function cachedTargetCheck(url: string): () => Promise<string | undefined> {
  let at = 0;
  let last: string | undefined;
  return async () => {
    if (Date.now() - at > 60_000) {
      last = await webhookTargetProblem(url);
      at = Date.now();
    }
    return last;
  };
}
