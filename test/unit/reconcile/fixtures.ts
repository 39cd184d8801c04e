import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import type { V1ContainerStatus, V1Pod, V1PodCondition, V1Service } from '@kubernetes/client-node';
import { API_VERSION, ANNOTATION_EXPIRES_AT, CHALLENGE_KIND, SESSION_KIND } from '../../../src/api/group.js';
import { challengeSchema, type Challenge } from '../../../src/api/challenge.js';
import { sessionSchema, type ChallengeSession } from '../../../src/api/session.js';

/**
 * Sample objects for the pure reconcile tests, parsed through the real schemas so that defaults
 * (readOnlyRootFilesystem, flag delivery, lifetime) are applied exactly as in the controller.
 */

export const NAMESPACE = 'ctf';
export const CREATED = '2030-01-01T10:00:00Z';
export const SESSION_UID = '3f1c2a8e-5b7d-4e2a-9c41-0d6b8f7e1a23';

type Spec = Record<string, unknown>;

/** A two-container web challenge: app (flag via env, scratch /tmp) and db (no flag). */
export function webChallenge(overrides: Spec = {}, generation = 3): Challenge {
  return challengeSchema.parse({
    apiVersion: API_VERSION,
    kind: CHALLENGE_KIND,
    metadata: { name: 'web-notes', generation },
    spec: {
      title: 'Notes',
      category: 'web',
      points: 200,
      containers: [
        {
          name: 'app',
          image: 'challenge-engine/web-notes:1.0',
          ports: [{ name: 'http', containerPort: 8080 }],
          env: [{ name: 'MODE', value: 'ctf' }],
          resources: { requests: { cpu: '100m' }, limits: { memory: '128Mi' } },
          readinessProbe: { httpGet: { path: '/healthz', port: 8080 }, periodSeconds: 5 },
          scratchPaths: ['/tmp', '/var/cache/app'],
        },
        { name: 'db', image: 'challenge-engine/web-notes-db:1.0', ports: [{ containerPort: 5432 }], runAsUser: 999, readOnlyRootFilesystem: false },
      ],
      expose: [{ name: 'http', port: 8080, protocol: 'http' }],
      flag: { dynamic: { format: 'CTF{%s}', length: 32 }, containers: ['app'] },
      lifetime: { default: '1h', max: '3h', extension: '30m' },
      network: { egress: [{ cidr: '203.0.113.0/24', ports: [{ port: 443 }] }] },
      ...overrides,
    },
  });
}

/** A one-container TCP challenge with the flag in a file, as challenges/pwn-echo.yaml. */
export function pwnChallenge(overrides: Spec = {}): Challenge {
  return challengeSchema.parse({
    apiVersion: API_VERSION,
    kind: CHALLENGE_KIND,
    metadata: { name: 'pwn-echo', generation: 1 },
    spec: {
      title: 'Echo Chamber',
      category: 'pwn',
      points: 300,
      containers: [
        {
          name: 'echo',
          image: 'challenge-engine/pwn-echo:1.0',
          args: ['--port', '1337'],
          ports: [{ name: 'tcp', containerPort: 1337 }],
          readinessProbe: { tcpSocket: { port: 1337 } },
          runAsUser: 1000,
        },
      ],
      expose: [{ port: 1337, protocol: 'tcp' }],
      flag: { dynamic: { format: 'flag{%s}', length: 24 }, delivery: 'file', filePath: '/home/ctf/flag.txt' },
      lifetime: { default: '30m', max: '2h', extension: '15m' },
      ...overrides,
    },
  });
}

export interface SessionOptions {
  name?: string;
  challenge?: string;
  user?: string;
  team?: string;
  owner?: 'user' | 'team';
  expiresAt?: string;
  status?: Record<string, unknown>;
  generation?: number;
}

export function session(opts: SessionOptions = {}): ChallengeSession {
  return sessionSchema.parse({
    apiVersion: API_VERSION,
    kind: SESSION_KIND,
    metadata: {
      name: opts.name ?? 'web-notes-alice',
      namespace: NAMESPACE,
      uid: SESSION_UID,
      generation: opts.generation ?? 1,
      creationTimestamp: CREATED,
      ...(opts.expiresAt !== undefined ? { annotations: { [ANNOTATION_EXPIRES_AT]: opts.expiresAt } } : {}),
    },
    spec: { challenge: opts.challenge ?? 'web-notes', user: opts.user ?? 'alice@example.org', ...(opts.team ? { team: opts.team } : {}), ...(opts.owner ? { owner: opts.owner } : {}) },
    ...(opts.status ? { status: opts.status } : {}),
  });
}

/**
 * A session whose status keeps members the API schema does not know (yet), such as
 * provisionedFrom: the schema would strip them, the apiserver does not.
 */
export function withRawStatus(s: ChallengeSession, status: Record<string, unknown>): ChallengeSession {
  return { ...s, status };
}

export interface PodState {
  phase?: string;
  ready?: boolean;
  conditions?: V1PodCondition[];
  waiting?: { container?: string; reason: string; message?: string; init?: boolean };
  reason?: string;
  message?: string;
  deleting?: boolean;
}

/** An observed session Pod in the given state, as a watch would deliver it. */
export function observedPod(state: PodState = {}): V1Pod {
  const conditions: V1PodCondition[] = [...(state.conditions ?? [])];
  if (state.ready !== undefined) conditions.push({ type: 'Ready', status: state.ready ? 'True' : 'False' });
  const waiting: V1ContainerStatus[] = state.waiting
    ? [{ name: state.waiting.container ?? 'app', image: 'x', imageID: '', ready: false, restartCount: 3, state: { waiting: { reason: state.waiting.reason, message: state.waiting.message } } }]
    : [];
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'web-notes-alice', namespace: NAMESPACE, ...(state.deleting ? { deletionTimestamp: new Date(CREATED) } : {}) },
    status: {
      phase: state.phase ?? 'Pending',
      conditions,
      ...(state.waiting?.init ? { initContainerStatuses: waiting } : { containerStatuses: waiting }),
      ...(state.reason ? { reason: state.reason } : {}),
      ...(state.message ? { message: state.message } : {}),
    },
  };
}

export const observedService: V1Service = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web-notes-alice', namespace: NAMESPACE } };

/** Every Challenge under challenges/, parsed. */
export function sampleChallenges(): Challenge[] {
  const dir = fileURLToPath(new URL('../../../challenges/', import.meta.url));
  return readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((f) => challengeSchema.parse(parse(readFileSync(`${dir}${f}`, 'utf8'))));
}
