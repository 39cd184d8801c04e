import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { V1NetworkPolicy, V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { API_VERSION, CHALLENGE_KIND, CHALLENGE_PLURAL, GROUP, LABEL_SESSION, VERSION } from '../../src/api/group.js';
import type { Engine } from '../../src/engine.js';
import { createSession, getSession, installSamples, startTestEngine } from '../support/engine.js';
import { createNamespace, useCluster, waitUntil } from '../support/kube.js';
import { evaluate, type Endpoint, type PodEndpoint, type Traffic, type World } from '../support/netpol-eval.js';
import { readyReason } from './helpers.js';

/**
 * Least privilege and isolation, read back from the apiserver: session Pods pass Pod Security
 * "restricted" and carry no credentials, and the NetworkPolicies the engine wrote, evaluated by
 * test/support/netpol-eval.ts, allow exactly the traffic the README promises.
 */
const execFileP = promisify(execFile);
const cluster = useCluster(import.meta.filename);
const ENTRY_NS_LABEL = { key: 'reliability.challenge-engine.io/entry', value: 'gateway' };
const inHour = () => new Date(Date.now() + 3600_000);
let engine: Engine;
let gatewayNs: string;
let decoyNs: string;
const extraPods: { name: string; namespace: string }[] = [];

/** A Challenge whose egress allowlist is "everything on 443", plus entries that are wholly forbidden. */
const egressAnywhere = {
  apiVersion: API_VERSION,
  kind: CHALLENGE_KIND,
  metadata: { name: 'egress-anywhere' },
  spec: {
    title: 'Egress anywhere',
    category: 'misc',
    points: 1,
    containers: [
      { name: 'app', image: 'challenge-engine/egress:1.0', ports: [{ name: 'http', containerPort: 8080 }, { name: 'admin', containerPort: 9090 }], runAsUser: 4242 },
      { name: 'sidecar', image: 'challenge-engine/sidecar:1.0', readOnlyRootFilesystem: false },
    ],
    expose: [{ port: 8080, protocol: 'http' }],
    flag: { dynamic: {}, delivery: 'file', filePath: '/run/flag/flag' },
    network: {
      egress: [
        { cidr: '0.0.0.0/0', ports: [{ port: 443 }] },
        { cidr: '::/0', ports: [{ port: 443 }] },
        { cidr: '169.254.169.254/32' },
        { cidr: '10.0.0.0/8', ports: [{ port: 53, protocol: 'UDP' }] },
      ],
    },
  },
};

async function runPod(namespace: string, name: string, labels: Record<string, string>): Promise<void> {
  await cluster.kube.core.createNamespacedPod({ namespace, body: { metadata: { name, labels }, spec: { containers: [{ name: 'c', image: 'registry.invalid/pause:1' }] } } });
  extraPods.push({ name, namespace });
}

beforeAll(async () => {
  gatewayNs = await createNamespace(cluster.kube, 'isolation-gateway', { [ENTRY_NS_LABEL.key]: ENTRY_NS_LABEL.value });
  decoyNs = await createNamespace(cluster.kube, 'isolation-decoy');
  await installSamples(cluster.kube, cluster.namespace);
  await cluster.kubectl('create', 'secret', 'generic', 'crypto-baby-rsa-flag', '--from-literal=flag=CTF{static_flag_for_tests}');
  await cluster.kube.custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: cluster.namespace, plural: CHALLENGE_PLURAL, body: egressAnywhere });
  ({ engine } = await startTestEngine(cluster.kubeconfig, cluster.namespace, {
    CTF_ENTRY_NAMESPACE_SELECTOR: `${ENTRY_NS_LABEL.key}=${ENTRY_NS_LABEL.value}`,
    CTF_ENTRY_POD_SELECTOR: 'app=gateway',
  }));
  await runPod(gatewayNs, 'gateway', { app: 'gateway' });
  await runPod(gatewayNs, 'gateway-neighbour', { app: 'metrics' });
  await runPod(decoyNs, 'gateway-impostor', { app: 'gateway' });
  await runPod(decoyNs, 'dns-impostor', { 'k8s-app': 'kube-dns' });
  await runPod('kube-system', `reliability-kube-dns-${cluster.namespace.slice(-6)}`, { 'k8s-app': 'kube-dns' });
  const sessions: [string, string][] = [
    ['iso-a', 'egress-anywhere'],
    ['iso-b', 'web-notes'],
    ['iso-pwn', 'pwn-echo'],
    ['iso-sql', 'sql-two-tier'],
    ['iso-rsa', 'crypto-baby-rsa'],
  ];
  for (const [name, challenge] of sessions) await createSession(cluster.kube, cluster.namespace, name, challenge, `${name}-user`, inHour());
  await waitUntil('every session Running', async () => {
    for (const [name] of sessions) if ((await getSession(cluster.kube, cluster.namespace, name))?.status?.phase !== 'Running') return false;
    return true;
  }, 60_000, 250);
  await waitUntil('the helper pods Running with addresses', async () => {
    for (const p of extraPods) if (!(await cluster.kube.core.readNamespacedPod(p)).status?.podIP) return false;
    return true;
  }, 60_000, 250);
});

