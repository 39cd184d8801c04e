import type { KubernetesObject, V1ContainerStatus, V1OwnerReference, V1Pod } from '@kubernetes/client-node';
import { ANNOTATION_SPEC_HASH, LABEL_SESSION } from '../api/group.js';
import type { ChallengeSession } from '../api/session.js';
import type { Cache } from '../read-model/store.js';
import type { EffectiveRuntime } from '../reconcile/runtime.js';
import type { SessionPolicy } from '../reconcile/network-policy.js';
import { desiredFlagSecret } from '../reconcile/secret.js';
import { desiredPod, type PodDefaults } from '../reconcile/pod.js';
import { desiredService } from '../reconcile/service.js';
import type { RouteObject } from '../reconcile/routes.js';
import { childNames } from '../reconcile/names.js';
import { sharedStrings } from '../read-model/shared-strings.js';

/**
 * What a ChallengeSession owns, declared once. The controller builds one watch per entry (with
 * the entry's trimming) and its reconcile walks the entries in order, so adding a kind is one
 * entry plus its pure builder in src/reconcile. Order matters: the flag Secret and the
 * NetworkPolicy exist before the Pod, so a Pod never runs without its flag or its isolation, and
 * routes come last, so nothing is published before it exists.
 */

/** Everything a builder may use, computed once per reconcile. */
export interface DesiredInput {
  session: ChallengeSession;
  runtime: EffectiveRuntime;
  flag: string;
  /** The session's NetworkPolicy (built once: its dropped CIDRs also go into the status). */
  policy: SessionPolicy;
  pod: PodDefaults;
  /** The session's Gateway API routes (desiredRoutes); empty without a usable Gateway. */
  routes: RouteObject[];
}

export type Owned = KubernetesObject & {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string; uid?: string; labels?: Record<string, string>; annotations?: Record<string, string>; ownerReferences?: { uid: string; controller?: boolean }[] };
};

export interface OwnedKind {
  /** Name of the cache (and its informer and metrics label). */
  cache: string;
  kind: string;
  /** Collection path in the sessions namespace. */
  path: (namespace: string) => string;
  /** Keeps what the reconcile reads of a cached object; the rest is dropped before caching. */
  trim: (obj: Owned) => Owned;
  /**
   * `apply`: rewritten with server-side apply whenever the desired object's spec hash differs.
   * `create`: created once and never updated (a Pod's spec is mostly immutable, and a Challenge
   * edit must not disturb a running session).
   */
  mode: 'apply' | 'create';
  /**
   * Create-only kinds: the name of the session's one child, so a reconcile that finds it cached
   * never builds the desired object (it would be thrown away; a Pod is most of a pass's garbage).
   */
  childName?: (session: string) => string;
  /** The desired children of this kind (none, one, or one per exposed port). */
  desired: (input: DesiredInput) => Owned[];
  /**
   * `gateway-api`: watched only when a Gateway is configured and the Gateway API is installed
   * (the engine runs without it; sessions then say so in their Routed condition).
   */
  requires?: 'gateway-api';
}

/**
 * Keeps what the controller reads of a child's metadata: its key and resourceVersion (the cache,
 * relists, the cache audit), the session label (events map back to their session), the spec hash,
 * the controller reference (ownership) and the deletion mark. The rest (other labels and
 * annotations, timestamps, other owner references) was most of what 40,000 cached children
 * cost at 10,000 sessions.
 */
function essentialMetadata(meta: Owned['metadata']): NonNullable<Owned['metadata']> {
  if (!meta) return {};
  const out: NonNullable<Owned['metadata']> = { name: meta.name, namespace: sharedStrings.share(meta.namespace), uid: meta.uid, resourceVersion: meta.resourceVersion };
  const session = meta.labels?.[LABEL_SESSION];
  if (session !== undefined) out.labels = { [LABEL_SESSION]: session };
  const hash = meta.annotations?.[ANNOTATION_SPEC_HASH];
  if (hash !== undefined) out.annotations = { [ANNOTATION_SPEC_HASH]: hash };
  // Of the controller reference only what ownership checks read (its apiVersion, kind and name
  // are those of every session); typed as a full reference for KubernetesObject.
  const controller = meta.ownerReferences?.find((r) => r.controller);
  if (controller) out.ownerReferences = [{ uid: controller.uid, controller: true } as V1OwnerReference];
  if (meta.deletionTimestamp !== undefined) out.deletionTimestamp = meta.deletionTimestamp;
  return out;
}

