import { describe, it, expect } from 'vitest';
import type { Phase } from '../../../src/api/session.js';
import { Reason } from '../../../src/reconcile/reasons.js';
import { runtimeOf, type EffectiveRuntime } from '../../../src/reconcile/runtime.js';
import { computeStatus, sessionEndpoints, statusEqual, statusPatch, type StatusInput } from '../../../src/reconcile/status.js';
import { hostKey, publicHost } from '../../../src/reconcile/public-host.js';
import { CREATED, SESSION_UID, observedPod, observedService, pwnChallenge, session, webChallenge, withRawStatus } from './fixtures.js';

const NOW = new Date('2030-01-01T10:05:00Z');
const LATER = new Date('2030-01-01T10:07:00Z');
const EXPIRES = new Date('2030-01-01T11:00:00Z');
const runtime: EffectiveRuntime = { generation: 3, runtime: runtimeOf(webChallenge().spec) };

function input(overrides: Partial<StatusInput> = {}): StatusInput {
  return { session: session(), runtime, pod: observedPod(), service: observedService, now: NOW, expiresAt: EXPIRES, ...overrides };
}

function ready(status: ReturnType<typeof computeStatus>) {
  return status.conditions?.find((c) => c.type === 'Ready');
}

function provisioned(status: ReturnType<typeof computeStatus>) {
  return status.conditions?.find((c) => c.type === 'Provisioned');
}

describe('computeStatus phase', () => {
  const running = observedPod({ phase: 'Running', ready: true });
  it.each<[string, Partial<StatusInput>, Phase, string]>([
    ['expired, whatever the pod says', { pod: running, now: EXPIRES }, 'Expired', Reason.Expired],
    ['a challenge problem', { runtime: undefined, pod: undefined, challengeProblem: { reason: Reason.UnknownChallenge, message: 'no challenge' } }, 'Failed', Reason.UnknownChallenge],
    ['no runtime yet', { runtime: undefined, pod: undefined }, 'Pending', Reason.WaitingForChallenge],
    ['no pod yet', { pod: undefined }, 'Provisioning', Reason.Provisioning],
    ['pod pending', { pod: observedPod({ phase: 'Pending' }) }, 'Provisioning', Reason.Provisioning],
    ['pod creating containers', { pod: observedPod({ waiting: { reason: 'ContainerCreating' } }) }, 'Provisioning', Reason.Provisioning],
    ['pod running, not ready', { pod: observedPod({ phase: 'Running', ready: false }) }, 'Provisioning', Reason.Provisioning],
    ['pod ready', { pod: running }, 'Running', Reason.Ready],
    ['pod ready but no service yet', { pod: running, service: undefined }, 'Provisioning', Reason.Provisioning],
    ['pod terminating', { pod: observedPod({ phase: 'Running', ready: true, deleting: true }) }, 'Provisioning', Reason.Provisioning],
    ['pod failed', { pod: observedPod({ phase: 'Failed', reason: 'Evicted', message: 'low on memory' }) }, 'Failed', Reason.PodFailed],
    ['pod succeeded', { pod: observedPod({ phase: 'Succeeded' }) }, 'Failed', Reason.PodFailed],
    ['ErrImagePull', { pod: observedPod({ waiting: { reason: 'ErrImagePull' } }) }, 'Failed', Reason.ImagePullFailed],
    ['ImagePullBackOff', { pod: observedPod({ waiting: { reason: 'ImagePullBackOff', message: 'Back-off pulling image' } }) }, 'Failed', Reason.ImagePullFailed],
    ['InvalidImageName', { pod: observedPod({ waiting: { reason: 'InvalidImageName' } }) }, 'Failed', Reason.ImagePullFailed],
    ['an init container image pull', { pod: observedPod({ waiting: { reason: 'ErrImagePull', init: true } }) }, 'Failed', Reason.ImagePullFailed],
    ['CrashLoopBackOff', { pod: observedPod({ phase: 'Running', ready: false, waiting: { reason: 'CrashLoopBackOff' } }) }, 'Failed', Reason.CrashLoop],
    [
      'unschedulable',
      { pod: observedPod({ conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: '0/3 nodes are available' }] }) },
      'Provisioning',
      Reason.Unschedulable,
    ],
  ])('%s', (_what, overrides, phase, reason) => {
    const status = computeStatus(input(overrides));
    expect(status.phase).toBe(phase);
    expect(ready(status)).toMatchObject({ status: phase === 'Running' ? 'True' : 'False', reason });
    expect(status.message).toBe(ready(status)?.message);
  });

  it('explains failures with the kubelet message', () => {
    const status = computeStatus(input({ pod: observedPod({ waiting: { container: 'db', reason: 'ImagePullBackOff', message: 'Back-off pulling image "x"' } }) }));
    expect(status.message).toBe('container db: ImagePullBackOff: Back-off pulling image "x"');
    const unschedulable = computeStatus(
      input({ pod: observedPod({ conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: '0/3 nodes are available' }] }) }),
    );
    expect(unschedulable.message).toBe('0/3 nodes are available');
  });
});

