import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { pino } from 'pino';
import { KubeConfig, type V1Deployment, type V1Secret } from '@kubernetes/client-node';
import { REPO_ROOT } from '../../scripts/lib/control-plane.js';
import { loadConfig } from '../../src/config.js';
import { CHALLENGE_PLURAL, GROUP, VERSION } from '../../src/api/group.js';
import { fromKubeConfig } from '../../src/kube/client.js';
import { startEngine, type Engine } from '../../src/engine.js';
import { createMetrics } from '../../src/metrics.js';
import { BASELINE_POLICY_NAME } from '../../src/reconcile/network-policy.js';
import { KubeSessionService } from '../../src/sessions/service.js';
import { loadSamples } from '../support/invalid-objects.js';
import { LogCapture } from '../support/engine.js';
import { useCluster, waitUntil } from '../support/kube.js';

/**
 * The engine's RBAC from manifests/, applied for real to namespace ctf: a matrix of what its
 * ServiceAccount may and may not do, the exact rule set the apiserver grants it, and the engine
 * itself running a player journey with nothing but those permissions.
 */
const cluster = useCluster(import.meta.filename);
const execFileP = promisify(execFile);
const NS = 'ctf';
const SA = `system:serviceaccount:${NS}:challenge-engine`;
const RBAC_KINDS = ['ServiceAccount', 'Role', 'RoleBinding', 'ClusterRole', 'ClusterRoleBinding'];

interface Obj {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  [field: string]: unknown;
}

let rendered: Obj[] = [];
let createdNamespace = false;
const createdClusterObjects: Obj[] = [];

function kubectlArgs(args: string[]): string[] {
  return ['--kubeconfig', inject('kubeconfig'), ...args];
}

/** kubectl with stdin; throws with stderr on a non-zero exit. */
function kubectlIn(args: string[], input: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(inject('kubectl'), kubectlArgs(args), { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(stdout) : reject(new Error(`kubectl ${args.join(' ')}: ${stderr}`))));
    child.stdin.end(input);
  });
}

/** `kubectl auth can-i` as the engine: 'yes' or 'no' (it exits 1 for no); anything else throws. */
async function canI(args: string[]): Promise<string> {
  const full = kubectlArgs(['auth', 'can-i', ...args, `--as=${SA}`]);
  try {
    const { stdout } = await execFileP(inject('kubectl'), full);
    return stdout.trim();
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    if (e.code === 1 && e.stdout?.trim() === 'no') return 'no';
    throw new Error(`kubectl auth can-i ${args.join(' ')} failed: ${e.stderr ?? String(err)}`);
  }
}

async function exists(kind: string, name: string): Promise<boolean> {
  try {
    await execFileP(inject('kubectl'), kubectlArgs(['get', kind, name, '-o', 'name']));
    return true;
  } catch {
    return false;
  }
}

beforeAll(async () => {
  const { stdout } = await execFileP(inject('kubectl'), ['kustomize', join(REPO_ROOT, 'manifests')], { maxBuffer: 16 << 20 });
  rendered = parseAllDocuments(stdout).map((d) => d.toJS() as Obj);
  // A bare namespace (no Pod Security labels), so the engine's own labelling is exercised below.
  // This file owns `ctf` only when it creates it.
  if (!(await exists('namespace', NS))) {
    await cluster.kube.core.createNamespace({ body: { metadata: { name: NS } } });
    createdNamespace = true;
  }
  for (const o of rendered.filter((x) => x.kind === 'ClusterRole' || x.kind === 'ClusterRoleBinding')) {
    if (!(await exists(o.kind.toLowerCase(), o.metadata.name))) createdClusterObjects.push(o);
  }
  const rbac = rendered.filter((o) => RBAC_KINDS.includes(o.kind));
  expect(rbac.map((o) => o.kind).sort()).toEqual([...RBAC_KINDS].sort());
  await kubectlIn(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: rbac }));
  // The RBAC authorizer reads from its own informer: wait until the new rules are in effect.
  await waitUntil('RBAC rules in effect', async () => (await canI(['patch', 'namespaces/ctf'])) === 'yes' && (await canI(['get', `challenges.${GROUP}`, '-n', NS])) === 'yes');
});

