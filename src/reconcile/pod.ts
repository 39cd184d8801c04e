import { basename } from 'node:path/posix';
import type { V1Container, V1EnvVar, V1Pod, V1Probe, V1SecurityContext, V1Toleration, V1Volume, V1VolumeMount } from '@kubernetes/client-node';
import type { ChallengeContainer } from '../api/challenge.js';
import { ANNOTATION_CHALLENGE_GENERATION, childMetadata, type SessionMeta } from './labels.js';
import { childNames } from './names.js';
import { containerResources, type ResourceList } from './resources.js';
import type { ChallengeRuntime, EffectiveRuntime } from './runtime.js';
import { FLAG_SECRET_KEY } from './secret.js';

/** Cluster-wide settings for session Pods; the challenge may override resources and the user. */
export interface PodDefaults {
  defaultRequests: ResourceList;
  defaultLimits: ResourceList;
  /** Non-root user (and group, and fsGroup) of every container that does not name its own. */
  runAsUser: number;
  /** Size cap of each memory-backed scratch directory. */
  scratchSizeLimit: string;
  priorityClassName?: string;
  nodeSelector?: Record<string, string>;
  tolerations?: V1Toleration[];
  /** E.g. gvisor or kata, to sandbox untrusted challenge code further. */
  runtimeClassName?: string;
}

export const DEFAULT_POD_DEFAULTS: Readonly<PodDefaults> = Object.freeze({
  defaultRequests: { cpu: '50m', memory: '64Mi' },
  defaultLimits: { cpu: '500m', memory: '256Mi' },
  runAsUser: 65532,
  scratchSizeLimit: '64Mi',
});

export const FLAG_VOLUME = 'flag';
const RUNTIME_DEFAULT_SECCOMP = { type: 'RuntimeDefault' };

/**
 * The session's Pod. Players get code execution in challenge containers by design, so the Pod is
 * hardened to pass Pod Security Admission "restricted": non-root, no privilege escalation, all
 * capabilities dropped, RuntimeDefault seccomp, only emptyDir and Secret volumes, no service
 * account token and no service environment variables revealing other sessions. Given the
 * runtime with its generation (as effectiveRuntime returns it), the Pod records that generation.
 */
export function desiredPod(session: SessionMeta, from: ChallengeRuntime | EffectiveRuntime, opts: PodDefaults = DEFAULT_POD_DEFAULTS): V1Pod {
  const { runtime, generation } = 'runtime' in from ? from : { runtime: from, generation: undefined };
  const names = childNames(session.metadata.name);
  const volumes: V1Volume[] = [...scratchVolumes(runtime, opts), ...flagVolumes(runtime, names.secret)];
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: childMetadata(session, names.pod, generation === undefined ? undefined : { [ANNOTATION_CHALLENGE_GENERATION]: String(generation) }),
    spec: {
      containers: runtime.containers.map((c, i) => desiredContainer(c, i, runtime, names.secret, opts)),
      ...(volumes.length > 0 ? { volumes } : {}),
      securityContext: {
        runAsNonRoot: true,
        runAsUser: opts.runAsUser,
        runAsGroup: opts.runAsUser,
        fsGroup: opts.runAsUser,
        seccompProfile: RUNTIME_DEFAULT_SECCOMP,
      },
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      restartPolicy: 'Always',
      terminationGracePeriodSeconds: 5,
      ...(opts.priorityClassName ? { priorityClassName: opts.priorityClassName } : {}),
      ...(opts.nodeSelector ? { nodeSelector: opts.nodeSelector } : {}),
      ...(opts.tolerations ? { tolerations: opts.tolerations } : {}),
      ...(opts.runtimeClassName ? { runtimeClassName: opts.runtimeClassName } : {}),
    },
  };
}

/** One challenge container with the engine's security context, resources and flag wiring. */
function desiredContainer(c: ChallengeContainer, index: number, runtime: ChallengeRuntime, secretName: string, opts: PodDefaults): V1Container {
  const receivesFlag = flagReceivers(runtime).has(c.name);
  const env = containerEnv(c, runtime, receivesFlag ? secretName : undefined);
  const mounts: V1VolumeMount[] = (c.scratchPaths ?? []).map((path, i) => ({ name: scratchVolumeName(index, i), mountPath: path }));
  if (receivesFlag && runtime.flag.delivery === 'file') mounts.push(flagMount(runtime.flag.filePath));
  return {
    name: c.name,
    image: c.image,
    ...(c.command ? { command: c.command } : {}),
    ...(c.args ? { args: c.args } : {}),
    ...(c.ports ? { ports: c.ports.map((p) => ({ ...(p.name ? { name: p.name } : {}), containerPort: p.containerPort, protocol: p.protocol })) } : {}),
    ...(env.length > 0 ? { env } : {}),
    resources: containerResources(c.resources, opts),
    ...(c.readinessProbe ? { readinessProbe: probe(c.readinessProbe) } : {}),
    securityContext: containerSecurityContext(c, opts),
    ...(mounts.length > 0 ? { volumeMounts: mounts } : {}),
  };
}

