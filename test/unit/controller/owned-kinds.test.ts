import { describe, it, expect } from 'vitest';
import type { V1Pod } from '@kubernetes/client-node';
import { ANNOTATION_SPEC_HASH, LABEL_SESSION } from '../../../src/api/group.js';
import { OWNED_KINDS, type Owned } from '../../../src/controller/owned-kinds.js';
import { podVerdict } from '../../../src/reconcile/pod-status.js';
import { observedPod, type PodState } from '../reconcile/fixtures.js';

const kind = (cache: string) => {
  const k = OWNED_KINDS.find((x) => x.cache === cache);
  if (!k) throw new Error(`no owned kind ${cache}`);
  return k;
};

const OWNER = { apiVersion: 'ctf.challenge-engine.io/v1alpha1', kind: 'ChallengeSession', name: 's-a-0', uid: 'uid-a', controller: true, blockOwnerDeletion: true };

function withMetadata<T extends Owned>(obj: T): T {
  return {
    ...obj,
    metadata: {
      ...obj.metadata,
      uid: 'child-uid',
      resourceVersion: '42',
      creationTimestamp: new Date('2030-01-01T10:00:00Z'),
      labels: { [LABEL_SESSION]: 's-a-0', 'app.kubernetes.io/managed-by': 'challenge-engine', other: 'x' },
      annotations: { [ANNOTATION_SPEC_HASH]: 'abc', other: 'y' },
      ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'not-the-controller', uid: 'other' }, OWNER],
      managedFields: [{ manager: 'challenge-engine' }],
    },
  };
}

describe('what the child caches keep', () => {
  it('keeps the metadata the controller reads and nothing else', () => {
    const svc = withMetadata({ apiVersion: 'v1', kind: 'Service', metadata: { name: 's-a-0', namespace: 'ctf' }, spec: { ports: [{ port: 80 }] } } as Owned);
    expect(kind('services').trim(svc)).toEqual({
      metadata: { name: 's-a-0', namespace: 'ctf', uid: 'child-uid', resourceVersion: '42', labels: { [LABEL_SESSION]: 's-a-0' }, annotations: { [ANNOTATION_SPEC_HASH]: 'abc' }, ownerReferences: [{ uid: OWNER.uid, controller: true }] },
    });
  });

  const states: [string, PodState][] = [
    ['pending', {}],
    ['running and ready', { phase: 'Running', ready: true, conditions: [{ type: 'Initialized', status: 'True' }, { type: 'ContainersReady', status: 'True' }] }],
    ['running, not ready', { phase: 'Running', ready: false }],
    ['unschedulable', { conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: '0/9 nodes are available' }] }],
    ['image pull failing', { waiting: { reason: 'ImagePullBackOff', message: 'back-off pulling image' } }],
    ['init container crash-looping', { waiting: { reason: 'CrashLoopBackOff', init: true, container: 'setup' } }],
    ['waiting for another reason', { waiting: { reason: 'ContainerCreating' } }],
    ['failed', { phase: 'Failed', reason: 'Evicted', message: 'node pressure' }],
    ['terminating', { phase: 'Running', ready: true, deleting: true }],
  ];
  it.each(states)('judges a trimmed Pod as the whole one: %s', (_name, state) => {
    const pod = withMetadata({ ...observedPod(state), spec: { containers: [{ name: 'app', image: 'x' }] } } as Owned) as V1Pod;
    const trimmed = kind('pods').trim(structuredClone(pod)) as V1Pod;
    expect(podVerdict(trimmed)).toEqual(podVerdict(pod));
    expect(trimmed).not.toHaveProperty('spec');
    expect(trimmed.metadata?.labels).toEqual({ [LABEL_SESSION]: 's-a-0' });
  });
});