afterAll(async () => {
  for (const o of createdClusterObjects) {
    await execFileP(inject('kubectl'), kubectlArgs(['delete', o.kind.toLowerCase(), o.metadata.name, '--ignore-not-found'])).catch(() => undefined);
  }
  if (createdNamespace) {
    await cluster.kube.core.deleteNamespace({ name: NS });
    await waitUntil(`namespace ${NS} deleted`, () => cluster.kube.core.readNamespace({ name: NS }).then(() => false, () => true), 60_000, 250);
  }
});

/** verb, resource (with group), namespace ('*' for all, '' for cluster scope), subresource. */
type Check = [verb: string, resource: string, namespace: string, subresource?: string];

const CHALLENGES = `challenges.${GROUP}`;
const SESSIONS = `challengesessions.${GROUP}`;
const grants: [resource: string, verbs: string[], subresource?: string][] = [
  [CHALLENGES, ['get', 'list', 'watch']],
  [SESSIONS, ['get', 'list', 'watch', 'create', 'delete', 'patch']],
  [SESSIONS, ['patch'], 'status'],
  ['pods', ['get', 'list', 'watch', 'create', 'patch']],
  ['services', ['get', 'list', 'watch', 'create', 'patch']],
  ['secrets', ['get', 'list', 'watch', 'create', 'patch']],
  ['networkpolicies.networking.k8s.io', ['get', 'list', 'watch', 'create', 'patch']],
  ['httproutes.gateway.networking.k8s.io', ['get', 'list', 'watch', 'create', 'patch']],
  ['tlsroutes.gateway.networking.k8s.io', ['get', 'list', 'watch', 'create', 'patch']],
  ['events', ['create', 'patch']],
  // The solve webhook outbox (src/webhooks/outbox.ts).
  ['configmaps', ['list', 'create', 'patch', 'delete']],
  ['leases.coordination.k8s.io', ['get', 'create', 'update']],
];

const allowed: Check[] = [
  ...grants.flatMap(([resource, verbs, sub]) => verbs.map((verb): Check => [verb, resource, NS, sub])),
  ['get', 'namespaces/ctf', ''],
  ['patch', 'namespaces/ctf', ''],
];

