import { randomBytes } from 'node:crypto';
import { PatchStrategy, setHeaderOptions, type KubernetesObject, type V1ConfigMap } from '@kubernetes/client-node';
import type { Kube } from './client.js';
import { GROUP, VERSION, SESSION_PLURAL, SESSION_KIND, API_VERSION } from '../api/group.js';

/**
 * Every write the engine makes goes through this file: server-side apply of children with one
 * field manager, status merge patches, deletes guarded by UID preconditions, and Events.
 */
export const FIELD_MANAGER = 'challenge-engine';

export type WriteCounter = (verb: string, resource: string) => void;

export interface Writer {
  apply<T extends KubernetesObject>(obj: T): Promise<T>;
  /** Creates a ChallengeSession; AlreadyExists when the name is taken. Returns what was stored. */
  createSession(namespace: string, body: object): Promise<unknown>;
  /** A merge patch of status; with `resourceVersion`, only over exactly that version (else Conflict). */
  patchSessionStatus(namespace: string, name: string, status: Record<string, unknown>, resourceVersion?: string): Promise<void>;
  /** A merge patch of metadata; with `resourceVersion`, only over exactly that version (else Conflict). Returns what was stored. */
  patchSessionMetadata(namespace: string, name: string, patch: Record<string, unknown>, resourceVersion?: string): Promise<unknown>;
  /** Deletes only the very object read: a changed uid or resourceVersion gives a Conflict. */
  deleteSession(namespace: string, name: string, uid?: string, resourceVersion?: string): Promise<void>;
  event(involved: InvolvedObject, type: 'Normal' | 'Warning', reason: string, message: string, related?: InvolvedObject): Promise<void>;
  /** The webhook outbox (ConfigMaps, src/webhooks/outbox.ts): create (AlreadyExists when there), merge-patch, delete. */
  createOutbox(namespace: string, body: V1ConfigMap): Promise<void>;
  patchOutbox(namespace: string, name: string, patch: Record<string, unknown>): Promise<void>;
  deleteOutbox(namespace: string, name: string): Promise<void>;
}

export interface InvolvedObject {
  apiVersion: string;
  kind: string;
  name: string;
  namespace: string;
  uid?: string;
}

export function sessionRef(s: { metadata: { name: string; namespace?: string; uid?: string } }): InvolvedObject {
  return { apiVersion: API_VERSION, kind: SESSION_KIND, name: s.metadata.name, namespace: s.metadata.namespace ?? '', uid: s.metadata.uid };
}

export function createWriter(kube: Kube, reporter: { component: string; instance: string }, count: WriteCounter = () => {}): Writer {
  const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
  return {
    async apply<T extends KubernetesObject>(obj: T): Promise<T> {
      count('apply', obj.kind ?? 'unknown');
      return kube.objects.patch<T>(obj, undefined, undefined, FIELD_MANAGER, true, PatchStrategy.ServerSideApply);
    },

    async createSession(namespace, body) {
      count('create', 'challengesessions');
      const created: unknown = await kube.custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: SESSION_PLURAL, body });
      return created;
    },

    async patchSessionStatus(namespace, name, status, resourceVersion) {
      count('patch', 'challengesessions/status');
      const body = resourceVersion ? { metadata: { resourceVersion }, status } : { status };
      await kube.custom.patchNamespacedCustomObjectStatus(
        { group: GROUP, version: VERSION, namespace, plural: SESSION_PLURAL, name, body, fieldManager: FIELD_MANAGER },
        mergePatch,
      );
    },

    async patchSessionMetadata(namespace, name, patch, resourceVersion) {
      count('patch', 'challengesessions');
      const body = resourceVersion ? { metadata: { ...(patch.metadata as object), resourceVersion } } : patch;
      const stored: unknown = await kube.custom.patchNamespacedCustomObject(
        { group: GROUP, version: VERSION, namespace, plural: SESSION_PLURAL, name, body, fieldManager: FIELD_MANAGER },
        mergePatch,
      );
      return stored;
    },

    async deleteSession(namespace, name, uid, resourceVersion) {
      count('delete', 'challengesessions');
      await kube.custom.deleteNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace,
        plural: SESSION_PLURAL,
        name,
        propagationPolicy: 'Background',
        body: uid || resourceVersion ? { preconditions: { uid, resourceVersion } } : {},
      });
    },
    async createOutbox(namespace, body) {
      count('create', 'configmaps');
      await kube.core.createNamespacedConfigMap({ namespace, body });
    },
    async patchOutbox(namespace, name, patch) {
      count('patch', 'configmaps');
      await kube.core.patchNamespacedConfigMap({ namespace, name, body: patch }, mergePatch);
    },
    async deleteOutbox(namespace, name) {
      count('delete', 'configmaps');
      await kube.core.deleteNamespacedConfigMap({ namespace, name });
    },

    async event(involved, type, reason, message, related) {
      count('create', 'events');
      const now = new Date();
      await kube.core.createNamespacedEvent({
        namespace: involved.namespace,
        body: {
          metadata: { name: `${involved.name}.${randomBytes(8).toString('hex')}`, namespace: involved.namespace },
          involvedObject: involved,
          related,
          type,
          reason,
          message: message.slice(0, 1024),
          source: { component: reporter.component },
          reportingComponent: reporter.component,
          reportingInstance: reporter.instance,
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
        },
      });
    },
  };
}
