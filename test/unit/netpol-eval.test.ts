import { describe, expect, it } from 'vitest';
import { cidrContainsIp, evaluate, parseIp, selectorMatches, type Endpoint, type NamespaceInfo, type NetworkPolicyLike, type PodEndpoint, type World } from '../support/netpol-eval.js';

const pod = (name: string, namespace: string, labels: Record<string, string>, ip: string, ports: PodEndpoint['ports'] = []): PodEndpoint => ({ kind: 'pod', name, namespace, labels, ip, ports });
const outside = (ip: string): Endpoint => ({ kind: 'external', name: ip, ip });

const web = pod('web', 'app', { role: 'web' }, '10.1.0.1', [{ name: 'http', containerPort: 8080 }]);
const db = pod('db', 'app', { role: 'db' }, '10.1.0.2', [{ name: 'pg', containerPort: 5432 }]);
const probe = pod('probe', 'monitoring', { role: 'probe' }, '10.2.0.1');
const stray = pod('stray', 'other', { role: 'web' }, '10.3.0.1');
const namespaces: NamespaceInfo[] = [
  { name: 'app', labels: { 'kubernetes.io/metadata.name': 'app', team: 'a' } },
  { name: 'monitoring', labels: { 'kubernetes.io/metadata.name': 'monitoring', purpose: 'monitoring' } },
  { name: 'other', labels: { 'kubernetes.io/metadata.name': 'other' } },
];

function world(...policies: NetworkPolicyLike[]): World {
  return { policies, namespaces };
}

function policy(name: string, namespace: string, spec: NetworkPolicyLike['spec']): NetworkPolicyLike {
  return { metadata: { name, namespace }, spec };
}

describe('selectorMatches', () => {
  const labels = { app: 'x', tier: 'web' };
  it.each([
    ['empty selector', {}, true],
    ['matching matchLabels', { matchLabels: { app: 'x' } }, true],
    ['mismatching matchLabels', { matchLabels: { app: 'y' } }, false],
    ['In', { matchExpressions: [{ key: 'tier', operator: 'In', values: ['web', 'api'] }] }, true],
    ['In without the key', { matchExpressions: [{ key: 'zone', operator: 'In', values: ['a'] }] }, false],
    ['NotIn', { matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['web'] }] }, false],
    ['NotIn without the key', { matchExpressions: [{ key: 'zone', operator: 'NotIn', values: ['a'] }] }, true],
    ['Exists', { matchExpressions: [{ key: 'app', operator: 'Exists' }] }, true],
    ['DoesNotExist', { matchExpressions: [{ key: 'app', operator: 'DoesNotExist' }] }, false],
    ['labels and expressions are ANDed', { matchLabels: { app: 'x' }, matchExpressions: [{ key: 'tier', operator: 'In', values: ['db'] }] }, false],
  ])('%s', (_name, selector, expected) => {
    expect(selectorMatches(selector, labels)).toBe(expected);
  });

  it('rejects an unknown operator instead of guessing', () => {
    expect(() => selectorMatches({ matchExpressions: [{ key: 'a', operator: 'Gt' }] }, {})).toThrow(/unknown/);
  });
});

describe('addresses and CIDRs', () => {
  it.each([
    ['10.0.0.0/8', '10.255.1.2', true],
    ['10.0.0.0/8', '11.0.0.1', false],
    ['0.0.0.0/0', '203.0.113.10', true],
    ['169.254.169.254/32', '169.254.169.254', true],
    ['169.254.169.254/32', '169.254.169.253', false],
    ['fd00::/8', 'fd00:ec2::254', true],
    ['fc00::/7', 'fd00:ec2::254', true],
    ['fe80::/10', 'fd00::1', false],
    ['::/0', '10.0.0.1', false],
    ['0.0.0.0/0', '::1', false],
    ['::ffff:0:0/96', '::ffff:10.0.0.1', true],
    ['10.0.0.0/33', '10.0.0.1', false],
    ['not-a-cidr', '10.0.0.1', false],
  ])('%s contains %s: %s', (cidr, ip, expected) => {
    expect(cidrContainsIp(cidr, ip)).toBe(expected);
  });

  it('parses only well-formed addresses', () => {
    expect(parseIp('256.0.0.1')).toBeUndefined();
    expect(parseIp('1:2:3:4:5:6:7:8:9')).toBeUndefined();
    expect(parseIp('1::2::3')).toBeUndefined();
    expect(parseIp('::')).toEqual({ family: 6, value: 0n });
  });
});