const denied: Check[] = [
  // Nothing outside its namespace.
  ['get', 'secrets', 'default'],
  ['get', 'secrets', 'kube-system'],
  ['list', 'secrets', '*'],
  ['watch', 'secrets', '*'],
  ['list', 'pods', '*'],
  ['create', 'pods', 'default'],
  ['create', 'pods', 'kube-system'],
  ['patch', SESSIONS, 'default'],
  ['patch', SESSIONS, 'default', 'status'],
  ['update', 'leases.coordination.k8s.io', 'kube-system'],
  // No deletes of children (garbage collection removes them) and no other verbs on them.
  ['delete', 'pods', NS],
  ['delete', 'services', NS],
  ['delete', 'secrets', NS],
  ['delete', 'networkpolicies.networking.k8s.io', NS],
  ['delete', 'httproutes.gateway.networking.k8s.io', NS],
  ['update', 'tlsroutes.gateway.networking.k8s.io', NS],
  // Routes of the sessions namespace only; never the Gateway itself.
  ['create', 'httproutes.gateway.networking.k8s.io', 'default'],
  ['patch', 'gateways.gateway.networking.k8s.io', '*'],
  ['get', 'gateways.gateway.networking.k8s.io', '*'],
  ['deletecollection', 'pods', NS],
  ['update', 'pods', NS],
  ['update', 'secrets', NS],
  ['create', 'pods', NS, 'exec'],
  ['create', 'pods', NS, 'attach'],
  ['get', 'pods', NS, 'log'],
  ['create', 'serviceaccounts', NS, 'token'],
  // Challenges belong to organisers.
  ['create', CHALLENGES, NS],
  ['patch', CHALLENGES, NS],
  ['update', CHALLENGES, NS],
  ['delete', CHALLENGES, NS],
  ['update', SESSIONS, NS],
  ['update', SESSIONS, NS, 'status'],
  ['delete', 'leases.coordination.k8s.io', NS],
  ['list', 'leases.coordination.k8s.io', NS],
  // No RBAC, no privilege escalation, no impersonation.
  ['create', 'roles.rbac.authorization.k8s.io', NS],
  ['patch', 'roles.rbac.authorization.k8s.io', NS],
  ['create', 'rolebindings.rbac.authorization.k8s.io', NS],
  ['patch', 'rolebindings.rbac.authorization.k8s.io', NS],
  ['create', 'clusterroles.rbac.authorization.k8s.io', ''],
  ['patch', 'clusterroles.rbac.authorization.k8s.io', ''],
  ['create', 'clusterrolebindings.rbac.authorization.k8s.io', ''],
  ['patch', 'clusterrolebindings.rbac.authorization.k8s.io', ''],
  ['escalate', 'roles.rbac.authorization.k8s.io', NS],
  ['bind', 'roles.rbac.authorization.k8s.io', NS],
  ['escalate', 'clusterroles.rbac.authorization.k8s.io', ''],
  ['bind', 'clusterroles.rbac.authorization.k8s.io', ''],
  ['impersonate', 'users', ''],
  ['impersonate', 'groups', ''],
  ['impersonate', 'serviceaccounts', NS],
  // Its own namespace only, and only get and patch.
  ['patch', 'namespaces/default', ''],
  ['patch', 'namespaces/kube-system', ''],
  ['get', 'namespaces/kube-system', ''],
  ['list', 'namespaces', ''],
  ['create', 'namespaces', ''],
  ['update', 'namespaces/ctf', ''],
  ['delete', 'namespaces/ctf', ''],
  // Nothing else of the cluster.
  ['get', 'nodes', ''],
  ['create', 'customresourcedefinitions.apiextensions.k8s.io', ''],
  ['create', 'deployments.apps', NS],
  ['create', 'configmaps', 'default'],
  ['get', 'configmaps', 'kube-system'],
  ['update', 'configmaps', NS],
];

function args([verb, resource, namespace, sub]: Check): string[] {
  const scope = namespace === '*' ? ['--all-namespaces'] : namespace === '' ? [] : ['-n', namespace];
  return [verb, resource, ...scope, ...(sub ? [`--subresource=${sub}`] : [])];
}

const label = ([verb, resource, namespace, sub]: Check) => `${verb} ${resource}${sub ? `/${sub}` : ''} ${namespace === '*' ? 'in all namespaces' : namespace ? `in ${namespace}` : '(cluster)'}`;

describe('the engine ServiceAccount', () => {
  it.each(allowed.map((c) => [label(c), c] as const))('may %s', async (_label, check) => {
    expect(await canI(args(check))).toBe('yes');
  });

  it.each(denied.map((c) => [label(c), c] as const))('may not %s', async (_label, check) => {
    expect(await canI(args(check))).toBe('no');
  });

  it('may not touch this test file\'s own namespace either', async () => {
    for (const verb of ['get', 'create', 'patch']) expect(await canI([verb, 'secrets', '-n', cluster.namespace]), verb).toBe('no');
  });

  it('is granted exactly the listed rules and nothing else', async () => {
    const rules = async (namespace: string) => {
      const review = { apiVersion: 'authorization.k8s.io/v1', kind: 'SelfSubjectRulesReview', spec: { namespace } };
      const out = await kubectlIn(['create', '--validate=false', '-o', 'json', `--as=${SA}`, '-f', '-'], JSON.stringify(review));
      const status = (JSON.parse(out) as { status: { incomplete: boolean; resourceRules: { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] }[] } }).status;
      expect(status.incomplete).toBe(false);
      return status.resourceRules
        .flatMap((r) => r.apiGroups.flatMap((g) => r.resources.flatMap((res) => r.verbs.map((v) => `${v} ${res}${g ? `.${g}` : ''}${r.resourceNames ? `/${r.resourceNames.join(',')}` : ''}`))))
        // Every authenticated user may ask what it is allowed to do (system:basic-user).
        .filter((s) => !/ self\w+reviews\.(authorization|authentication)\.k8s\.io$/.test(s))
        .sort();
    };
    const clusterWide = ['get namespaces/ctf', 'patch namespaces/ctf'];
    const inNamespace = grants.flatMap(([resource, verbs, sub]) =>
      verbs.map((v) => {
        const [plural = '', ...group] = resource.split('.');
        return `${v} ${plural}${sub ? `/${sub}` : ''}${group.length ? `.${group.join('.')}` : ''}`;
      }),
    );
    expect(await rules(NS)).toEqual([...inNamespace, ...clusterWide].sort());
    expect(await rules('default')).toEqual(clusterWide);
  });
});

