import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import type { V1ConfigMap, V1Deployment, V1EnvVar, V1NetworkPolicy, V1PodDisruptionBudget, V1Secret, V1Service } from '@kubernetes/client-node';
import { REPO_ROOT } from '../../scripts/lib/control-plane.js';
import { loadConfig } from '../../src/config.js';
import { LABEL_MANAGED_BY } from '../../src/api/group.js';
import { createMetrics } from '../../src/metrics.js';
import { baselinePolicies } from '../../src/reconcile/network-policy.js';
import { useCluster, waitUntil } from '../support/kube.js';

/**
 * The deployment manifests against the real apiserver: they render with kubectl's built-in
 * kustomize, every object passes a server-side dry run, and the engine Pod they describe is one
 * that Pod Security Admission "restricted" admits.
 */
const cluster = useCluster(import.meta.filename);
const NS = 'ctf';
const BASE = join(REPO_ROOT, 'manifests');
const MONITORING = join(BASE, 'monitoring');

interface Obj {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [field: string]: unknown;
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** kubectl with the run's admin kubeconfig; resolves with the exit code instead of throwing. */
function kubectl(args: string[], input?: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(inject('kubectl'), ['--kubeconfig', inject('kubeconfig'), ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(input ?? '');
  });
}

async function render(dir: string): Promise<{ text: string; objects: Obj[] }> {
  const r = await kubectl(['kustomize', dir]);
  if (r.code !== 0) throw new Error(`kubectl kustomize ${dir} failed: ${r.stderr}`);
  const objects = parseAllDocuments(r.stdout).map((d) => d.toJS() as Obj);
  return { text: r.stdout, objects };
}

function find<T>(objects: Obj[], kind: string, name?: string): T {
  const o = objects.find((x) => x.kind === kind && (name === undefined || x.metadata.name === name));
  if (!o) throw new Error(`no ${kind}${name ? ` ${name}` : ''} in the rendered manifests`);
  return o as T;
}

/** The environment a Pod of the Deployment would get: Secrets resolved from the rendered ones. */
function podEnv(env: V1EnvVar[], secrets: V1Secret[], podName: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of env) {
    const ref = e.valueFrom?.secretKeyRef;
    if (e.value !== undefined) out[e.name] = e.value;
    else if (ref) {
      const value = secrets.find((s) => s.metadata?.name === ref.name)?.stringData?.[ref.key];
      if (value === undefined) throw new Error(`${e.name}: no Secret ${ref.name} with key ${ref.key} in the manifests`);
      out[e.name] = value;
    } else if (e.valueFrom?.fieldRef?.fieldPath === 'metadata.name') out[e.name] = podName;
    else throw new Error(`${e.name}: unexpected source ${JSON.stringify(e.valueFrom)}`);
  }
  return out;
}

