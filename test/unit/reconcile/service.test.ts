import { describe, it, expect } from 'vitest';
import { LABEL_SESSION } from '../../../src/api/group.js';
import { desiredService } from '../../../src/reconcile/service.js';
import { runtimeOf } from '../../../src/reconcile/runtime.js';
import { NAMESPACE, SESSION_UID, pwnChallenge, session, webChallenge } from './fixtures.js';

describe('desiredService', () => {
  it('is a ClusterIP Service selecting only the session Pod', () => {
    const svc = desiredService(session(), runtimeOf(webChallenge().spec));
    expect(svc).toMatchObject({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'web-notes-alice', namespace: NAMESPACE, labels: { [LABEL_SESSION]: 'web-notes-alice' }, ownerReferences: [{ uid: SESSION_UID }] },
      spec: { type: 'ClusterIP', selector: { [LABEL_SESSION]: 'web-notes-alice' } },
    });
  });

  it.each([
    ['a named http port', webChallenge(), [{ name: 'http', port: 8080, targetPort: 8080, protocol: 'TCP', appProtocol: 'http' }]],
    ['an unnamed tcp port', pwnChallenge(), [{ name: 'tcp-1337', port: 1337, targetPort: 1337, protocol: 'TCP' }]],
    [
      'several ports',
      webChallenge({
        containers: [{ name: 'app', image: 'a/b:1', ports: [{ containerPort: 80 }, { containerPort: 2222 }] }],
        expose: [
          { port: 80, protocol: 'http' },
          { port: 2222, protocol: 'tcp', name: 'ssh' },
        ],
        flag: { dynamic: {} },
      }),
      [
        { name: 'http-80', port: 80, targetPort: 80, protocol: 'TCP', appProtocol: 'http' },
        { name: 'ssh', port: 2222, targetPort: 2222, protocol: 'TCP' },
      ],
    ],
  ])('maps %s', (_what, challenge, ports) => {
    expect(desiredService(session(), runtimeOf(challenge.spec)).spec?.ports).toEqual(ports);
  });
});
