import { describe, it, expect } from 'vitest';
import { desiredRoutes, routeName, unroutablePorts, type GatewayOptions } from '../../../src/reconcile/routes.js';
import { hostKey, publicHost, publicHostLabel, PUBLIC_HOST_BITS } from '../../../src/reconcile/public-host.js';
import { runtimeOf } from '../../../src/reconcile/runtime.js';
import { LABEL_SESSION } from '../../../src/api/group.js';
import { pwnChallenge, session, webChallenge, SESSION_UID } from './fixtures.js';

const gw: GatewayOptions = { gateway: { namespace: 'ctf-gateway', name: 'ctf' }, httpListener: 'http', tlsListener: 'tls', authFilter: { group: 'traefik.io', kind: 'Middleware', name: 'ctf-access' } };
const key = hostKey(Buffer.from('0123456789abcdef0123456789abcdef'));

describe('public hosts', () => {
  it('are stable, per port, per session, and depend on the key', () => {
    const a = publicHostLabel(key, SESSION_UID, 'http');
    expect(publicHostLabel(key, SESSION_UID, 'http')).toBe(a);
    expect(publicHostLabel(key, SESSION_UID, 'admin')).not.toBe(a);
    expect(publicHostLabel(key, 'another-uid', 'http')).not.toBe(a);
    expect(publicHostLabel(hostKey(Buffer.from('another key of 32 characters....')), SESSION_UID, 'http')).not.toBe(a);
    expect(a).toMatch(new RegExp(`^i[0-9a-f]{${PUBLIC_HOST_BITS / 4}}$`));
    expect(PUBLIC_HOST_BITS).toBeGreaterThanOrEqual(64);
    expect(publicHost(key, SESSION_UID, 'http', 'ctf.example')).toBe(`${a}.ctf.example`);
  });

  it('reveal nothing a player knows: no user, challenge or session name in them', () => {
    const s = session({ name: 's-0123456789abcdef-0', user: 'alice' });
    const host = publicHost(key, s.metadata.uid ?? '', 'http', 'ctf.example');
    for (const known of ['alice', 'web-notes', 's-0123456789abcdef-0', '0123456789abcdef']) expect(host).not.toContain(known);
  });
});

describe('desiredRoutes', () => {
  const host = (p: string) => `${p}.ctf.example`;

  it('gives an http port an HTTPRoute on the HTTP listener, to the Service, behind the auth filter', () => {
    const s = session();
    const routes = desiredRoutes(s, runtimeOf(webChallenge().spec), gw, host);
    expect(routes).toHaveLength(1);
    const r = routes[0];
    expect(r).toMatchObject({
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'HTTPRoute',
      metadata: { name: routeName(s.metadata.name, { name: 'http', port: 8080, protocol: 'http' }), labels: { [LABEL_SESSION]: s.metadata.name } },
      spec: {
        parentRefs: [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', namespace: 'ctf-gateway', name: 'ctf', sectionName: 'http' }],
        hostnames: ['http.ctf.example'],
        rules: [{ filters: [{ type: 'ExtensionRef', extensionRef: gw.authFilter }], backendRefs: [{ kind: 'Service', name: s.metadata.name, port: 8080 }] }],
      },
    });
    expect(r?.metadata.ownerReferences?.[0]).toMatchObject({ uid: s.metadata.uid, controller: true });
  });

  it('gives a tcp port a TLSRoute on the TLS listener', () => {
    const s = session({ challenge: 'pwn-echo' });
    const [r] = desiredRoutes(s, runtimeOf(pwnChallenge().spec), gw, host);
    expect(r).toMatchObject({ kind: 'TLSRoute', spec: { parentRefs: [{ sectionName: 'tls' }], hostnames: ['tcp-1337.ctf.example'], rules: [{ backendRefs: [{ port: 1337 }] }] } });
  });

  it('routes nothing, and names the port, where no listener is configured for its protocol', () => {
    const noTls = { ...gw, tlsListener: undefined };
    const runtime = runtimeOf(pwnChallenge().spec);
    expect(desiredRoutes(session(), runtime, noTls, host)).toEqual([]);
    expect(unroutablePorts(runtime, noTls)).toEqual(['tcp-1337 (tcp)']);
    expect(unroutablePorts(runtime, gw)).toEqual([]);
  });

  it('leaves the filter out when none is configured', () => {
    const [r] = desiredRoutes(session(), runtimeOf(webChallenge().spec), { ...gw, authFilter: undefined }, host);
    expect((r?.spec.rules as { filters?: unknown }[])[0]?.filters).toBeUndefined();
  });
});