function matches(selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean {
  return selector !== undefined && Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

let base: { text: string; objects: Obj[] };
let createdNamespace = false;

beforeAll(async () => {
  base = await render(BASE);
  // Namespaced objects can only be dry-run into a namespace that exists. This file owns `ctf`
  // when it has to create it, and never deletes one it did not create.
  const exists = await cluster.kube.core.readNamespace({ name: NS }).then(
    () => true,
    () => false,
  );
  if (!exists) {
    await cluster.kube.core.createNamespace({ body: find(base.objects, 'Namespace', NS) });
    createdNamespace = true;
  }
});

afterAll(async () => {
  if (!createdNamespace) return;
  await cluster.kube.core.deleteNamespace({ name: NS });
  // Wait until it is gone, so the next file can create `ctf` again.
  await waitUntil(`namespace ${NS} deleted`, () => cluster.kube.core.readNamespace({ name: NS }).then(() => false, () => true), 60_000, 250);
});

describe('manifests/ (kustomize base)', () => {
  it('renders exactly the objects of a deployment, namespaced ones in ctf', () => {
    const ids = base.objects.map((o) => `${o.kind}/${o.metadata.name}`).sort();
    expect(ids).toEqual(
      [
        'ClusterRole/challenge-engine-namespace',
        'ClusterRoleBinding/challenge-engine-namespace',
        'CustomResourceDefinition/challenges.ctf.challenge-engine.io',
        'CustomResourceDefinition/challengesessions.ctf.challenge-engine.io',
        'Deployment/challenge-engine',
        'Namespace/ctf',
        'NetworkPolicy/challenge-engine',
        'PodDisruptionBudget/challenge-engine',
        'Role/challenge-engine',
        'RoleBinding/challenge-engine',
        'Secret/challenge-engine-flag-key',
        'Secret/challenge-engine-token',
        'Service/challenge-engine',
        'ServiceAccount/challenge-engine',
      ].sort(),
    );
    const clusterScoped = new Set(['Namespace', 'CustomResourceDefinition', 'ClusterRole', 'ClusterRoleBinding']);
    for (const o of base.objects) {
      expect(o.metadata.namespace, `${o.kind}/${o.metadata.name}`).toBe(clusterScoped.has(o.kind) ? undefined : NS);
    }
    expect(find<Obj>(base.objects, 'Namespace').metadata.labels).toMatchObject({ 'pod-security.kubernetes.io/enforce': 'restricted' });
  });

  it('ships the CRDs byte-identical to crds/', async () => {
    for (const file of ['challenges.yaml', 'challengesessions.yaml']) {
      const [copy, original] = await Promise.all([readFile(join(BASE, 'crds', file)), readFile(join(REPO_ROOT, 'crds', file))]);
      expect(copy.equals(original), `manifests/crds/${file} differs from crds/${file}; copy it again`).toBe(true);
    }
  });

  it('passes a server-side dry run of every object against the apiserver', async () => {
    const r = await kubectl(['apply', '--dry-run=server', '-f', '-'], base.text);
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    const accepted = r.stdout.split('\n').filter((l) => l.endsWith('(server dry run)'));
    expect(accepted).toHaveLength(base.objects.length);
    // The namespace enforces (and warns about) the restricted Pod Security level: a Deployment
    // whose template falls short would be reported here.
    expect(r.stderr).not.toContain('PodSecurity');
  });

  it('describes an engine Pod that Pod Security Admission "restricted" admits', async () => {
    const template = find<V1Deployment>(base.objects, 'Deployment').spec?.template;
    // Pod Security does not look at the ServiceAccount, but admission needs one that exists: the
    // dry run above created the engine's only on paper.
    await waitUntil('the default ServiceAccount', () => cluster.kube.core.readNamespacedServiceAccount({ name: 'default', namespace: NS }));
    const spec = { ...template?.spec, containers: template?.spec?.containers ?? [], serviceAccountName: 'default' };
    const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'engine-admission-check', namespace: NS, labels: template?.metadata?.labels }, spec };
    const admitted = await kubectl(['create', '--dry-run=server', '-o', 'name', '-f', '-'], JSON.stringify(pod));
    expect(admitted.stderr).toBe('');
    expect(admitted.stdout.trim()).toBe('pod/engine-admission-check');
    // The same Pod with privilege escalation allowed is refused: the check above has teeth.
    const weakened = structuredClone(pod);
    const container = weakened.spec?.containers[0];
    if (container?.securityContext) container.securityContext.allowPrivilegeEscalation = true;
    const refused = await kubectl(['create', '--dry-run=server', '-o', 'name', '-f', '-'], JSON.stringify(weakened));
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('violates PodSecurity "restricted');
  });

  it('runs two hardened replicas with probes on /healthz and /readyz and bounded resources', () => {
    const d = find<V1Deployment>(base.objects, 'Deployment');
    expect(d.spec?.replicas).toBe(2);
    const pod = d.spec?.template.spec;
    expect(pod?.serviceAccountName).toBe('challenge-engine');
    expect(pod?.automountServiceAccountToken).toBe(true);
    expect(pod?.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 65532, seccompProfile: { type: 'RuntimeDefault' } });
    expect(pod?.topologySpreadConstraints?.map((t) => t.topologyKey)).toContain('kubernetes.io/hostname');
    expect(pod?.containers).toHaveLength(1);
    const c = pod?.containers[0];
    const port = c?.ports?.find((p) => p.name === 'http');
    expect(port?.containerPort).toBe(8080);
    expect(c?.livenessProbe?.httpGet).toMatchObject({ path: '/healthz', port: 'http' });
    expect(c?.readinessProbe?.httpGet).toMatchObject({ path: '/readyz', port: 'http' });
    expect(Object.keys(c?.resources?.requests ?? {}).sort()).toEqual(['cpu', 'memory']);
    expect(Object.keys(c?.resources?.limits ?? {}).sort()).toEqual(['cpu', 'memory']);
    expect(c?.securityContext).toMatchObject({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(c?.securityContext?.capabilities?.add).toBeUndefined();
    // Every writable path is an emptyDir, and nothing mounts from the host.
    for (const v of pod?.volumes ?? []) expect(Object.keys(v).sort(), v.name).toEqual(['emptyDir', 'name']);
  });

  it('configures the engine validly once the two placeholder Secrets are replaced, and refuses them as shipped', () => {
    const d = find<V1Deployment>(base.objects, 'Deployment');
    const shipped = base.objects.filter((o) => o.kind === 'Secret') as V1Secret[];
    for (const s of shipped) for (const v of Object.values(s.stringData ?? {})) expect(v, s.metadata?.name).toMatch(/^CHANGE-ME-/);
    const container = d.spec?.template.spec?.containers[0];
    expect(() => loadConfig(podEnv(container?.env ?? [], shipped, 'challenge-engine-abc12-xyz'))).toThrow(
      /CTF_TOKEN_SECRET: holds a placeholder .*Secret challenge-engine-token, key token-secret/,
    );
    // The start error reaches the Pod's status: a termination message, else the end of the log.
    expect(container?.terminationMessagePolicy).toBe('FallbackToLogsOnError');

    const secrets = shipped.map((s) => ({ ...s, stringData: Object.fromEntries(Object.keys(s.stringData ?? {}).map((k) => [k, randomBytes(32).toString('hex')])) }));
    const env = podEnv(container?.env ?? [], secrets, 'challenge-engine-abc12-xyz');
    const config = loadConfig(env);
    expect(config.namespace).toBe(NS);
    expect(config.engineNamespace).toBe(NS);
    expect(config.flagKey).toEqual({ secretName: 'challenge-engine-flag-key', key: 'flag-key' });
    expect(config.identity).toBe('challenge-engine-abc12-xyz');
    expect(config.runApi && config.runController && config.leaderElection).toBe(true);
    expect(config.tokenSecret).toBe(secrets.find((s) => s.metadata?.name === 'challenge-engine-token')?.stringData?.['token-secret']);
    // The flag key Secret the engine reads must exist under that name and key.
    expect(secrets.find((s) => s.metadata?.name === 'challenge-engine-flag-key')?.stringData?.['flag-key']).toBeDefined();
  });

  it('keeps engine Pods out of the sessions default deny and selects them everywhere else', () => {
    const labels = find<V1Deployment>(base.objects, 'Deployment').spec?.template.metadata?.labels;
    expect(labels).toEqual({ 'app.kubernetes.io/name': 'challenge-engine', 'app.kubernetes.io/component': 'engine' });
    expect(labels?.[LABEL_MANAGED_BY]).toBeUndefined();
    const defaultDeny = baselinePolicies(NS)[0]?.spec?.podSelector?.matchLabels;
    expect(matches(defaultDeny, labels)).toBe(false);
    expect(matches(find<V1Deployment>(base.objects, 'Deployment').spec?.selector.matchLabels, labels)).toBe(true);
    expect(matches(find<V1Service>(base.objects, 'Service').spec?.selector, labels)).toBe(true);
    expect(matches(find<V1PodDisruptionBudget>(base.objects, 'PodDisruptionBudget').spec?.selector?.matchLabels, labels)).toBe(true);
    expect(matches(find<V1NetworkPolicy>(base.objects, 'NetworkPolicy').spec?.podSelector?.matchLabels, labels)).toBe(true);
    expect(find<V1PodDisruptionBudget>(base.objects, 'PodDisruptionBudget').spec?.minAvailable).toBe(1);
    expect(find<V1Service>(base.objects, 'Service').spec?.ports).toEqual([expect.objectContaining({ name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' })]);
  });

  it('lets anyone reach the API port and lets the engine reach only the apiserver and DNS', () => {
    const np = find<V1NetworkPolicy>(base.objects, 'NetworkPolicy').spec;
    expect(np?.policyTypes?.sort()).toEqual(['Egress', 'Ingress']);
    expect(np?.ingress).toEqual([{ ports: [{ port: 8080, protocol: 'TCP' }] }]);
    const egress = np?.egress ?? [];
    expect(egress).toHaveLength(2);
    expect(egress[0]?.ports?.map((p) => p.port).sort()).toEqual([443, 6443]);
    expect(egress[1]?.ports?.map((p) => `${p.port}/${p.protocol}`).sort()).toEqual(['53/TCP', '53/UDP']);
    expect(egress[1]?.to).toEqual([
      { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } }, podSelector: { matchLabels: { 'k8s-app': 'kube-dns' } } },
    ]);
  });
});

describe('manifests/monitoring (optional)', () => {
  let monitoring: { text: string; objects: Obj[] };
  beforeAll(async () => {
    monitoring = await render(MONITORING);
  });

  it('renders a ServiceMonitor for the engine Service and the dashboard ConfigMap', () => {
    expect(monitoring.objects.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual(['ConfigMap/challenge-engine-dashboard', 'ServiceMonitor/challenge-engine']);
    const sm = find<Obj & { spec: { selector: { matchLabels: Record<string, string> }; endpoints: { port: string; path: string }[] } }>(monitoring.objects, 'ServiceMonitor');
    expect(sm.apiVersion).toBe('monitoring.coreos.com/v1');
    expect(sm.metadata.namespace).toBe(NS);
    const service = find<V1Service>(base.objects, 'Service');
    expect(matches(sm.spec.selector.matchLabels, service.metadata?.labels)).toBe(true);
    expect(sm.spec.endpoints).toEqual([expect.objectContaining({ port: 'http', path: '/metrics' })]);
    expect(service.spec?.ports?.map((p) => p.name)).toContain(sm.spec.endpoints[0]?.port);
    // The base must apply on a bare cluster, so it carries no monitoring.coreos.com object.
    expect(base.objects.filter((o) => o.apiVersion.startsWith('monitoring.coreos.com/'))).toEqual([]);
  });

  it('passes a server-side dry run of the dashboard ConfigMap', async () => {
    const cm = find<V1ConfigMap>(monitoring.objects, 'ConfigMap');
    expect(cm.metadata?.labels).toMatchObject({ grafana_dashboard: '1' });
    const r = await kubectl(['apply', '--dry-run=server', '-o', 'name', '-f', '-'], JSON.stringify(cm));
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('configmap/challenge-engine-dashboard');
  });

  it('has a dashboard whose every query uses metrics the engine exports', async () => {
    const cm = find<V1ConfigMap>(monitoring.objects, 'ConfigMap');
    const file = await readFile(join(MONITORING, 'grafana-dashboard.json'), 'utf8');
    expect(cm.data?.['grafana-dashboard.json']).toBe(file);
    const dashboard = JSON.parse(file) as { uid: string; panels: { id: number; type: string; targets?: { expr: string }[] }[] };
    const exprs = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
    expect(exprs.length).toBeGreaterThan(20);
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);

    const exported = new Set<string>();
    for (const m of await createMetrics().registry.getMetricsAsJSON()) {
      exported.add(m.name);
      if (String(m.type) === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) exported.add(`${m.name}${suffix}`);
    }
    // Every metric in a query is written with a selector, e.g. workqueue_depth{namespace="$namespace"}.
    const used = new Set(exprs.flatMap((e) => [...e.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\{/g)].map((m) => m[1] ?? '')));
    expect([...used].filter((name) => !exported.has(name))).toEqual([]);
    for (const e of exprs) expect(e, 'every query is scoped to the selected namespace').toContain('namespace="$namespace"');
    for (const name of [
      'controller_runtime_reconcile_total',
      'controller_runtime_reconcile_errors_total',
      'controller_runtime_reconcile_time_seconds_bucket',
      'workqueue_depth',
      'workqueue_adds_total',
      'workqueue_retries_total',
      'workqueue_queue_duration_seconds_bucket',
      'workqueue_work_duration_seconds_bucket',
      'challenge_engine_sessions',
      'challenge_engine_spawn_to_ready_seconds_bucket',
      'challenge_engine_sessions_ended_total',
      'challenge_engine_flag_submissions_total',
      'challenge_engine_solves_total',
      'challenge_engine_flag_sharing_suspected_total',
      'challenge_engine_session_extensions_total',
      'http_request_duration_seconds_count',
      'http_request_duration_seconds_bucket',
      'leader_election_master_status',
      'process_cpu_seconds_total',
      'process_resident_memory_bytes',
    ]) {
      expect(used, name).toContain(name);
    }
  });
});
