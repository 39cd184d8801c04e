import { describe, it, expect } from 'vitest';
import { LABEL_MANAGED_BY, LABEL_SESSION, MANAGED_BY } from '../../../src/api/group.js';
import {
  BASELINE_POLICY_NAME,
  DEFAULT_FORBIDDEN_CIDRS,
  DEFAULT_NETWORK_OPTIONS,
  allowlistRules,
  baselinePolicies,
  desiredSessionPolicy,
  type NetworkOptions,
} from '../../../src/reconcile/network-policy.js';
import { runtimeOf, type ChallengeRuntime } from '../../../src/reconcile/runtime.js';
import { NAMESPACE, SESSION_UID, session, webChallenge } from './fixtures.js';

const IPV4_FORBIDDEN = ['169.254.0.0/16', '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10', '127.0.0.0/8'];
const IPV6_FORBIDDEN = ['fc00::/7', 'fe80::/10', '::1/128'];

function egress(...rules: { cidr: string; ports?: { port: number; protocol: 'TCP' | 'UDP' }[] }[]): ChallengeRuntime['network']['egress'] {
  return rules;
}

describe('allowlistRules', () => {
  it.each([
    ['0.0.0.0/0 excepts every IPv4 forbidden range', '0.0.0.0/0', { cidr: '0.0.0.0/0', except: IPV4_FORBIDDEN }],
    ['::/0 excepts every IPv6 forbidden range', '::/0', { cidr: '::/0', except: IPV6_FORBIDDEN }],
    ['8.8.8.8/32 needs no except', '8.8.8.8/32', { cidr: '8.8.8.8/32' }],
    ['203.0.113.0/24 needs no except', '203.0.113.0/24', { cidr: '203.0.113.0/24' }],
    ['a /1 excepts only the ranges inside it', '0.0.0.0/1', { cidr: '0.0.0.0/1', except: ['10.0.0.0/8', '100.64.0.0/10', '127.0.0.0/8'] }],
    ['a public IPv6 range needs no except', '2001:4860::/32', { cidr: '2001:4860::/32' }],
    ['host bits are cleared', '8.8.8.8/24', { cidr: '8.8.8.0/24' }],
    ['IPv6 is written canonically', '2001:DB8:0:0::/48', { cidr: '2001:db8::/48' }],
  ])('%s', (_what, cidr, ipBlock) => {
    const { rules, droppedCidrs } = allowlistRules(egress({ cidr }), DEFAULT_FORBIDDEN_CIDRS);
    expect(droppedCidrs).toEqual([]);
    expect(rules).toEqual([{ to: [{ ipBlock }] }]);
  });

  it.each([
    ['cloud metadata', '169.254.169.254/32'],
    ['a private range inside 10/8', '10.1.0.0/16'],
    ['a forbidden range itself', '192.168.0.0/16'],
    ['CGNAT', '100.64.1.0/24'],
    ['loopback', '127.0.0.1/32'],
    ['AWS IPv6 metadata', 'fd00:ec2::254/128'],
    ['IPv6 link-local', 'fe80::/64'],
  ])('drops %s (%s) entirely', (_what, cidr) => {
    const { rules, droppedCidrs } = allowlistRules(egress({ cidr, ports: [{ port: 80, protocol: 'TCP' }] }), DEFAULT_FORBIDDEN_CIDRS);
    expect(rules).toEqual([]);
    expect(droppedCidrs).toEqual([cidr]);
  });

  it('keeps ports and reports each dropped entry while keeping the others', () => {
    const { rules, droppedCidrs } = allowlistRules(
      egress({ cidr: '8.8.8.8/32', ports: [{ port: 53, protocol: 'UDP' }] }, { cidr: '10.1.0.0/16' }, { cidr: '169.254.169.254/32' }),
      DEFAULT_FORBIDDEN_CIDRS,
    );
    expect(rules).toEqual([{ to: [{ ipBlock: { cidr: '8.8.8.8/32' } }], ports: [{ port: 53, protocol: 'UDP' }] }]);
    expect(droppedCidrs).toEqual(['10.1.0.0/16', '169.254.169.254/32']);
  });

  it('lists only the outermost of nested forbidden ranges, once', () => {
    const forbidden = ['10.0.0.0/8', '10.96.0.0/12', '10.0.0.0/8', '203.0.113.0/25'];
    const { rules } = allowlistRules(egress({ cidr: '0.0.0.0/0' }, { cidr: '203.0.113.0/24' }), forbidden);
    expect(rules.map((r) => r.to?.[0]?.ipBlock)).toEqual([
      { cidr: '0.0.0.0/0', except: ['10.0.0.0/8', '203.0.113.0/25'] },
      { cidr: '203.0.113.0/24', except: ['203.0.113.0/25'] },
    ]);
  });

  it('honours configured cluster ranges outside the private blocks', () => {
    const { rules, droppedCidrs } = allowlistRules(egress({ cidr: '198.51.100.0/24' }, { cidr: '198.51.100.7/32' }), [...DEFAULT_FORBIDDEN_CIDRS, '198.51.100.0/28']);
    expect(rules).toEqual([{ to: [{ ipBlock: { cidr: '198.51.100.0/24', except: ['198.51.100.0/28'] } }] }]);
    expect(droppedCidrs).toEqual(['198.51.100.7/32']);
  });
});

