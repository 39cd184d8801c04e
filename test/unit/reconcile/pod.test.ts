import { describe, it, expect } from 'vitest';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { LABEL_SESSION } from '../../../src/api/group.js';
import { ANNOTATION_CHALLENGE_GENERATION } from '../../../src/reconcile/labels.js';
import { DEFAULT_POD_DEFAULTS, desiredPod, flagReceivers, type PodDefaults } from '../../../src/reconcile/pod.js';
import { containerResources } from '../../../src/reconcile/resources.js';
import { parseQuantity } from '../../../src/reconcile/quantity.js';
import { runtimeOf } from '../../../src/reconcile/runtime.js';
import { NAMESPACE, SESSION_UID, pwnChallenge, sampleChallenges, session, webChallenge } from './fixtures.js';

/** Pod Security Standards "restricted" (which includes "baseline"), as Pod Security Admission checks it. */
function restrictedViolations(pod: V1Pod): string[] {
  const spec = pod.spec;
  if (!spec) return ['no spec'];
  const out: string[] = [];
  const podSc = spec.securityContext ?? {};
  const containers: V1Container[] = [...(spec.initContainers ?? []), ...spec.containers];
  if (spec.hostNetwork || spec.hostPID || spec.hostIPC) out.push('host namespaces');
  const allowedVolumes = ['configMap', 'csi', 'downwardAPI', 'emptyDir', 'ephemeral', 'persistentVolumeClaim', 'projected', 'secret'];
  for (const v of spec.volumes ?? []) {
    const types = Object.keys(v).filter((k) => k !== 'name');
    if (types.length !== 1 || !allowedVolumes.includes(types[0] ?? '')) out.push(`volume ${v.name} of type ${types.join()}`);
  }
  const podSeccomp = podSc.seccompProfile?.type;
  if (podSeccomp === 'Unconfined') out.push('pod seccomp Unconfined');
  if (podSc.runAsUser === 0) out.push('pod runAsUser 0');
  if (podSc.sysctls?.length) out.push('sysctls');
  for (const c of containers) {
    const sc = c.securityContext ?? {};
    if (sc.privileged) out.push(`${c.name}: privileged`);
    if (sc.allowPrivilegeEscalation !== false) out.push(`${c.name}: allowPrivilegeEscalation`);
    if (!(sc.runAsNonRoot === true || (podSc.runAsNonRoot === true && sc.runAsNonRoot !== false))) out.push(`${c.name}: runAsNonRoot`);
    if (sc.runAsUser === 0) out.push(`${c.name}: runAsUser 0`);
    const seccomp = sc.seccompProfile?.type ?? podSeccomp;
    if (seccomp !== 'RuntimeDefault' && seccomp !== 'Localhost') out.push(`${c.name}: seccomp`);
    if (!sc.capabilities?.drop?.includes('ALL')) out.push(`${c.name}: capabilities not dropped`);
    if ((sc.capabilities?.add ?? []).some((cap) => cap !== 'NET_BIND_SERVICE')) out.push(`${c.name}: capabilities added`);
    if (sc.procMount && sc.procMount !== 'Default') out.push(`${c.name}: procMount`);
    if ((c.ports ?? []).some((p) => p.hostPort)) out.push(`${c.name}: hostPort`);
  }
  return out;
}

const web = runtimeOf(webChallenge().spec);
const pwn = runtimeOf(pwnChallenge().spec);

function container(pod: V1Pod, name: string): V1Container {
  const c = pod.spec?.containers.find((x) => x.name === name);
  if (!c) throw new Error(`no container ${name}`);
  return c;
}

