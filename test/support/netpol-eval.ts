/**
 * A small, pure evaluator of Kubernetes NetworkPolicy (networking.k8s.io/v1) semantics, written
 * independently of the engine's own policy code so tests can ask "may A reach B on port P?" of
 * the policies an apiserver actually stores.
 *
 * Semantics (https://kubernetes.io/docs/concepts/services-networking/network-policies/):
 *  - A pod is isolated for a direction when at least one policy in its namespace selects it
 *    (spec.podSelector) and has that direction in its policyTypes; a pod no policy isolates is
 *    allowed everything in that direction.
 *  - Policies are additive: an isolated pod may send (receive) what any rule of any policy that
 *    selects it allows. A connection needs both the source's egress and the destination's ingress.
 *  - policyTypes, when absent, is Ingress, plus Egress when the policy has an egress section.
 *  - A rule with no peers allows every peer; a rule with no ports allows every port.
 *  - Peers: podSelector alone means pods of the policy's own namespace; namespaceSelector alone
 *    means every pod of the matching namespaces; both together means matching pods in matching
 *    namespaces; ipBlock matches addresses in `cidr` and in none of `except`. Selector peers never
 *    match addresses outside the cluster.
 *  - ipBlock is applied to pod addresses too. The documentation leaves this to the plugin; the
 *    permissive reading is the safe one for proving isolation (whatever it denies, every plugin denies).
 *  - Ports: protocol defaults to TCP; a missing port means every port of the protocol; endPort
 *    makes a range; a named port matches the destination pod's container port of that name.
 */

export interface LabelSelectorRequirement {
  key: string;
  /** In, NotIn, Exists or DoesNotExist; anything else is refused. */
  operator: string;
  values?: string[];
}

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: LabelSelectorRequirement[];
}

export interface PolicyPeer {
  podSelector?: LabelSelector;
  namespaceSelector?: LabelSelector;
  ipBlock?: { cidr: string; except?: string[] };
}

export interface PolicyPort {
  protocol?: string;
  port?: number | string;
  endPort?: number;
}

export interface NetworkPolicyLike {
  metadata?: { name?: string; namespace?: string };
  spec?: {
    podSelector?: LabelSelector;
    policyTypes?: string[];
    /** `_from` is how @kubernetes/client-node names `from` in its typed models. */
    ingress?: { from?: PolicyPeer[]; _from?: PolicyPeer[]; ports?: PolicyPort[] }[];
    egress?: { to?: PolicyPeer[]; ports?: PolicyPort[] }[];
  };
}

export interface NamespaceInfo {
  name: string;
  labels: Record<string, string>;
}

export interface PodEndpoint {
  kind: 'pod';
  name: string;
  namespace: string;
  labels: Record<string, string>;
  ip: string;
  ports?: { name?: string; containerPort: number; protocol?: string }[];
}

export interface ExternalEndpoint {
  kind: 'external';
  name: string;
  ip: string;
}

export type Endpoint = PodEndpoint | ExternalEndpoint;

export interface Traffic {
  port: number;
  protocol?: 'TCP' | 'UDP' | 'SCTP';
}

export interface World {
  policies: NetworkPolicyLike[];
  namespaces: NamespaceInfo[];
}

export interface DirectionVerdict {
  /** Whether any policy isolates the pod in this direction (always false for outside addresses). */
  isolated: boolean;
  allowed: boolean;
  /** Names of the policies with a rule that allows the traffic. */
  allowedBy: string[];
}

export interface Verdict {
  allowed: boolean;
  egress: DirectionVerdict;
  ingress: DirectionVerdict;
}

export function selectorMatches(selector: LabelSelector | undefined, labels: Record<string, string>): boolean {
  if (!selector) return true;
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const req of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, req.key);
    const value = labels[req.key];
    switch (req.operator) {
      case 'In':
        if (!has || !(req.values ?? []).includes(value ?? '')) return false;
        break;
      case 'NotIn':
        if (has && (req.values ?? []).includes(value ?? '')) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
      default:
        throw new Error(`unknown label selector operator ${req.operator}`);
    }
  }
  return true;
}

interface Ip {
  family: 4 | 6;
  value: bigint;
}

function parseIPv4(text: string): bigint | undefined {
  const parts = text.split('.');
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) return undefined;
  return parts.reduce((acc, p) => (acc << 8n) | BigInt(Number(p)), 0n);
}