describe('desiredSessionPolicy', () => {
  const net: NetworkOptions = {
    ...DEFAULT_NETWORK_OPTIONS,
    entryPoint: { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'gateway' } }, podSelector: { matchLabels: { app: 'gateway' } } },
  };
  const self = { podSelector: { matchLabels: { [LABEL_SESSION]: 'web-notes-alice' } } };
  const runtime = runtimeOf(webChallenge().spec);

  it('isolates the session Pod in both directions', () => {
    const { policy, droppedCidrs } = desiredSessionPolicy(session(), runtime, net);
    expect(droppedCidrs).toEqual([]);
    expect(policy).toMatchObject({
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: { name: 'web-notes-alice', namespace: NAMESPACE, ownerReferences: [{ uid: SESSION_UID }] },
      spec: { podSelector: { matchLabels: { [LABEL_SESSION]: 'web-notes-alice' } }, policyTypes: ['Ingress', 'Egress'] },
    });
  });

  it('admits the session itself on any port and the entry point on exposed ports only', () => {
    const { policy } = desiredSessionPolicy(session(), runtime, net);
    expect(policy.spec?.ingress).toEqual([
      { _from: [self] },
      { _from: [{ namespaceSelector: net.entryPoint.namespaceSelector, podSelector: net.entryPoint.podSelector }], ports: [{ port: 8080, protocol: 'TCP' }] },
    ]);
  });

  it('admits nothing from outside when no entry point is configured', () => {
    const { policy } = desiredSessionPolicy(session(), runtime, DEFAULT_NETWORK_OPTIONS);
    expect(policy.spec?.ingress).toEqual([{ _from: [self] }]);
  });

  it('lets the session reach itself, cluster DNS and its allowlist', () => {
    const { policy } = desiredSessionPolicy(session(), runtime, net);
    expect(policy.spec?.egress).toEqual([
      { to: [self] },
      {
        to: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } }, podSelector: { matchLabels: { 'k8s-app': 'kube-dns' } } }],
        ports: [
          { port: 53, protocol: 'UDP' },
          { port: 53, protocol: 'TCP' },
        ],
      },
      { to: [{ ipBlock: { cidr: '203.0.113.0/24' } }], ports: [{ port: 443, protocol: 'TCP' }] },
    ]);
  });

  it('reports dropped allowlist entries', () => {
    const { policy, droppedCidrs } = desiredSessionPolicy(session(), { ...runtime, network: { egress: egress({ cidr: '169.254.169.254/32' }) } }, net);
    expect(droppedCidrs).toEqual(['169.254.169.254/32']);
    expect(policy.spec?.egress).toHaveLength(2);
  });
});

describe('baselinePolicies', () => {
  it('denies all traffic of the engine-managed Pods in the namespace', () => {
    expect(baselinePolicies('ctf')).toEqual([
      {
        apiVersion: 'networking.k8s.io/v1',
        kind: 'NetworkPolicy',
        metadata: { name: BASELINE_POLICY_NAME, namespace: 'ctf', labels: { [LABEL_MANAGED_BY]: MANAGED_BY } },
        spec: { podSelector: { matchLabels: { [LABEL_MANAGED_BY]: MANAGED_BY } }, policyTypes: ['Ingress', 'Egress'], ingress: [], egress: [] },
      },
    ]);
    expect(BASELINE_POLICY_NAME).toBe('challenge-engine-default-deny');
  });
});