describe('desiredPod hardening', () => {
  const samples = sampleChallenges().map((c) => [c.metadata.name, desiredPod(session({ challenge: c.metadata.name }), runtimeOf(c.spec))] as const);
  const cases = [['web fixture', desiredPod(session(), web)], ['pwn fixture', desiredPod(session(), pwn)], ...samples] as const;

  it('the checker catches what restricted forbids', () => {
    const pod = desiredPod(session(), web);
    const bad: V1Pod = {
      ...pod,
      spec: {
        ...pod.spec,
        containers: (pod.spec?.containers ?? []).map((c, i) => (i === 0 ? { ...c, securityContext: { ...c.securityContext, allowPrivilegeEscalation: true, capabilities: { add: ['SYS_ADMIN'] } } } : c)),
        volumes: [{ name: 'host', hostPath: { path: '/' } }],
      },
    };
    expect(restrictedViolations(bad)).toEqual(['volume host of type hostPath', 'app: allowPrivilegeEscalation', 'app: capabilities not dropped', 'app: capabilities added']);
  });

  it('covers the sample challenges', () => {
    expect(samples.length).toBeGreaterThanOrEqual(4);
  });

  it.each(cases)('%s passes Pod Security "restricted"', (_name, pod) => {
    expect(restrictedViolations(pod)).toEqual([]);
  });

  it.each(cases)('%s hardens every container explicitly', (_name, pod) => {
    for (const c of pod.spec?.containers ?? []) {
      expect(c.securityContext).toMatchObject({
        allowPrivilegeEscalation: false,
        capabilities: { drop: ['ALL'] },
        privileged: false,
        runAsNonRoot: true,
        seccompProfile: { type: 'RuntimeDefault' },
      });
      expect(c.securityContext?.runAsUser).toBeGreaterThan(0);
      expect(Object.keys(c.resources?.limits ?? {}).sort()).toEqual(['cpu', 'memory']);
      expect(Object.keys(c.resources?.requests ?? {}).sort()).toEqual(['cpu', 'memory']);
    }
  });

  it.each(cases)('%s keeps the service account token and service links out', (_name, pod) => {
    expect(pod.spec).toMatchObject({
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      restartPolicy: 'Always',
      terminationGracePeriodSeconds: 5,
      securityContext: { runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532, seccompProfile: { type: 'RuntimeDefault' } },
    });
    expect(pod.spec?.hostNetwork).toBeUndefined();
  });

  it('uses the container user and root filesystem setting from the challenge', () => {
    const pod = desiredPod(session(), web);
    expect(container(pod, 'app').securityContext).toMatchObject({ runAsUser: 65532, readOnlyRootFilesystem: true });
    expect(container(pod, 'db').securityContext).toMatchObject({ runAsUser: 999, readOnlyRootFilesystem: false });
  });
});

describe('desiredPod metadata and wiring', () => {
  const pod = desiredPod(session(), { runtime: web, generation: 7 });

  it('is named after the session, labelled, owned and annotated with the generation', () => {
    expect(pod.metadata).toMatchObject({
      name: 'web-notes-alice',
      namespace: NAMESPACE,
      labels: { [LABEL_SESSION]: 'web-notes-alice' },
      annotations: { [ANNOTATION_CHALLENGE_GENERATION]: '7' },
      ownerReferences: [{ uid: SESSION_UID, controller: true }],
    });
  });

  it('has no generation annotation when given only the runtime', () => {
    expect(desiredPod(session(), web).metadata?.annotations).toBeUndefined();
  });

  it('maps ports, probe and env', () => {
    const app = container(pod, 'app');
    expect(app.ports).toEqual([{ name: 'http', containerPort: 8080, protocol: 'TCP' }]);
    expect(app.readinessProbe).toEqual({ httpGet: { path: '/healthz', port: 8080 }, periodSeconds: 5 });
    expect(container(pod, 'db').ports).toEqual([{ containerPort: 5432, protocol: 'TCP' }]);
    expect(container(pod, 'db').env).toBeUndefined();
    expect(container(desiredPod(session(), pwn), 'echo')).toMatchObject({ args: ['--port', '1337'], readinessProbe: { tcpSocket: { port: 1337 } } });
  });

  it('mounts each scratch path as a size-capped memory emptyDir', () => {
    expect(container(pod, 'app').volumeMounts).toEqual([
      { name: 'scratch-0-0', mountPath: '/tmp' },
      { name: 'scratch-0-1', mountPath: '/var/cache/app' },
    ]);
    expect(pod.spec?.volumes).toEqual([
      { name: 'scratch-0-0', emptyDir: { medium: 'Memory', sizeLimit: '64Mi' } },
      { name: 'scratch-0-1', emptyDir: { medium: 'Memory', sizeLimit: '64Mi' } },
    ]);
  });

  it('applies scheduling options', () => {
    const opts: PodDefaults = {
      ...DEFAULT_POD_DEFAULTS,
      priorityClassName: 'ctf-low',
      nodeSelector: { pool: 'ctf' },
      tolerations: [{ key: 'ctf', operator: 'Exists', effect: 'NoSchedule' }],
      runtimeClassName: 'gvisor',
    };
    expect(desiredPod(session(), web, opts).spec).toMatchObject({
      priorityClassName: 'ctf-low',
      nodeSelector: { pool: 'ctf' },
      tolerations: [{ key: 'ctf' }],
      runtimeClassName: 'gvisor',
    });
    expect(desiredPod(session(), web).spec?.runtimeClassName).toBeUndefined();
  });
});