/** Fresh random values for the rendered Secrets, as an organiser sets before the first apply: the engine refuses the placeholders. */
function replacePlaceholders(): void {
  for (const s of rendered.filter((o) => o.kind === 'Secret') as V1Secret[]) {
    s.stringData = Object.fromEntries(Object.keys(s.stringData ?? {}).map((k) => [k, randomBytes(32).toString('hex')]));
  }
}

/** The container environment of the Deployment, Secrets resolved from the rendered manifests. */
function deploymentEnv(podName: string): Record<string, string> {
  const d = rendered.find((o) => o.kind === 'Deployment') as V1Deployment | undefined;
  const secrets = rendered.filter((o) => o.kind === 'Secret') as V1Secret[];
  const out: Record<string, string> = {};
  for (const e of d?.spec?.template.spec?.containers[0]?.env ?? []) {
    const ref = e.valueFrom?.secretKeyRef;
    if (e.value !== undefined) out[e.name] = e.value;
    else if (ref) out[e.name] = secrets.find((s) => s.metadata?.name === ref.name)?.stringData?.[ref.key] ?? '';
    else if (e.valueFrom?.fieldRef?.fieldPath === 'metadata.name') out[e.name] = podName;
  }
  return out;
}

/** A client authenticated with a token of the engine's ServiceAccount, as it would be in-cluster. */
async function engineKube() {
  const token = (await execFileP(inject('kubectl'), kubectlArgs(['create', 'token', 'challenge-engine', '-n', NS, '--duration=1h']))).stdout.trim();
  const admin = new KubeConfig();
  admin.loadFromFile(inject('kubeconfig'));
  const server = admin.getCurrentCluster();
  if (!server) throw new Error('the admin kubeconfig has no current cluster');
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ ...server, name: 'cluster' }],
    users: [{ name: 'challenge-engine', token }],
    contexts: [{ name: 'engine', cluster: 'cluster', user: 'challenge-engine', namespace: NS }],
    currentContext: 'engine',
  });
  return fromKubeConfig(kc);
}