/** Keeps what identifies an object and nothing of its content. */
function metadataOnly(obj: Owned): Owned {
  return { metadata: essentialMetadata(obj.metadata) };
}

/** The Pod conditions podVerdict reads. */
const POD_CONDITIONS = new Set(['PodScheduled', 'Ready']);

/**
 * What podVerdict reads of a Pod: its phase and reason, the PodScheduled and Ready conditions,
 * and the containers that are waiting (with the kubelet's reason); no spec, addresses, images,
 * timestamps, or containers that are running.
 */
function podEssentials(pod: Owned): Owned {
  const status = (pod as V1Pod).status;
  const waiting = (list: V1ContainerStatus[] | undefined) =>
    list?.flatMap((c) => {
      const w = c.state?.waiting;
      return w ? [{ name: c.name, state: { waiting: { reason: w.reason, message: w.message } } }] : [];
    });
  const slim = status && {
    phase: sharedStrings.share(status.phase),
    reason: sharedStrings.share(status.reason),
    message: status.message,
    conditions: status.conditions
      ?.filter((c) => POD_CONDITIONS.has(c.type))
      .map((c) => ({ type: sharedStrings.share(c.type), status: sharedStrings.share(c.status), reason: sharedStrings.share(c.reason), message: c.message })),
    containerStatuses: waiting(status.containerStatuses),
    initContainerStatuses: waiting(status.initContainerStatuses),
  };
  return { metadata: essentialMetadata(pod.metadata), ...(slim ? { status: slim } : {}) };
}

const core = (plural: string) => (ns: string) => `/api/v1/namespaces/${ns}/${plural}`;

export const OWNED_KINDS = [
  {
    cache: 'secrets',
    kind: 'Secret',
    path: core('secrets'),
    // Judged by spec hash, owner and existence: no flag value stays in memory.
    trim: metadataOnly,
    mode: 'apply',
    desired: (d) => [desiredFlagSecret(d.session, d.flag)],
  },
  {
    cache: 'networkpolicies',
    kind: 'NetworkPolicy',
    path: (ns) => `/apis/networking.k8s.io/v1/namespaces/${ns}/networkpolicies`,
    trim: metadataOnly,
    mode: 'apply',
    desired: (d) => [d.policy.policy],
  },
  {
    cache: 'services',
    kind: 'Service',
    path: core('services'),
    trim: metadataOnly,
    mode: 'apply',
    desired: (d) => [desiredService(d.session, d.runtime.runtime)],
  },
  {
    cache: 'pods',
    kind: 'Pod',
    path: core('pods'),
    // Status is judged from metadata and status alone; the spec is most of a Pod.
    trim: podEssentials,
    mode: 'create',
    childName: (s) => childNames(s).pod,
    desired: (d) => [desiredPod(d.session, d.runtime, d.pod)],
  },
  {
    cache: 'httproutes',
    kind: 'HTTPRoute',
    path: (ns) => `/apis/gateway.networking.k8s.io/v1/namespaces/${ns}/httproutes`,
    trim: metadataOnly,
    mode: 'apply',
    desired: (d) => d.routes.filter((r) => r.kind === 'HTTPRoute'),
    requires: 'gateway-api',
  },
  {
    cache: 'tlsroutes',
    kind: 'TLSRoute',
    path: (ns) => `/apis/gateway.networking.k8s.io/v1/namespaces/${ns}/tlsroutes`,
    trim: metadataOnly,
    mode: 'apply',
    desired: (d) => d.routes.filter((r) => r.kind === 'TLSRoute'),
    requires: 'gateway-api',
  },
] as const satisfies readonly OwnedKind[];

export type OwnedCacheName = (typeof OWNED_KINDS)[number]['cache'];

/** One cache per owned kind, keyed by the entry's `cache`; kinds not watched here have none. */
export type ChildCaches = Partial<Record<OwnedCacheName, Cache<Owned>>>;
