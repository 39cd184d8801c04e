import { execFile } from 'node:child_process';
import { mkdtemp, readFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import type { V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createTokenIssuer } from '../../src/http/auth.js';
import { createKube, type Kube } from '../../src/kube/client.js';
import { REPO_ROOT } from '../../scripts/lib/control-plane.js';
import { deployLocal, ENGINE_DEPLOYMENT, ENGINE_NAMESPACE, LOCAL_API_HOST, type DeployTarget, type Deployment } from '../../scripts/lib/deploy.js';
import type { GatewayState } from '../../scripts/lib/gateway.js';
import { podContainerLog, type RealNodeState } from '../../scripts/lib/real-node.js';
import { waitUntil } from '../support/kube.js';

/**
 * The engine as organisers run it: its own image (built without Docker) deployed from
 * manifests/ through overlays/local with `kubectl apply -k`, two replicas on the real node, the
 * player API and the instances behind the real gateway. Everything here goes through the
 * deployed engine's Service and the gateway; nothing runs an engine in the test process.
 */
const run = promisify(execFile);
const NS = ENGINE_NAMESPACE;
const node: RealNodeState = inject('realNode');
const gw = node.gateway as GatewayState;
const kubeconfig = inject('kubeconfig');
const kubectlBin = inject('kubectl');
const SELECTOR = 'app.kubernetes.io/name=challenge-engine,app.kubernetes.io/component=engine';
let target: DeployTarget;
let deployment: Deployment;
let kube: Kube;
let auth: (user: string, team?: string) => Promise<Record<string, string>>;
const timings: Record<string, number> = {};

async function kubectl(args: string[], input?: string): Promise<string> {
  const p = run(kubectlBin, ['--kubeconfig', kubeconfig, ...args], { maxBuffer: 16 << 20 });
  if (input !== undefined) p.child.stdin?.end(input);
  return (await p).stdout;
}

interface Answer { status: number; body: string; headers: Record<string, string | string[] | undefined> }

/** One HTTP request to the gateway's HTTP listener for `host`, as a client on this machine sends it. */
function viaGateway(method: string, host: string, path: string, opts: { headers?: Record<string, string>; body?: unknown } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const payload = opts.body === undefined ? undefined : JSON.stringify(opts.body);
    const headers: Record<string, string> = { host: `${host}:${gw.httpPort}`, ...opts.headers };
    if (payload !== undefined) headers['content-type'] = 'application/json';
    const req = request({ host: gw.address, port: gw.httpPort, method, path, headers, timeout: 40_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${host}${path}: timeout`)));
    req.on('error', reject);
    req.end(payload);
  });
}

const api = (method: string, path: string, headers: Record<string, string>, body?: unknown) => viaGateway(method, LOCAL_API_HOST, path, { headers, body });

interface View { id: string; phase: string; ready: boolean; solved: boolean; endpoints: { name: string; protocol: string; url?: string; externalHost?: string }[] }

async function enginePods(): Promise<V1Pod[]> {
  return (await kube.core.listNamespacedPod({ namespace: NS, labelSelector: SELECTOR })).items.filter((p) => !p.metadata?.deletionTimestamp);
}

const isReady = (p: V1Pod) => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;

async function leaseHolder(): Promise<string | undefined> {
  const lease = await kube.coord.readNamespacedLease({ name: 'challenge-engine-controller', namespace: NS });
  return lease.spec?.holderIdentity ?? undefined;
}

/** Spawns through the gateway and waits (long polls) until the session is ready. */
async function spawnReady(user: string, challenge: string): Promise<View> {
  const h = await auth(user);
  const res = await api('POST', '/api/challenges', h, { challenge });
  expect([200, 201], res.body).toContain(res.status);
  const id = (JSON.parse(res.body) as { session: View }).session.id;
  return waitUntil(`${challenge} of ${user} ready`, async () => {
    const r = await api('GET', `/api/sessions/${id}?wait=20`, h);
    if (r.status !== 200) return undefined;
    const v = (JSON.parse(r.body) as { session: View }).session;
    return v.ready ? v : undefined;
  }, 120_000, 100);
}

/** The session's Pods (by its label), to show there is exactly one of each. */
async function childPods(sessionId: string): Promise<string[]> {
  const pods = await kube.core.listNamespacedPod({ namespace: NS, labelSelector: `ctf.challenge-engine.io/session=${sessionId}` });
  return pods.items.map((p) => p.metadata?.name ?? '');
}

beforeAll(async () => {
  expect(gw, 'the real node state records no gateway').toBeDefined();
  target = { dir: await mkdtemp(join(tmpdir(), 'challenge-engine-deploy-')), binDir: dirname(kubectlBin), kubeconfig };
  kube = createKube(kubeconfig);
});

afterAll(async () => {
  process.stderr.write(`[e2e-deploy] timings ${JSON.stringify({ ...timings, ...deployment?.timings })}\n`);
  // The next files have the node to themselves.
  await kubectl(['delete', 'namespace', NS, '--wait=false']).catch(() => undefined);
});

describe('the engine image', () => {
  it('refuses to run with the placeholder Secrets of manifests/, and says which Secret and key in the Pod status', async () => {
    const log = (m: string) => process.stderr.write(`[e2e-deploy] ${m}\n`);
    await deployLocal(target, node, log, { placeholders: true, wait: false, samples: false });
    const message = await waitUntil('an engine Pod terminated with a message', async () => {
      for (const p of await enginePods()) {
        const s = p.status?.containerStatuses?.find((c) => c.name === 'engine');
        const m = s?.lastState?.terminated?.message ?? s?.state?.terminated?.message;
        if (m) return m;
      }
      return undefined;
    }, 120_000, 500);
    expect(message).toContain('challenge-engine-token');
    expect(message).toContain('token-secret');
    expect(message).not.toMatch(/CHANGE-ME-token-secret-generate/);
    for (const p of await enginePods()) expect(isReady(p), p.metadata?.name).toBe(false);
  });

  it('runs as two Ready replicas under Pod Security "restricted" once the Secrets are real', async () => {
    const log = (m: string) => process.stderr.write(`[e2e-deploy] ${m}\n`);
    deployment = await deployLocal(target, node, log);
    const issuer = createTokenIssuer(deployment.secrets.tokenSecret);
    auth = async (user, team) => ({ authorization: `Bearer ${await issuer.issue({ user, team, admin: false, ttlSeconds: 3600 })}` });
    const ns = await kube.core.readNamespace({ name: NS });
    expect(ns.metadata?.labels?.['pod-security.kubernetes.io/enforce']).toBe('restricted');
    const pods = await waitUntil('two Ready engine Pods', async () => {
      const ps = await enginePods();
      return ps.length === 2 && ps.every(isReady) ? ps : undefined;
    }, 120_000, 500);
    for (const p of pods) {
      expect(p.spec?.nodeName).toBe(node.node);
      expect(p.spec?.containers[0]?.image).toBe(deployment.image.ref);
      expect(p.spec?.serviceAccountName).toBe('challenge-engine');
      expect(p.spec?.containers[0]?.securityContext?.readOnlyRootFilesystem).toBe(true);
      expect(p.status?.containerStatuses?.[0]?.restartCount ?? 0).toBe(0);
    }
  });

  it('is the image the Dockerfile describes: user, working directory, command, environment, port, files', async () => {
    const docker = await readFile(join(REPO_ROOT, 'Dockerfile'), 'utf8');
    const final = docker.split(/^FROM /m).at(-1) ?? '';
    const directive = (name: string) => [...final.matchAll(new RegExp(`^${name} (.+)$`, 'gm'))].map((m) => (m[1] as string).trim());
    const work = await mkdtemp(join(tmpdir(), 'engine-image-'));
    await run('tar', ['-xf', deployment.image.archive, '-C', work]);
    const blob = async (digest: string) => readFile(join(work, 'blobs', ...digest.split(':')));
    const index = JSON.parse(await readFile(join(work, 'index.json'), 'utf8')) as { manifests: { digest: string; annotations?: Record<string, string> }[] };
    const entry = index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === deployment.image.tag);
    expect(entry, 'the archive names the tag').toBeDefined();
    const manifest = JSON.parse((await blob(entry?.digest ?? '')).toString()) as { config: { digest: string }; layers: { digest: string }[] };
    const config = (JSON.parse((await blob(manifest.config.digest)).toString()) as { config: { User: string; WorkingDir: string; Cmd: string[]; Env: string[]; ExposedPorts: Record<string, unknown>; Entrypoint?: string[] } }).config;

    expect(config.User).toBe(directive('USER')[0]);
    expect(config.WorkingDir).toBe(directive('WORKDIR')[0]);
    expect(config.Cmd).toEqual(JSON.parse(directive('CMD')[0] ?? '[]'));
    expect(config.Entrypoint ?? []).toEqual([]);
    for (const env of directive('ENV')) expect(config.Env).toContain(env);
    expect(Object.keys(config.ExposedPorts)).toEqual(directive('EXPOSE').map((p) => `${p}/tcp`));

    // The files: what the Dockerfile copies into /app, production dependencies only.
    const files = new Set<string>();
    for (const layer of manifest.layers) {
      const { stdout } = await run('tar', ['-tzf', join(work, 'blobs', ...layer.digest.split(':'))], { maxBuffer: 256 << 20 });
      for (const f of stdout.split('\n')) if (f) files.add(f.replace(/^\.?\//, '').replace(/\/$/, ''));
    }
    // COPY [--from=stage] <source>... <destination>; a destination ending in / keeps the sources' names.
    const copied = directive('COPY').flatMap((c) => {
      const words = c.split(/\s+/).filter((w) => !w.startsWith('--'));
      const dest = (words.pop() ?? '').replace(/^\.\/?/, '');
      return dest === '' || dest.endsWith('/') ? words.map((w) => `${dest}${w.split('/').at(-1) ?? ''}`) : [dest];
    });
    const appTop = [...files].filter((f) => f.startsWith('app/') && f.split('/').length === 2).map((f) => f.slice(4)).sort();
    expect(appTop).toEqual(copied.sort());
    expect(files.has('app/dist/main.js')).toBe(true);
    // npm ci --omit=dev: every package of the lockfile that is not dev-only, and none that is.
    const lock = JSON.parse(await readFile(join(REPO_ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
    const installed = Object.entries(lock.packages).filter(([path]) => path.startsWith('node_modules/'));
    expect(installed.filter(([, p]) => p.dev).length).toBeGreaterThan(0);
    for (const [path, p] of installed) expect(files.has(`app/${path}`), path).toBe(!p.dev);
    expect(files.has('usr/local/bin/node')).toBe(true);
    expect([...files].some((f) => f.startsWith('app/src/') || f.startsWith('app/test/'))).toBe(false);
  });
});

describe('the deployed engine behind the gateway', () => {
  it('lets the gateway reach the API and nothing else reach the engine', async () => {
    const pods = await enginePods();
    const podIp = pods[0]?.status?.podIP;
    expect(podIp).toBeTruthy();
    const health = await api('GET', '/readyz', {});
    expect(health.status).toBe(200);
    // The image carries the player page, served through the gateway on the API's host.
    const page = await api('GET', '/play', {});
    expect(page.status).toBe(200);
    expect(page.body).toContain('/play/app.js');
    expect(String(page.headers['content-security-policy'])).toContain("script-src 'self'");
    // A Pod of another namespace tries the engine's Pod and Service; the gateway is the control.
    const probeNs = 'deploy-probe';
    await kubectl(['create', 'namespace', probeNs, '--dry-run=client', '-o', 'yaml']).then((y) => kubectl(['apply', '-f', '-'], y));
    await kubectl(['label', 'namespace', probeNs, 'pod-security.kubernetes.io/enforce=restricted', '--overwrite']);
    const probe = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'probe', namespace: probeNs },
      spec: {
        nodeName: node.node,
        securityContext: { runAsNonRoot: true, runAsUser: 65532, seccompProfile: { type: 'RuntimeDefault' } },
        containers: [
          {
            name: 'probe',
            image: 'docker.io/challenge-engine/probe:1.0',
            imagePullPolicy: 'Never',
            command: ['/app/probe.sh'],
            env: [
              { name: 'PROBE_TARGETS', value: `engine-pod=${podIp}:8080 engine-service=10.0.0.12:80 gateway=${gw.address}:${gw.httpPort}` },
              { name: 'PROBE_INTERVAL', value: '1' },
            ],
            securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
          },
        ],
      },
    };
    await kubectl(['apply', '-f', '-'], JSON.stringify(probe));
    const rounds = await waitUntil('two probe rounds', async () => {
      const log = await podContainerLog(node, probeNs, 'probe', 'probe');
      const done = [...log.matchAll(/PROBE round=(\d+) done/g)].length;
      return done >= 2 ? log : undefined;
    }, 90_000, 500);
    const last = Math.max(...[...rounds.matchAll(/PROBE round=(\d+) done/g)].map((m) => Number(m[1])));
    const result = (name: string) => new RegExp(`PROBE round=${last} ${name} (\\w+)`).exec(rounds)?.[1];
    expect(result('gateway')).toBe('open');
    expect(result('engine-pod')).toBe('closed');
    expect(result('engine-service')).toBe('closed');
    await kubectl(['delete', 'namespace', probeNs, '--wait=false']);
  });

  it('plays the whole journey through the Service and the gateway: spawn, open, flag, stop', async () => {
    const t0 = Date.now();
    const view = await spawnReady('dora', 'web-notes');
    timings.spawnToReadyMs = Date.now() - t0;
    const h = await auth('dora');
    const link = await api('POST', `/api/sessions/${view.id}/access`, h);
    expect(link.status, link.body).toBe(200);
    const url = new URL((JSON.parse(link.body) as { url: string }).url);
    expect(url.port).toBe(String(gw.httpPort));
    // Until the gateway has the route it answers 404; then forward auth refuses anonymous requests.
    const refused = await waitUntil('the route to be live', async () => {
      const a = await viaGateway('GET', url.hostname, '/');
      return a.status === 403 ? a : undefined;
    }, 30_000, 50);
    expect(refused.body).not.toContain('Notes');
    // The single-use link leaves a cookie; with it the instance answers through the gateway.
    const opened = await viaGateway('GET', url.hostname, `${url.pathname}${url.search}`);
    expect(opened.status, opened.body).toBe(302);
    const cookie = String(opened.headers['set-cookie'] ?? '').split(';')[0] ?? '';
    expect(cookie).toMatch(/=/);
    // The gateway may still be loading the Pod's endpoint (503 meanwhile).
    const page = await waitUntil('the instance page', async () => {
      const a = await viaGateway('GET', url.hostname, '/', { headers: { cookie } });
      return a.status === 200 ? a : undefined;
    }, 30_000, 100);
    expect(page.body).toContain('<h1>Notes</h1>');

    const secret = await kubectl(['-n', NS, 'get', 'secret', '-l', `ctf.challenge-engine.io/session=${view.id}`, '-o', 'jsonpath={.items[0].data.flag}']);
    const flag = Buffer.from(secret, 'base64').toString('utf8');
    expect(flag).toMatch(/^CTF\{/);
    const wrong = await api('POST', '/api/flags', h, { sessionId: view.id, flag: 'CTF{wrong}' });
    expect(JSON.parse(wrong.body)).toEqual({ correct: false });
    const right = await api('POST', '/api/flags', h, { sessionId: view.id, flag });
    expect(JSON.parse(right.body)).toEqual({ correct: true });
    const stopped = await api('DELETE', `/api/challenges/${view.id}`, h);
    expect([200, 202, 204], stopped.body).toContain(stopped.status);
    await waitUntil('the session gone', async () => (await api('GET', `/api/sessions/${view.id}`, h)).status === 404, 60_000, 250);
  });

  it('moves the controller to the other replica within the lease time when the leader Pod is deleted, losing and duplicating nothing', async () => {
    const sessions = await Promise.all(['erin', 'frank'].map((u) => spawnReady(u, 'web-notes')));
    const leader = await waitUntil('a lease holder', leaseHolder, 30_000, 250);
    const pods = await enginePods();
    expect(pods.map((p) => p.metadata?.name)).toContain(leader);
    // A crash, not a shutdown: the engine process gets SIGKILL from containerd (no Lease release),
    // then the Pod is deleted so that kubelet does not start it again.
    const containerId = pods.find((p) => p.metadata?.name === leader)?.status?.containerStatuses?.[0]?.containerID?.replace('containerd://', '') ?? '';
    expect(containerId).toMatch(/^[0-9a-f]{64}$/);
    const renewed = (await kube.coord.readNamespacedLease({ name: 'challenge-engine-controller', namespace: NS })).spec?.renewTime;
    const t0 = Date.now();
    await run('ctr', ['-a', node.socket, '-n', 'k8s.io', 'tasks', 'kill', '-s', 'SIGKILL', containerId]);
    await kube.core.deleteNamespacedPod({ name: leader, namespace: NS, gracePeriodSeconds: 0 });
    const next = await waitUntil('another lease holder', async () => {
      const h = await leaseHolder();
      return h && h !== leader ? h : undefined;
    }, 60_000, 100);
    timings.leaderTakeoverMs = Date.now() - t0;
    expect(pods.map((p) => p.metadata?.name)).toContain(next);
    // CTF_LEASE_SECONDS is 15: the Lease expires at most 15 s after the last renewal, and the
    // other replica retries every few seconds.
    expect(timings.leaderTakeoverMs).toBeLessThan((15 + 5) * 1000);
    expect(renewed).toBeDefined();
    // The new leader reconciles: a new spawn becomes ready; the old sessions are intact, one Pod each.
    const after = await spawnReady('grace', 'web-notes');
    for (const s of [...sessions, after]) {
      const r = await api('GET', `/api/sessions/${s.id}`, await auth(s === after ? 'grace' : sessions[0] === s ? 'erin' : 'frank'));
      expect(r.status, r.body).toBe(200);
      expect(await childPods(s.id)).toHaveLength(1);
    }
  });

  it('answers every request during a rolling restart under a burst of spawns, and every accepted spawn runs', async () => {
    const users = Array.from({ length: 16 }, (_, i) => `burst-${i}`);
    const outcomes: { user: string; status: number; retryAfter?: string; id?: string }[] = [];
    await kubectl(['-n', NS, 'rollout', 'restart', `deployment/${ENGINE_DEPLOYMENT}`]);
    const tRestart = Date.now();
    const rollout = kubectl(['-n', NS, 'rollout', 'status', `deployment/${ENGINE_DEPLOYMENT}`, '--timeout=180s']);
    let rolledOut = false;
    void rollout.then(() => (rolledOut = true), () => undefined);
    // Each user spawns once; a 503 with Retry-After is retried as a client should.
    await Promise.all(users.map(async (user, i) => {
      await new Promise((r) => setTimeout(r, i * 700));
      const h = await auth(user);
      for (let attempt = 0; attempt < 30; attempt++) {
        const res = await api('POST', '/api/challenges', h, { challenge: 'web-notes' });
        const retryAfter = res.headers['retry-after'] as string | undefined;
        outcomes.push({ user, status: res.status, retryAfter, id: res.status < 300 ? (JSON.parse(res.body) as { session: View }).session.id : undefined });
        if (res.status === 503 && retryAfter) {
          await new Promise((r) => setTimeout(r, Number(retryAfter) * 1000));
          continue;
        }
        return;
      }
    }));
    await rollout;
    timings.rolloutUnderBurstMs = Date.now() - tRestart;
    expect(rolledOut).toBe(true);
    const bad = outcomes.filter((o) => !(o.status === 200 || o.status === 201 || (o.status === 503 && o.retryAfter)));
    expect(bad, JSON.stringify(bad)).toEqual([]);
    const accepted = outcomes.filter((o) => o.id);
    expect(new Set(accepted.map((o) => o.user)).size).toBe(users.length);
    for (const o of accepted) {
      const h = await auth(o.user);
      await waitUntil(`${o.user}'s session ready`, async () => {
        const r = await api('GET', `/api/sessions/${o.id}?wait=20`, h);
        return r.status === 200 && (JSON.parse(r.body) as { session: View }).session.ready;
      }, 120_000, 200);
      expect(await childPods(o.id ?? '')).toHaveLength(1);
    }
  });

  it('acts with its ServiceAccount as deployed: its RBAC allows what it does, and nothing else', async () => {
    const sa = `system:serviceaccount:${NS}:challenge-engine`;
    const can = async (...args: string[]) => (await kubectl(['auth', 'can-i', '--as', sa, ...args]).catch((e: { stdout?: string }) => e.stdout ?? '')).trim();
    expect(await can('create', 'challengesessions.ctf.challenge-engine.io', '-n', NS)).toBe('yes');
    expect(await can('patch', 'httproutes.gateway.networking.k8s.io', '-n', NS)).toBe('yes');
    expect(await can('delete', 'pods', '-n', NS)).toBe('no');
    expect(await can('create', 'deployments.apps', '-n', NS)).toBe('no');
    expect(await can('get', 'secrets', '-n', 'kube-system')).toBe('no');
    expect(await can('patch', 'challenges.ctf.challenge-engine.io', '-n', NS)).toBe('no');
    // The engine's requests carry that identity: without its RoleBinding a spawn is refused.
    const binding = await kubectl(['-n', NS, 'get', 'rolebinding', 'challenge-engine', '-o', 'json']);
    await kubectl(['-n', NS, 'delete', 'rolebinding', 'challenge-engine']);
    try {
      const h = await auth('heidi');
      const refused = await waitUntil('a spawn refused without the RoleBinding', async () => {
        const r = await api('POST', '/api/challenges', h, { challenge: 'web-notes' });
        return r.status >= 500 ? r : undefined;
      }, 30_000, 500);
      expect(refused.body).not.toMatch(/token|secret/i);
    } finally {
      const restored = JSON.parse(binding) as { metadata: Record<string, unknown> };
      restored.metadata = { name: 'challenge-engine', namespace: NS, labels: restored.metadata.labels };
      await kubectl(['apply', '-f', '-'], JSON.stringify(restored));
    }
    const after = await spawnReady('heidi', 'web-notes');
    expect(after.ready).toBe(true);
  });

  it('keeps one replica through voluntary disruptions (PodDisruptionBudget)', async () => {
    const pods = await waitUntil('two Ready engine Pods', async () => {
      const ps = await enginePods();
      return ps.length === 2 && ps.every(isReady) ? ps : undefined;
    }, 120_000, 500);
    const evict = (name: string) => kube.core.createNamespacedPodEviction({ name, namespace: NS, body: { apiVersion: 'policy/v1', kind: 'Eviction', metadata: { name, namespace: NS } } });
    await evict(pods[0]?.metadata?.name ?? '');
    const second = await evict(pods[1]?.metadata?.name ?? '').then(() => 'evicted', (err: { code?: number }) => err.code);
    expect(second).toBe(429);
    expect((await api('GET', '/readyz', {})).status).toBe(200);
  });
});