describe('computeStatus fields', () => {
  const running = observedPod({ phase: 'Running', ready: true });

  it('records the observed generation, times, expiry and snapshot', () => {
    const status = computeStatus(input({ session: session({ generation: 4 }), pod: running }));
    expect(status).toMatchObject({
      observedGeneration: 4,
      startedAt: CREATED,
      readyAt: '2030-01-01T10:05:00Z',
      expiresAt: '2030-01-01T11:00:00Z',
      provisionedFrom: { generation: 3, runtime: runtime.runtime },
    });
    expect(status.conditions?.every((c) => c.observedGeneration === 4)).toBe(true);
  });

  it('has no readyAt before the session was ever ready and keeps the first one after', () => {
    expect(computeStatus(input()).readyAt).toBeUndefined();
    const first = computeStatus(input({ pod: running }));
    const later = computeStatus(input({ session: withRawStatus(session(), first), pod: observedPod({ phase: 'Running', ready: false }), now: LATER }));
    expect(later.readyAt).toBe('2030-01-01T10:05:00Z');
  });

  it('keeps what other writers own', () => {
    const s = session({ status: { solved: true, solvedAt: '2030-01-01T10:04:00Z', startedAt: '2030-01-01T10:00:01Z' } });
    expect(computeStatus(input({ session: s }))).toMatchObject({ solved: true, solvedAt: '2030-01-01T10:04:00Z', startedAt: '2030-01-01T10:00:01Z' });
  });

  it('marks children provisioned once pod and service exist, noting dropped egress', () => {
    expect(provisioned(computeStatus(input({ pod: undefined })))).toMatchObject({ status: 'False', reason: Reason.Provisioning });
    expect(provisioned(computeStatus(input()))).toMatchObject({ status: 'True', reason: Reason.Provisioned });
    const dropped = provisioned(computeStatus(input({ droppedCidrs: ['10.1.0.0/16'] })));
    expect(dropped).toMatchObject({ status: 'True', reason: Reason.EgressRestricted });
    expect(dropped?.message).toContain('10.1.0.0/16');
    const unknown = computeStatus(input({ runtime: undefined, pod: undefined, challengeProblem: { reason: Reason.UnknownChallenge, message: 'gone' } }));
    expect(provisioned(unknown)).toMatchObject({ status: 'False', reason: Reason.UnknownChallenge, message: 'gone' });
  });

  it('lists endpoints only while Running', () => {
    expect(computeStatus(input()).endpoints).toBeUndefined();
    expect(computeStatus(input({ pod: running })).endpoints).toEqual([
      { name: 'http', protocol: 'http', host: 'web-notes-alice.ctf.svc.cluster.local', port: 8080, url: 'http://web-notes-alice.ctf.svc.cluster.local:8080' },
    ]);
  });
});