afterAll(async () => {
  await engine?.stop();
  for (const p of extraPods) await cluster.kube.core.deleteNamespacedPod({ ...p, gracePeriodSeconds: 0 }).catch(() => undefined);
  for (const ns of [gatewayNs, decoyNs]) if (ns) await cluster.kube.core.deleteNamespace({ name: ns }).catch(() => undefined);
});

async function sessionPods(): Promise<V1Pod[]> {
  return (await cluster.kube.core.listNamespacedPod({ namespace: cluster.namespace, labelSelector: LABEL_SESSION })).items;
}

/** A server-side dry run of `pod` (renamed, server fields dropped) in the sessions namespace; resolves with kubectl's warnings. */
async function dryRunCreate(pod: V1Pod, name: string): Promise<{ ok: boolean; stderr: string }> {
  const copy = { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: cluster.namespace, labels: pod.metadata?.labels }, spec: { ...pod.spec, nodeName: undefined } };
  const child = execFileP(inject('kubectl'), ['--kubeconfig', cluster.kubeconfig, 'create', '--dry-run=server', '-f', '-']);
  child.child.stdin?.end(JSON.stringify(copy));
  try {
    const { stderr } = await child;
    return { ok: true, stderr };
  } catch (err) {
    return { ok: false, stderr: String((err as { stderr?: string }).stderr ?? err) };
  }
}

describe('least privilege of session pods', () => {
  it('admits every session pod under Pod Security "restricted" without a warning, and rejects a root copy of one', async () => {
    const ns = await cluster.kube.core.readNamespace({ name: cluster.namespace });
    expect(ns.metadata?.labels).toMatchObject({ 'pod-security.kubernetes.io/enforce': 'restricted', 'pod-security.kubernetes.io/enforce-version': 'latest' });
    const pods = await sessionPods();
    expect(pods.map((p) => p.metadata?.name).sort()).toEqual(['iso-a', 'iso-b', 'iso-pwn', 'iso-rsa', 'iso-sql']);
    for (const pod of pods) {
      const r = await dryRunCreate(pod, `${pod.metadata?.name}-dry`);
      expect(r, pod.metadata?.name).toEqual({ ok: true, stderr: '' });
    }
    const first = pods[0] as V1Pod;
    const root = { ...first, spec: { ...first.spec, containers: first.spec?.containers.map((c) => ({ ...c, securityContext: { ...c.securityContext, runAsUser: 0, runAsNonRoot: false } })) ?? [] } };
    const rejected = await dryRunCreate(root, 'root-copy');
    expect(rejected.ok).toBe(false);
    expect(rejected.stderr).toMatch(/violates PodSecurity "restricted:latest"/);
  });

  it('mounts no service-account token and runs nothing as root or privileged, as read back from the apiserver', async () => {
    for (const pod of await sessionPods()) {
      const name = pod.metadata?.name;
      const spec = pod.spec;
      expect(spec?.automountServiceAccountToken, name).toBe(false);
      expect(spec?.volumes?.filter((v) => v.projected?.sources?.some((s) => s.serviceAccountToken) || v.hostPath) ?? [], name).toEqual([]);
      expect(spec?.hostNetwork || spec?.hostPID || spec?.hostIPC || false, name).toBe(false);
      expect(spec?.securityContext?.runAsNonRoot, name).toBe(true);
      expect(spec?.securityContext?.runAsUser, name).toBeGreaterThan(0);
      for (const c of [...(spec?.containers ?? []), ...(spec?.initContainers ?? [])]) {
        const where = `${name}/${c.name}`;
        expect(c.volumeMounts?.filter((m) => m.mountPath.startsWith('/var/run/secrets')) ?? [], where).toEqual([]);
        expect(c.securityContext?.runAsUser ?? spec?.securityContext?.runAsUser, where).toBeGreaterThan(0);
        expect(c.securityContext, where).toMatchObject({ runAsNonRoot: true, allowPrivilegeEscalation: false, privileged: false, capabilities: { drop: ['ALL'] } });
        expect(c.securityContext?.capabilities?.add ?? [], where).toEqual([]);
        expect(c.env?.filter((e) => /^KUBERNETES_/.test(e.name)) ?? [], where).toEqual([]);
      }
      expect(spec?.enableServiceLinks, name).toBe(false);
    }
  });
});