describe('evaluate', () => {
  it('allows everything when no policy selects either side', () => {
    const v = evaluate(world(), web, db, { port: 5432 });
    expect(v).toMatchObject({ allowed: true, egress: { isolated: false }, ingress: { isolated: false } });
  });

  it('denies everything to a pod selected by a policy without ingress rules, in that direction only', () => {
    const w = world(policy('deny-in', 'app', { podSelector: { matchLabels: { role: 'db' } }, policyTypes: ['Ingress'] }));
    expect(evaluate(w, web, db, { port: 5432 })).toMatchObject({ allowed: false, ingress: { isolated: true } });
    expect(evaluate(w, db, web, { port: 8080 }).allowed).toBe(true);
  });

  it('defaults policyTypes to Ingress, plus Egress when an egress section exists', () => {
    const ingressOnly = world(policy('p', 'app', { podSelector: {}, ingress: [] }));
    expect(evaluate(ingressOnly, web, outside('203.0.113.1'), { port: 443 }).allowed).toBe(true);
    const both = world(policy('p', 'app', { podSelector: {}, egress: [] }));
    expect(evaluate(both, web, outside('203.0.113.1'), { port: 443 }).allowed).toBe(false);
    expect(evaluate(both, probe, web, { port: 8080 }).allowed).toBe(false);
  });

  it('reads a podSelector peer as pods of the policy namespace only', () => {
    const w = world(policy('from-web', 'app', { podSelector: { matchLabels: { role: 'db' } }, policyTypes: ['Ingress'], ingress: [{ from: [{ podSelector: { matchLabels: { role: 'web' } } }] }] }));
    expect(evaluate(w, web, db, { port: 5432 }).allowed).toBe(true);
    expect(evaluate(w, stray, db, { port: 5432 }).allowed).toBe(false);
  });

  it('reads namespaceSelector alone as every pod there, and both selectors as their intersection', () => {
    const nsOnly = world(policy('p', 'app', { podSelector: {}, policyTypes: ['Ingress'], ingress: [{ from: [{ namespaceSelector: { matchLabels: { purpose: 'monitoring' } } }] }] }));
    expect(evaluate(nsOnly, probe, web, { port: 8080 }).allowed).toBe(true);
    expect(evaluate(nsOnly, stray, web, { port: 8080 }).allowed).toBe(false);
    const both = world(
      policy('p', 'app', { podSelector: {}, policyTypes: ['Ingress'], ingress: [{ from: [{ namespaceSelector: {}, podSelector: { matchLabels: { role: 'probe' } } }] }] }),
    );
    expect(evaluate(both, probe, web, { port: 8080 }).allowed).toBe(true);
    expect(evaluate(both, stray, web, { port: 8080 }).allowed).toBe(false);
    // selector peers never match addresses outside the cluster
    expect(evaluate(both, outside('203.0.113.1'), web, { port: 8080 }).allowed).toBe(false);
  });

  it('accepts the typed client model (_from) as well as plain JSON (from)', () => {
    const w = world(policy('p', 'app', { podSelector: {}, policyTypes: ['Ingress'], ingress: [{ _from: [{ podSelector: { matchLabels: { role: 'web' } } }] }] }));
    expect(evaluate(w, web, db, { port: 5432 }).allowed).toBe(true);
    expect(evaluate(w, probe, db, { port: 5432 }).allowed).toBe(false);
  });

  it('matches ipBlocks with their except ranges, for outside addresses and pods alike', () => {
    const w = world(
      policy('p', 'app', {
        podSelector: { matchLabels: { role: 'web' } },
        policyTypes: ['Egress'],
        egress: [{ to: [{ ipBlock: { cidr: '0.0.0.0/0', except: ['10.0.0.0/8', '169.254.0.0/16'] } }], ports: [{ port: 443 }] }],
      }),
    );
    expect(evaluate(w, web, outside('203.0.113.10'), { port: 443 }).allowed).toBe(true);
    expect(evaluate(w, web, outside('203.0.113.10'), { port: 80 }).allowed).toBe(false);
    expect(evaluate(w, web, outside('169.254.169.254'), { port: 443 }).allowed).toBe(false);
    expect(evaluate(w, web, db, { port: 443 }).allowed).toBe(false);
    expect(evaluate(w, web, outside('2001:db8::1'), { port: 443 }).allowed).toBe(false);
  });

  it('matches ports by protocol, range and name', () => {
    const w = world(
      policy('p', 'app', {
        podSelector: {},
        policyTypes: ['Ingress'],
        ingress: [{ ports: [{ port: 53, protocol: 'UDP' }, { port: 9000, endPort: 9010 }, { port: 'pg' }] }],
      }),
    );
    expect(evaluate(w, probe, web, { port: 53, protocol: 'UDP' }).allowed).toBe(true);
    expect(evaluate(w, probe, web, { port: 53 }).allowed).toBe(false);
    expect(evaluate(w, probe, web, { port: 9005 }).allowed).toBe(true);
    expect(evaluate(w, probe, web, { port: 9011 }).allowed).toBe(false);
    expect(evaluate(w, probe, db, { port: 5432 }).allowed).toBe(true);
    expect(evaluate(w, probe, web, { port: 5432 }).allowed).toBe(false);
  });

  it('takes the union of all policies selecting a pod, and needs both egress and ingress', () => {
    const denyAll = policy('deny', 'app', { podSelector: {}, policyTypes: ['Ingress', 'Egress'], ingress: [], egress: [] });
    const webOut = policy('web-out', 'app', { podSelector: { matchLabels: { role: 'web' } }, policyTypes: ['Egress'], egress: [{ to: [{ podSelector: { matchLabels: { role: 'db' } } }] }] });
    const dbIn = policy('db-in', 'app', { podSelector: { matchLabels: { role: 'db' } }, policyTypes: ['Ingress'], ingress: [{ from: [{ podSelector: { matchLabels: { role: 'web' } } }] }] });
    expect(evaluate(world(denyAll, webOut), web, db, { port: 5432 })).toMatchObject({ allowed: false, egress: { allowed: true, allowedBy: ['web-out'] }, ingress: { allowed: false } });
    expect(evaluate(world(denyAll, webOut, dbIn), web, db, { port: 5432 })).toMatchObject({ allowed: true, ingress: { allowedBy: ['db-in'] } });
    expect(evaluate(world(denyAll, webOut, dbIn), db, web, { port: 8080 }).allowed).toBe(false);
  });

  it('ignores policies of other namespaces', () => {
    const w = world(policy('deny', 'other', { podSelector: {}, policyTypes: ['Ingress', 'Egress'] }));
    expect(evaluate(w, web, db, { port: 5432 }).allowed).toBe(true);
    expect(evaluate(w, web, stray, { port: 8080 }).allowed).toBe(false);
  });

  it('refuses an empty peer, which the apiserver would reject', () => {
    const w = world(policy('p', 'app', { podSelector: {}, policyTypes: ['Ingress'], ingress: [{ from: [{}] }] }));
    expect(() => evaluate(w, probe, web, { port: 8080 })).toThrow(/peer/);
  });
});