/** Per-container hardening; repeated on every container so none depends on Pod-level inheritance. */
function containerSecurityContext(c: ChallengeContainer, opts: PodDefaults): V1SecurityContext {
  return {
    allowPrivilegeEscalation: false,
    capabilities: { drop: ['ALL'] },
    privileged: false,
    readOnlyRootFilesystem: c.readOnlyRootFilesystem,
    runAsNonRoot: true,
    runAsUser: c.runAsUser ?? opts.runAsUser,
    seccompProfile: RUNTIME_DEFAULT_SECCOMP,
  };
}

/** Names of the containers that receive the flag: those listed, or all when none are. */
export function flagReceivers(runtime: Pick<ChallengeRuntime, 'containers' | 'flag'>): Set<string> {
  return new Set(runtime.flag.containers ?? runtime.containers.map((c) => c.name));
}

/**
 * The container's own variables plus, for env delivery, the flag read from the session Secret.
 * A challenge variable with the flag's name is dropped so the flag cannot be shadowed.
 */
function containerEnv(c: ChallengeContainer, runtime: ChallengeRuntime, flagSecret: string | undefined): V1EnvVar[] {
  const flagEnv = flagSecret !== undefined && runtime.flag.delivery === 'env' ? runtime.flag.envName : undefined;
  const env: V1EnvVar[] = (c.env ?? []).filter((e) => e.name !== flagEnv).map((e) => ({ name: e.name, value: e.value }));
  if (flagSecret !== undefined && flagEnv !== undefined) {
    env.push({ name: flagEnv, valueFrom: { secretKeyRef: { name: flagSecret, key: FLAG_SECRET_KEY } } });
  }
  return env;
}

/**
 * The flag file is mounted by itself (subPath) at filePath rather than as a directory at its
 * dirname: a directory mount would hide whatever the image keeps beside the flag, such as the
 * challenge binary in /home/ctf. The flag never changes, so subPath's lack of updates is moot.
 */
function flagMount(filePath: string): V1VolumeMount {
  return { name: FLAG_VOLUME, mountPath: filePath, subPath: basename(filePath), readOnly: true };
}

/** The Secret volume for file delivery, present only when some container receives the flag. */
function flagVolumes(runtime: ChallengeRuntime, secretName: string): V1Volume[] {
  if (runtime.flag.delivery !== 'file' || flagReceivers(runtime).size === 0) return [];
  const file = basename(runtime.flag.filePath);
  return [{ name: FLAG_VOLUME, secret: { secretName, defaultMode: 0o444, items: [{ key: FLAG_SECRET_KEY, path: file }] } }];
}

/** Memory-backed, size-capped writable directories; they count against the container's memory limit. */
function scratchVolumes(runtime: ChallengeRuntime, opts: PodDefaults): V1Volume[] {
  return runtime.containers.flatMap((c, ci) =>
    (c.scratchPaths ?? []).map((_, i) => ({ name: scratchVolumeName(ci, i), emptyDir: { medium: 'Memory', sizeLimit: opts.scratchSizeLimit } })),
  );
}

/** Indexes rather than container names keep volume names within a DNS label's 63 characters. */
function scratchVolumeName(containerIndex: number, pathIndex: number): string {
  return `scratch-${containerIndex}-${pathIndex}`;
}

/** The challenge's readiness probe in Kubernetes form, with only the fields it sets. */
function probe(p: NonNullable<ChallengeContainer['readinessProbe']>): V1Probe {
  return {
    ...(p.tcpSocket ? { tcpSocket: { port: p.tcpSocket.port } } : {}),
    ...(p.httpGet ? { httpGet: { path: p.httpGet.path, port: p.httpGet.port } } : {}),
    ...(p.initialDelaySeconds !== undefined ? { initialDelaySeconds: p.initialDelaySeconds } : {}),
    ...(p.periodSeconds !== undefined ? { periodSeconds: p.periodSeconds } : {}),
    ...(p.timeoutSeconds !== undefined ? { timeoutSeconds: p.timeoutSeconds } : {}),
    ...(p.failureThreshold !== undefined ? { failureThreshold: p.failureThreshold } : {}),
  };
}
