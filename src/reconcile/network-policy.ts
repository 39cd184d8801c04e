import type { V1LabelSelector, V1NetworkPolicy, V1NetworkPolicyEgressRule, V1NetworkPolicyIngressRule, V1NetworkPolicyPeer } from '@kubernetes/client-node';
import { LABEL_MANAGED_BY, MANAGED_BY } from '../api/group.js';
import { isUnclaimedPool } from '../api/session.js';
import { cidrContains, cidrStrictlyContains, formatCidr, parseCidr, type Cidr } from './cidr.js';
import { childMetadata, sessionSelector, type SessionMeta } from './labels.js';
import { childNames } from './names.js';
import type { ChallengeRuntime } from './runtime.js';

export interface NetworkOptions {
  /** Where players' traffic comes from (a gateway or ingress); no ingress from outside when both are absent. */
  entryPoint: { namespaceSelector?: V1LabelSelector; podSelector?: V1LabelSelector };
  /** The cluster DNS Pods, reachable on port 53 over UDP and TCP. */
  dnsSelector: { namespaceSelector: V1LabelSelector; podSelector: V1LabelSelector };
  /** Ranges no egress allowlist may reach: link-local (cloud metadata), private, CGNAT, loopback, plus the cluster's own ranges. */
  forbiddenCidrs: string[];
}

export const DEFAULT_FORBIDDEN_CIDRS: readonly string[] = Object.freeze([
  '169.254.0.0/16',
  '10.0.0.0/8',
  '172.16.0.0/12',
  '192.168.0.0/16',
  '100.64.0.0/10',
  '127.0.0.0/8',
  // fc00::/7 covers all unique-local addresses (fd00::/8 included), e.g. fd00:ec2::254 metadata.
  'fc00::/7',
  'fe80::/10',
  '::1/128',
]);

export const DEFAULT_NETWORK_OPTIONS: Readonly<NetworkOptions> = Object.freeze({
  entryPoint: {},
  dnsSelector: {
    namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } },
    podSelector: { matchLabels: { 'k8s-app': 'kube-dns' } },
  },
  forbiddenCidrs: [...DEFAULT_FORBIDDEN_CIDRS],
});

export const BASELINE_POLICY_NAME = 'challenge-engine-default-deny';

export interface SessionPolicy {
  policy: V1NetworkPolicy;
  /** Allowlist CIDRs left out because they lie inside a forbidden range (or do not parse). */
  droppedCidrs: string[];
}

/**
 * The session's NetworkPolicy. Ingress: the session's own Pods on any port, the entry point on
 * exposed ports only (not before a pool instance is claimed). Egress: the session's own Pods, cluster DNS, and the challenge's allowlist
 * with every forbidden range cut out, so no challenge can reach cloud metadata, the apiserver or
 * other sessions, whatever its author wrote.
 */
export function desiredSessionPolicy(session: SessionMeta, runtime: Pick<ChallengeRuntime, 'expose' | 'network'>, net: NetworkOptions): SessionPolicy {
  const self: V1NetworkPolicyPeer = { podSelector: { matchLabels: sessionSelector(session) } };
  // `_from` is the client model's name for `from` (a reserved word); its serializer writes `from`.
  const ingress: V1NetworkPolicyIngressRule[] = [{ _from: [self] }];
  // A warm pool instance takes no players' traffic until a spawn claims it.
  const entry = isUnclaimedPool(session) ? undefined : entryPeer(net.entryPoint);
  if (entry) ingress.push({ _from: [entry], ports: runtime.expose.map((e) => ({ port: e.port, protocol: 'TCP' })) });
  const dns: V1NetworkPolicyEgressRule = {
    to: [{ namespaceSelector: net.dnsSelector.namespaceSelector, podSelector: net.dnsSelector.podSelector }],
    ports: [
      { port: 53, protocol: 'UDP' },
      { port: 53, protocol: 'TCP' },
    ],
  };
  const { rules, droppedCidrs } = allowlistRules(runtime.network.egress, net.forbiddenCidrs);
  const policy: V1NetworkPolicy = {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: childMetadata(session, childNames(session.metadata.name).networkPolicy),
    spec: {
      podSelector: { matchLabels: sessionSelector(session) },
      policyTypes: ['Ingress', 'Egress'],
      ingress,
      egress: [{ to: [self] }, dns, ...rules],
    },
  };
  return { policy, droppedCidrs };
}

/** The entry point as a peer; undefined when unset, since an empty peer is invalid. */
function entryPeer(entry: NetworkOptions['entryPoint']): V1NetworkPolicyPeer | undefined {
  if (!entry.namespaceSelector && !entry.podSelector) return undefined;
  return {
    ...(entry.namespaceSelector ? { namespaceSelector: entry.namespaceSelector } : {}),
    ...(entry.podSelector ? { podSelector: entry.podSelector } : {}),
  };
}

/**
 * One ipBlock rule per allowlist entry. An entry inside (or equal to) a forbidden range is
 * dropped whole, since an ipBlock cannot except all of itself; forbidden ranges inside an entry
 * become its `except` list, keeping only the outermost so no entry is listed twice.
 */
export function allowlistRules(
  egress: ChallengeRuntime['network']['egress'],
  forbiddenCidrs: readonly string[],
): { rules: V1NetworkPolicyEgressRule[]; droppedCidrs: string[] } {
  const forbidden = forbiddenCidrs.map(parseCidr).filter((c): c is Cidr => c !== undefined);
  const rules: V1NetworkPolicyEgressRule[] = [];
  const droppedCidrs: string[] = [];
  for (const rule of egress) {
    const cidr = parseCidr(rule.cidr);
    if (!cidr || forbidden.some((f) => cidrContains(f, cidr))) {
      droppedCidrs.push(rule.cidr);
      continue;
    }
    const except = outermost(forbidden.filter((f) => cidrStrictlyContains(cidr, f))).map(formatCidr);
    rules.push({
      to: [{ ipBlock: { cidr: formatCidr(cidr), ...(except.length > 0 ? { except } : {}) } }],
      ...(rule.ports ? { ports: rule.ports.map((p) => ({ port: p.port, protocol: p.protocol })) } : {}),
    });
  }
  return { rules, droppedCidrs };
}

/** The ranges not inside another range of the list, deduplicated, in list order. */
function outermost(ranges: Cidr[]): Cidr[] {
  return ranges.filter((r, i) => !ranges.some((o, j) => j !== i && cidrContains(o, r) && (o.prefix < r.prefix || j < i)));
}

/**
 * Default deny for the sessions namespace. NetworkPolicies only add allowances, so this one
 * isolates a session Pod in the window before its own policy exists (the two are separate
 * writes). It selects the engine's managed-by label rather than every Pod so that a gateway or
 * the engine itself, if deployed in the same namespace, keeps its own traffic.
 */
export function baselinePolicies(namespace: string): V1NetworkPolicy[] {
  return [
    {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: { name: BASELINE_POLICY_NAME, namespace, labels: { [LABEL_MANAGED_BY]: MANAGED_BY } },
      spec: {
        podSelector: { matchLabels: { [LABEL_MANAGED_BY]: MANAGED_BY } },
        policyTypes: ['Ingress', 'Egress'],
        ingress: [],
        egress: [],
      },
    },
  ];
}