describe('flag injection', () => {
  const flagEnv = { name: 'FLAG', valueFrom: { secretKeyRef: { name: 'web-notes-alice-flag', key: 'flag' } } };

  it.each([
    ['listed container only', ['app'], ['app']],
    ['all containers when unlisted', undefined, ['app', 'db']],
    ['the other container', ['db'], ['db']],
    ['no container', [], []],
  ])('env delivery reaches the %s', (_what, listed, receivers) => {
    const flag = { ...web.flag, containers: listed };
    const pod = desiredPod(session(), { ...web, flag });
    for (const name of ['app', 'db']) {
      const env = container(pod, name).env ?? [];
      expect(env.some((e) => e.name === 'FLAG' && e.valueFrom !== undefined)).toBe(receivers.includes(name));
    }
    expect([...flagReceivers({ ...web, flag })]).toEqual(receivers);
    expect(pod.spec?.volumes?.some((v) => v.secret)).toBe(false);
  });

  it('keeps challenge variables and lets the flag win over one of the same name', () => {
    const containers = web.containers.map((c) => (c.name === 'app' ? { ...c, env: [...(c.env ?? []), { name: 'FLAG', value: 'fake' }] } : c));
    const env = container(desiredPod(session(), { ...web, containers }), 'app').env;
    expect(env).toEqual([{ name: 'MODE', value: 'ctf' }, flagEnv]);
  });

  it('uses the configured variable name', () => {
    const env = container(desiredPod(session(), { ...web, flag: { ...web.flag, envName: 'SECRET' } }), 'app').env;
    expect(env?.at(-1)).toEqual({ ...flagEnv, name: 'SECRET' });
  });

  it('file delivery mounts only the flag file, read-only, into the receivers', () => {
    const pod = desiredPod(session(), pwn);
    expect(pod.spec?.volumes).toEqual([
      { name: 'flag', secret: { secretName: 'web-notes-alice-flag', defaultMode: 0o444, items: [{ key: 'flag', path: 'flag.txt' }] } },
    ]);
    expect(container(pod, 'echo').volumeMounts).toEqual([{ name: 'flag', mountPath: '/home/ctf/flag.txt', subPath: 'flag.txt', readOnly: true }]);
    expect(container(pod, 'echo').env).toBeUndefined();
  });

  it('file delivery skips containers not listed and adds no volume when none receive it', () => {
    const flag = { ...web.flag, delivery: 'file' as const, filePath: '/run/flag/flag' };
    const pod = desiredPod(session(), { ...web, flag });
    expect(container(pod, 'app').volumeMounts).toContainEqual({ name: 'flag', mountPath: '/run/flag/flag', subPath: 'flag', readOnly: true });
    expect(container(pod, 'db').volumeMounts).toBeUndefined();
    expect(container(pod, 'app').env).toEqual([{ name: 'MODE', value: 'ctf' }]);
    const none = desiredPod(session(), { ...web, flag: { ...flag, containers: [] } });
    expect(none.spec?.volumes?.map((v) => v.name)).not.toContain('flag');
  });
});

describe('containerResources', () => {
  const defaults = DEFAULT_POD_DEFAULTS;

  it.each([
    ['nothing given: all defaults', undefined, { requests: { cpu: '50m', memory: '64Mi' }, limits: { cpu: '500m', memory: '256Mi' } }],
    [
      'each value filled individually',
      { requests: { cpu: '100m' }, limits: { memory: '128Mi' } },
      { requests: { cpu: '100m', memory: '64Mi' }, limits: { cpu: '500m', memory: '128Mi' } },
    ],
    [
      'a limit below the default request lowers the request',
      { limits: { cpu: '20m', memory: '32Mi' } },
      { requests: { cpu: '20m', memory: '32Mi' }, limits: { cpu: '20m', memory: '32Mi' } },
    ],
    [
      'an explicit request above the default limit raises the limit',
      { requests: { cpu: '2', memory: '1Gi' } },
      { requests: { cpu: '2', memory: '1Gi' }, limits: { cpu: '2', memory: '1Gi' } },
    ],
    [
      'an explicit request above its explicit limit is lowered to it',
      { requests: { cpu: '1' }, limits: { cpu: '500m' } },
      { requests: { cpu: '500m', memory: '64Mi' }, limits: { cpu: '500m', memory: '256Mi' } },
    ],
    [
      'explicit values are kept as written',
      { requests: { cpu: '0.1', memory: '100M' }, limits: { cpu: '1', memory: '1G' } },
      { requests: { cpu: '0.1', memory: '100M' }, limits: { cpu: '1', memory: '1G' } },
    ],
  ])('%s', (_what, resources, expected) => {
    expect(containerResources(resources, defaults)).toEqual(expected);
  });
});

describe('parseQuantity', () => {
  it.each([
    ['250m', 0.25],
    ['1', 1],
    ['1.5', 1.5],
    ['64Mi', 64 * 2 ** 20],
    ['1Gi', 2 ** 30],
    ['100M', 1e8],
    ['2k', 2000],
    ['1e3', undefined],
    ['-1', undefined],
    ['abc', undefined],
  ])('%s -> %s', (text, value) => {
    expect(parseQuantity(text)).toBe(value);
  });
});
