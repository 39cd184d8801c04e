import type { V1ContainerStatus, V1Pod } from '@kubernetes/client-node';
import { Reason } from './reasons.js';

/** What an observed Pod says about its session. */
export interface PodVerdict {
  phase: 'Provisioning' | 'Running' | 'Failed';
  reason: Reason;
  message: string;
}

const IMAGE_PULL_REASONS = new Set(['ErrImagePull', 'ImagePullBackOff', 'InvalidImageName', 'ErrImageNeverPull']);

/**
 * Reads the Pod's phase, conditions and container states. Failures the kubelet will not get past
 * on its own (a missing image, a crash loop, a terminated Pod) fail the session; an unschedulable
 * Pod only waits, since capacity may free up. Recomputed on every observation, not latched.
 */
export function podVerdict(pod: V1Pod): PodVerdict {
  const status = pod.status;
  if (status?.phase === 'Failed' || status?.phase === 'Succeeded') {
    const why = [status.reason, status.message].filter(Boolean).join(': ');
    return { phase: 'Failed', reason: Reason.PodFailed, message: `pod ${status.phase === 'Failed' ? 'failed' : 'exited'}${why ? `: ${why}` : ''}` };
  }
  const waiting = waitingContainers(pod);
  const pull = waiting.find((w) => IMAGE_PULL_REASONS.has(w.reason));
  if (pull) return { phase: 'Failed', reason: Reason.ImagePullFailed, message: describe(pull) };
  const crash = waiting.find((w) => w.reason === 'CrashLoopBackOff');
  if (crash) return { phase: 'Failed', reason: Reason.CrashLoop, message: describe(crash) };
  if (pod.metadata?.deletionTimestamp) return { phase: 'Provisioning', reason: Reason.Provisioning, message: 'pod is terminating' };
  const scheduled = status?.conditions?.find((c) => c.type === 'PodScheduled');
  if (scheduled?.status === 'False' && scheduled.reason === 'Unschedulable') {
    return { phase: 'Provisioning', reason: Reason.Unschedulable, message: scheduled.message ?? 'no node can run the pod' };
  }
  if (podReady(pod)) return { phase: 'Running', reason: Reason.Ready, message: 'session is ready' };
  const first = waiting[0];
  return { phase: 'Provisioning', reason: Reason.Provisioning, message: first ? describe(first) : 'waiting for the pod to become ready' };
}

/** Running with the Ready condition True: every container passed its readiness probe. */
export function podReady(pod: V1Pod): boolean {
  return pod.status?.phase === 'Running' && pod.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;
}

interface Waiting {
  container: string;
  reason: string;
  message: string | undefined;
}

/** Containers (init containers first) that are waiting, with the kubelet's reason. */
function waitingContainers(pod: V1Pod): Waiting[] {
  const all: V1ContainerStatus[] = [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])];
  return all.flatMap((s) => {
    const w = s.state?.waiting;
    return w?.reason ? [{ container: s.name, reason: w.reason, message: w.message }] : [];
  });
}

function describe(w: Waiting): string {
  return `container ${w.container}: ${w.reason}${w.message ? `: ${w.message}` : ''}`;
}