describe('the engine running as that ServiceAccount', () => {
  let engine: Engine | undefined;
  const logs = new LogCapture();

  afterAll(async () => {
    await engine?.stop();
  });

  it('labels its namespace, leads, and serves a whole player journey without a Forbidden', async (ctx) => {
    // Never start a second controller in a `ctf` namespace this test did not create.
    if (!createdNamespace) ctx.skip();
    const admin = cluster.kube;
    // What an organiser provides: the Secrets, their placeholders replaced, and the Challenges.
    replacePlaceholders();
    const secrets = rendered.filter((o) => o.kind === 'Secret');
    await kubectlIn(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: secrets }));
    await admin.core.createNamespacedSecret({ namespace: NS, body: { metadata: { name: 'crypto-baby-rsa-flag' }, stringData: { flag: 'CTF{static_rbac}' } } });
    for (const { object } of loadSamples()) {
      const o = object as Obj;
      if (['web-notes', 'crypto-baby-rsa'].includes(o.metadata.name)) {
        await admin.custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NS, plural: CHALLENGE_PLURAL, body: o });
      }
    }

    const podName = 'challenge-engine-7d9f8-rbac1';
    const config = loadConfig({ ...deploymentEnv(podName), CTF_LEASE_SECONDS: '5' });
    const kube = await engineKube();
    const log = pino({ level: 'debug' }, logs.stream);
    const metrics = createMetrics();
    engine = await startEngine(config, log, { kube, metrics });
    await waitUntil('the engine to lead', () => engine?.leader?.isLeader() ?? false, 20_000);

    const lease = await admin.coord.readNamespacedLease({ name: config.leaseName, namespace: NS });
    expect(lease.spec?.holderIdentity).toBe(podName);
    const ns = await waitUntil('the namespace labelled for Pod Security', async () => {
      const n = await admin.core.readNamespace({ name: NS });
      return n.metadata?.labels?.['pod-security.kubernetes.io/enforce'] === 'restricted' ? n : undefined;
    });
    expect(ns.metadata?.labels?.['app.kubernetes.io/managed-by-psa']).toBe('challenge-engine');
    await waitUntil('the default-deny NetworkPolicy', () => admin.net.readNamespacedNetworkPolicy({ name: BASELINE_POLICY_NAME, namespace: NS }));

    const service = new KubeSessionService({ kube, caches: engine.caches, writer: engine.writer, log, metrics, flagKey: engine.flagKey, maxSessionsPerUser: config.maxSessionsPerUser });
    const alice = { user: 'rbac-alice', admin: false };
    const bob = { user: 'rbac-bob', admin: false };
    const dynamic = await service.spawn(alice, 'web-notes');
    expect(dynamic.created).toBe(true);
    await waitUntil('the session in the cache', () => engine?.caches.session(dynamic.session.id));
    const running = await service.waitReady(alice, dynamic.session.id, 30_000);
    expect(running.phase).toBe('Running');

    const secret = await admin.core.readNamespacedSecret({ name: `${dynamic.session.id}-flag`, namespace: NS });
    const flag = Buffer.from(secret.data?.flag ?? '', 'base64').toString('utf8');
    expect(flag).toMatch(/^CTF\{[a-z2-7]{32}\}$/);
    expect(await service.submitFlag(bob, { challenge: 'web-notes' }, flag)).toEqual({ correct: false });
    expect(await service.submitFlag(alice, { sessionId: dynamic.session.id }, flag)).toEqual({ correct: true });
    await waitUntil('the solve recorded', () => service.get(alice, dynamic.session.id).solved);
    const extended = await service.extend(alice, dynamic.session.id);
    expect(Date.parse(extended.expiresAt)).toBeGreaterThan(Date.parse(running.expiresAt));

    const fixed = await service.spawn(alice, 'crypto-baby-rsa');
    await waitUntil('the session in the cache', () => engine?.caches.session(fixed.session.id));
    expect((await service.waitReady(alice, fixed.session.id, 30_000)).phase).toBe('Running');
    expect(await service.submitFlag(alice, { sessionId: fixed.session.id }, 'CTF{static_rbac}')).toEqual({ correct: true });

    await service.stop(alice, dynamic.session.id);
    await service.stop(alice, fixed.session.id);
    await waitUntil('both sessions gone', async () => (await admin.custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NS, plural: 'challengesessions' }) as { items: unknown[] }).items.length === 0);

    // Events are written best-effort (failures are swallowed), so check that they exist.
    await waitUntil('the engine\u2019s Events', async () => {
      const events = await admin.core.listNamespacedEvent({ namespace: NS });
      const reasons = new Set(events.items.filter((e) => e.reportingComponent === 'challenge-engine').map((e) => e.reason));
      return ['Created', 'FlagShared'].every((r) => reasons.has(r));
    });

    const forbidden = logs.raw.filter((l) => /forbidden/i.test(l));
    expect(forbidden).toEqual([]);
    expect(logs.lines.filter((l) => Number(l.level) >= 50)).toEqual([]);
  });
});