describe('network isolation, evaluated on the policies the apiserver stores', () => {
  let world: World;
  const ep: Record<string, Endpoint> = {};

  beforeAll(async () => {
    const policies: V1NetworkPolicy[] = [];
    const namespaces = [];
    for (const ns of [cluster.namespace, gatewayNs, decoyNs, 'kube-system']) {
      policies.push(...(await cluster.kube.net.listNamespacedNetworkPolicy({ namespace: ns })).items);
      const obj = await cluster.kube.core.readNamespace({ name: ns });
      namespaces.push({ name: ns, labels: obj.metadata?.labels ?? {} });
    }
    world = { policies, namespaces };
    const asEndpoint = (p: V1Pod): PodEndpoint => ({
      kind: 'pod',
      name: `${p.metadata?.namespace}/${p.metadata?.name}`,
      namespace: p.metadata?.namespace ?? '',
      labels: p.metadata?.labels ?? {},
      ip: p.status?.podIP ?? '',
      ports: p.spec?.containers.flatMap((c) => c.ports ?? []),
    });
    for (const p of await sessionPods()) ep[p.metadata?.name ?? ''] = asEndpoint(p);
    for (const x of extraPods) ep[x.name.startsWith('reliability-kube-dns') ? 'kube-dns' : x.name] = asEndpoint(await cluster.kube.core.readNamespacedPod(x));
    const kubernetesService = await cluster.kube.core.readNamespacedService({ name: 'kubernetes', namespace: 'default' });
    const apiserver = new URL(cluster.kube.kc.getCurrentCluster()?.server ?? 'https://127.0.0.1:6443');
    for (const [name, ip] of [
      ['metadata', '169.254.169.254'],
      ['metadata-v6', 'fd00:ec2::254'],
      ['outside', '203.0.113.10'],
      ['outside-v6', '2001:db8::10'],
      ['apiserver-service', kubernetesService.spec?.clusterIP ?? ''],
      ['apiserver', apiserver.hostname],
    ] as const) {
      ep[name] = { kind: 'external', name, ip };
    }
    ep.apiserverPort = { kind: 'external', name: 'port', ip: apiserver.port };
  });

  it('reports the wholly forbidden allowlist entries on the session', async () => {
    const a = await getSession(cluster.kube, cluster.namespace, 'iso-a');
    const provisioned = a?.status?.conditions?.find((c) => c.type === 'Provisioned');
    expect(provisioned).toMatchObject({ status: 'True', reason: 'EgressRestricted' });
    expect(provisioned?.message).toContain('169.254.169.254/32');
    expect(provisioned?.message).toContain('10.0.0.0/8');
    expect(a && readyReason(a)).toBe('Ready');
  });

  it('allows exactly the promised connections: ingress from the session and the entry point to exposed ports; egress to the session, DNS and the allowlist minus forbidden ranges', () => {
    const apiPort = Number(ep.apiserverPort?.ip ?? 6443);
    const tcp = (port: number): Traffic => ({ port, protocol: 'TCP' });
    const udp = (port: number): Traffic => ({ port, protocol: 'UDP' });
    // [from, to, traffic, allowed, why]
    const expected: [string, string, Traffic, boolean, string][] = [
      ['gateway', 'iso-a', tcp(8080), true, 'entry point to an exposed port'],
      ['gateway', 'iso-b', tcp(8080), true, 'entry point to an exposed port'],
      ['gateway', 'iso-a', tcp(9090), false, 'a port the challenge does not expose'],
      ['gateway', 'iso-sql', tcp(5432), false, 'the database of a two-tier challenge is not exposed'],
      ['gateway-impostor', 'iso-a', tcp(8080), false, 'entry-point labels in a namespace that is not the entry namespace'],
      ['gateway-neighbour', 'iso-a', tcp(8080), false, 'another pod of the entry namespace'],
      ['outside', 'iso-a', tcp(8080), false, 'no ingress from outside except through the entry point'],
      ['kube-dns', 'iso-a', tcp(8080), false, 'cluster pods other than the entry point'],
      ['iso-b', 'iso-a', tcp(8080), false, 'another session'],
      ['iso-a', 'iso-b', tcp(8080), false, 'another session'],
      ['iso-a', 'iso-b', tcp(443), false, 'another session, even on the allowlisted port of 0.0.0.0/0'],
      ['iso-a', 'iso-a', tcp(9090), true, 'the session itself, any port'],
      ['iso-a', 'kube-dns', udp(53), true, 'cluster DNS over UDP'],
      ['iso-a', 'kube-dns', tcp(53), true, 'cluster DNS over TCP'],
      ['iso-b', 'kube-dns', udp(53), true, 'cluster DNS for a session without an allowlist'],
      ['iso-a', 'kube-dns', tcp(80), false, 'DNS pods on another port'],
      ['iso-a', 'dns-impostor', udp(53), false, 'kube-dns labels outside kube-system'],
      ['iso-a', 'outside', tcp(443), true, 'the allowlist: 0.0.0.0/0 on 443'],
      ['iso-a', 'outside-v6', tcp(443), true, 'the allowlist: ::/0 on 443'],
      ['iso-a', 'outside', tcp(80), false, 'a port the allowlist does not name'],
      ['iso-b', 'outside', tcp(443), false, 'no allowlist, no egress'],
      ['iso-a', 'metadata', tcp(80), false, 'cloud metadata'],
      ['iso-a', 'metadata', tcp(443), false, 'cloud metadata, even on the allowlisted port'],
      ['iso-a', 'metadata-v6', tcp(443), false, 'IPv6 cloud metadata (fd00:ec2::254)'],
      ['iso-a', 'apiserver-service', tcp(443), false, 'the apiserver through its Service address'],
      ['iso-a', 'apiserver', tcp(apiPort), false, 'the apiserver itself'],
      ['iso-a', 'gateway', tcp(8080), false, 'back to the entry point (replies need no rule)'],
      ['iso-a', 'iso-pwn', tcp(1337), false, 'another session'],
    ];
    const table = expected.map(([from, to, traffic, allowed, why]) => {
      const f = ep[from];
      const t = ep[to];
      if (!f || !t) throw new Error(`no endpoint ${from} or ${to}`);
      const verdict = evaluate(world, f, t, traffic);
      return { from, to, traffic: `${traffic.protocol}/${traffic.port}`, expected: allowed, actual: verdict.allowed, why, by: [...verdict.egress.allowedBy, ...verdict.ingress.allowedBy].join(',') };
    });
    expect(table.filter((r) => r.expected !== r.actual)).toEqual([]);
    console.log(`[reliability] isolation: ${table.length} connections evaluated, all as expected (${table.filter((r) => r.actual).length} allowed)`);
  });

  it('would notice a policy that lost its forbidden ranges (control for the evaluation)', () => {
    const a = ep['iso-a'];
    const b = ep['iso-b'];
    const metadata = ep.metadata;
    if (!a || !b || !metadata) throw new Error('endpoints missing');
    const stripped: World = {
      ...world,
      policies: world.policies.map((p) => ({ ...p, spec: { ...p.spec, egress: p.spec?.egress?.map((r) => ({ ...r, to: r.to?.map((peer) => (peer.ipBlock ? { ipBlock: { cidr: peer.ipBlock.cidr } } : peer)) })) } })),
    };
    expect(evaluate(world, a, b, { port: 443 }).allowed).toBe(false);
    expect(evaluate(stripped, a, b, { port: 443 }).egress.allowed).toBe(true);
    expect(evaluate(stripped, a, metadata, { port: 443 }).allowed).toBe(true);
  });
});