function parseIPv6(text: string): bigint | undefined {
  let s = text.toLowerCase();
  const lastColon = s.lastIndexOf(':');
  if (s.slice(lastColon + 1).includes('.')) {
    const v4 = parseIPv4(s.slice(lastColon + 1));
    if (v4 === undefined) return undefined;
    s = `${s.slice(0, lastColon + 1)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const halves = s.split('::');
  if (halves.length > 2) return undefined;
  const head = halves[0] ? halves[0].split(':') : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(':') : [];
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  const groups = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill('0'), ...tail];
  if (groups.some((g) => !/^[0-9a-f]{1,4}$/.test(g))) return undefined;
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

export function parseIp(text: string): Ip | undefined {
  const v4 = parseIPv4(text);
  if (v4 !== undefined) return { family: 4, value: v4 };
  const v6 = text.includes(':') ? parseIPv6(text) : undefined;
  return v6 === undefined ? undefined : { family: 6, value: v6 };
}

/** True when `ip` lies in `cidr`; false for a malformed CIDR or another address family. */
export function cidrContainsIp(cidr: string, ip: string): boolean {
  const [base = '', bits = ''] = cidr.split('/');
  const net = parseIp(base);
  const addr = parseIp(ip);
  if (!net || !addr || net.family !== addr.family || !/^\d{1,3}$/.test(bits)) return false;
  const width = net.family === 4 ? 32 : 128;
  const prefix = Number(bits);
  if (prefix > width) return false;
  const shift = BigInt(width - prefix);
  return net.value >> shift === addr.value >> shift;
}

function namespaceLabels(world: World, name: string): Record<string, string> | undefined {
  return world.namespaces.find((n) => n.name === name)?.labels;
}

function peerMatches(world: World, peer: PolicyPeer, policyNamespace: string, endpoint: Endpoint): boolean {
  if (peer.ipBlock) {
    if (!cidrContainsIp(peer.ipBlock.cidr, endpoint.ip)) return false;
    return !(peer.ipBlock.except ?? []).some((e) => cidrContainsIp(e, endpoint.ip));
  }
  if (!peer.podSelector && !peer.namespaceSelector) throw new Error('a NetworkPolicy peer needs podSelector, namespaceSelector or ipBlock');
  if (endpoint.kind !== 'pod') return false;
  if (peer.namespaceSelector) {
    const labels = namespaceLabels(world, endpoint.namespace);
    if (!labels || !selectorMatches(peer.namespaceSelector, labels)) return false;
  } else if (endpoint.namespace !== policyNamespace) {
    return false;
  }
  return !peer.podSelector || selectorMatches(peer.podSelector, endpoint.labels);
}

function portMatches(p: PolicyPort, traffic: Traffic, destination: Endpoint): boolean {
  const protocol = traffic.protocol ?? 'TCP';
  if ((p.protocol ?? 'TCP') !== protocol) return false;
  if (p.port === undefined) return true;
  if (typeof p.port === 'string' && !/^\d+$/.test(p.port)) {
    if (destination.kind !== 'pod') return false;
    return (destination.ports ?? []).some((cp) => cp.name === p.port && cp.containerPort === traffic.port && (cp.protocol ?? 'TCP') === protocol);
  }
  const start = Number(p.port);
  const end = p.endPort ?? start;
  return traffic.port >= start && traffic.port <= end;
}

function ruleMatches(world: World, peers: PolicyPeer[] | undefined, ports: PolicyPort[] | undefined, policyNamespace: string, peer: Endpoint, destination: Endpoint, traffic: Traffic): boolean {
  const peerOk = !peers || peers.length === 0 || peers.some((p) => peerMatches(world, p, policyNamespace, peer));
  const portOk = !ports || ports.length === 0 || ports.some((p) => portMatches(p, traffic, destination));
  return peerOk && portOk;
}

function policyTypes(policy: NetworkPolicyLike): string[] {
  if (policy.spec?.policyTypes && policy.spec.policyTypes.length > 0) return policy.spec.policyTypes;
  return policy.spec?.egress !== undefined ? ['Ingress', 'Egress'] : ['Ingress'];
}

function selecting(world: World, pod: PodEndpoint, direction: 'Ingress' | 'Egress'): NetworkPolicyLike[] {
  return world.policies.filter(
    (p) => (p.metadata?.namespace ?? '') === pod.namespace && selectorMatches(p.spec?.podSelector ?? {}, pod.labels) && policyTypes(p).includes(direction),
  );
}

function egressOf(world: World, from: Endpoint, to: Endpoint, traffic: Traffic): DirectionVerdict {
  if (from.kind !== 'pod') return { isolated: false, allowed: true, allowedBy: [] };
  const policies = selecting(world, from, 'Egress');
  if (policies.length === 0) return { isolated: false, allowed: true, allowedBy: [] };
  const allowedBy = policies
    .filter((p) => (p.spec?.egress ?? []).some((r) => ruleMatches(world, r.to, r.ports, from.namespace, to, to, traffic)))
    .map((p) => p.metadata?.name ?? '');
  return { isolated: true, allowed: allowedBy.length > 0, allowedBy };
}

function ingressOf(world: World, from: Endpoint, to: Endpoint, traffic: Traffic): DirectionVerdict {
  if (to.kind !== 'pod') return { isolated: false, allowed: true, allowedBy: [] };
  const policies = selecting(world, to, 'Ingress');
  if (policies.length === 0) return { isolated: false, allowed: true, allowedBy: [] };
  const allowedBy = policies
    .filter((p) => (p.spec?.ingress ?? []).some((r) => ruleMatches(world, r.from ?? r._from, r.ports, to.namespace, from, to, traffic)))
    .map((p) => p.metadata?.name ?? '');
  return { isolated: true, allowed: allowedBy.length > 0, allowedBy };
}

/** Whether `from` may open a connection to `to` on the given port under the policies of `world`. */
export function evaluate(world: World, from: Endpoint, to: Endpoint, traffic: Traffic): Verdict {
  const egress = egressOf(world, from, to, traffic);
  const ingress = ingressOf(world, from, to, traffic);
  return { allowed: egress.allowed && ingress.allowed, egress, ingress };
}