describe('lastTransitionTime', () => {
  it('is kept while a condition keeps its status, so recomputing writes nothing', () => {
    const first = computeStatus(input());
    const again = computeStatus(input({ session: withRawStatus(session(), first), now: LATER }));
    expect(again).toEqual(first);
    expect(statusEqual(first, again)).toBe(true);
    expect(statusPatch(first, again)).toBeUndefined();
  });

  it('is kept when only the reason or message changes', () => {
    const first = computeStatus(input());
    const next = computeStatus(input({ session: withRawStatus(session(), first), pod: observedPod({ waiting: { reason: 'ContainerCreating' } }), now: LATER }));
    expect(ready(next)).toMatchObject({ status: 'False', lastTransitionTime: '2030-01-01T10:05:00Z', message: 'container app: ContainerCreating' });
  });

  it('moves when the status changes', () => {
    const first = computeStatus(input());
    const next = computeStatus(input({ session: withRawStatus(session(), first), pod: observedPod({ phase: 'Running', ready: true }), now: LATER }));
    expect(ready(next)).toMatchObject({ status: 'True', lastTransitionTime: '2030-01-01T10:07:00Z' });
    expect(provisioned(next)?.lastTransitionTime).toBe('2030-01-01T10:05:00Z');
    expect(statusPatch(first, next)).toMatchObject({ phase: 'Running', readyAt: '2030-01-01T10:07:00Z' });
  });

  it('removes endpoints with null when a session stops running', () => {
    const running = computeStatus(input({ pod: observedPod({ phase: 'Running', ready: true }) }));
    const failed = computeStatus(input({ session: withRawStatus(session(), running), pod: observedPod({ phase: 'Failed' }), now: LATER }));
    expect(statusPatch(running, failed)).toMatchObject({ phase: 'Failed', endpoints: null });
  });
});

describe('sessionEndpoints', () => {
  const s = session();
  const key = hostKey(Buffer.from('0123456789abcdef0123456789abcdef'));
  const pub = { domain: 'play.example.org', hostKey: key, httpScheme: 'https' as const, httpPort: 443, tlsPort: 443 };
  const hostOf = (port: string) => publicHost(key, SESSION_UID, port, 'play.example.org');

  it.each([
    [
      'http inside the cluster',
      webChallenge(),
      {},
      [{ name: 'http', protocol: 'http', host: 'web-notes-alice.ctf.svc.cluster.local', port: 8080, url: 'http://web-notes-alice.ctf.svc.cluster.local:8080' }],
    ],
    [
      'http through an external domain',
      webChallenge(),
      { public: pub, clusterDomain: 'k8s.internal' },
      [{ name: 'http', protocol: 'http', host: 'web-notes-alice.ctf.svc.k8s.internal', port: 8080, externalHost: hostOf('http'), url: `https://${hostOf('http')}` }],
    ],
    [
      'http on a listener with another scheme and port',
      webChallenge(),
      { public: { ...pub, httpScheme: 'http' as const, httpPort: 8000 }, routes: { http: 'HTTPRoute web-notes-alice-http' } },
      [{ name: 'http', protocol: 'http', host: 'web-notes-alice.ctf.svc.cluster.local', port: 8080, externalHost: hostOf('http'), url: `http://${hostOf('http')}:8000`, route: 'HTTPRoute web-notes-alice-http' }],
    ],
    ['tcp without a URL', pwnChallenge(), {}, [{ name: 'tcp-1337', protocol: 'tcp', host: 'web-notes-alice.ctf.svc.cluster.local', port: 1337 }]],
    [
      'tcp with an external host',
      pwnChallenge(),
      { public: pub },
      [{ name: 'tcp-1337', protocol: 'tcp', host: 'web-notes-alice.ctf.svc.cluster.local', port: 1337, externalHost: hostOf('tcp-1337') }],
    ],
    [
      'tcp published through the TLS listener',
      pwnChallenge(),
      { public: { ...pub, tlsPort: 8443 }, routes: { 'tcp-1337': 'TLSRoute web-notes-alice-tcp-1337' } },
      [{ name: 'tcp-1337', protocol: 'tcp', host: 'web-notes-alice.ctf.svc.cluster.local', port: 1337, externalHost: hostOf('tcp-1337'), connect: `ncat --ssl ${hostOf('tcp-1337')} 8443`, route: 'TLSRoute web-notes-alice-tcp-1337' }],
    ],
  ])('%s', (_what, challenge, opts, expected) => {
    expect(sessionEndpoints(s, runtimeOf(challenge.spec), opts)).toEqual(expected);
  });
});

describe('statusEqual', () => {
  it.each([
    ['key order', { phase: 'Running', message: 'm' }, { message: 'm', phase: 'Running' }, true],
    ['undefined members', { phase: 'Running', readyAt: undefined }, { phase: 'Running' }, true],
    ['a changed member', { phase: 'Running' }, { phase: 'Failed' }, false],
    ['absent and empty', undefined, {}, true],
  ])('%s', (_what, a, b, equal) => {
    expect(statusEqual(a, b)).toBe(equal);
  });
});
