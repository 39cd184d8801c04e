import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { connect, createServer, type Server } from 'node:net';
import { promisify } from 'node:util';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { buildApp } from '../../src/http/app.js';
import { createTokenIssuer, createTokenVerifier } from '../../src/http/auth.js';
import { Caches } from '../../src/read-model/caches.js';
import { KubeSessionService } from '../../src/sessions/service.js';
import { createMetrics } from '../../src/metrics.js';
import type { Engine } from '../../src/engine.js';
import { CHALLENGE_PLURAL, GROUP, VERSION } from '../../src/api/group.js';
import { createNamespace, useCluster, waitUntil } from '../support/kube.js';
import { createSession, installSamples, startTestEngine, TEST_TOKEN_SECRET } from '../support/engine.js';
import { GATEWAY, podContainerLog, REAL_NODE } from '../../scripts/lib/real-node.js';

/**
 * The player journey on real containers: spawn over the API, reach the running challenge, get
 * the flag from inside it, submit it; the entry point; NetworkPolicy isolation enforced by
 * kube-router; containers gone from containerd after stop and expiry.
 */
const run = promisify(execFile);
const PSA = { 'pod-security.kubernetes.io/enforce': 'restricted' };
const cluster = useCluster(import.meta.filename, PSA);
const node = inject('realNode');
const issuer = createTokenIssuer(TEST_TOKEN_SECRET);
const auth = async (user: string) => ({ authorization: `Bearer ${await issuer.issue({ user, admin: false, ttlSeconds: 3600 })}` });
let engine: Engine;
let app: FastifyInstance;
let caches: Caches;
let entryNs: string;
let hostServer: Server;
let hostPort: number;
const timings: Record<string, number> = {};

interface SessionView {
  id: string;
  phase: string;
  ready: boolean;
  solved?: boolean;
  endpoints: { host: string; port: number }[];
}

beforeAll(async () => {
  entryNs = await createNamespace(cluster.kube, 'e2e-entry', { 'ctf-e2e-entry': cluster.namespace });
  await installSamples(cluster.kube, cluster.namespace);
  ({ engine } = await startTestEngine(cluster.kubeconfig, cluster.namespace, {
    CTF_MAX_SESSIONS_PER_USER: '10',
    CTF_ENTRY_NAMESPACE_SELECTOR: `ctf-e2e-entry=${cluster.namespace}`,
    CTF_ENTRY_POD_SELECTOR: 'app=entry',
  }));
  const log = pino({ level: 'silent' });
  const metrics = createMetrics();
  caches = Caches.watching(engine.kube, cluster.namespace, log);
  await caches.start();
  const service = new KubeSessionService({ kube: engine.kube, caches, writer: engine.writer, log, metrics, flagKey: engine.flagKey, maxSessionsPerUser: 10 });
  app = await buildApp({ service, tokens: createTokenVerifier(TEST_TOKEN_SECRET), metrics, log, corsOrigins: [], rateLimit: { wrongFlagsPerMinutePerUser: 100, wrongFlagsPerMinutePerSession: 100 } });
  // A listener on the pod bridge's host address: reachable from pods unless a policy forbids it.
  hostServer = createServer((s) => s.end('host\n'));
  await new Promise<void>((resolve, reject) => hostServer.once('error', reject).listen(0, GATEWAY, resolve));
  hostPort = (hostServer.address() as { port: number }).port;
});

afterAll(async () => {
  process.stderr.write(`[e2e] timings ${JSON.stringify(timings)}\n`);
  hostServer?.close();
  await app?.close();
  await caches?.stop();
  await engine?.stop();
  if (entryNs) await cluster.kube.core.deleteNamespace({ name: entryNs }).catch(() => undefined);
});

async function spawnReady(user: string, challenge: string): Promise<{ view: SessionView; ms: number }> {
  const h = await auth(user);
  const t0 = Date.now();
  const res = await app.inject({ method: 'POST', url: '/api/challenges', headers: h, payload: { challenge } });
  expect(res.statusCode, res.body).toBe(201);
  const id = res.json<{ session: { id: string } }>().session.id;
  const view = await waitUntil(`${challenge} of ${user} ready`, async () => {
    const r = await app.inject({ method: 'GET', url: `/api/sessions/${id}?wait=20`, headers: h });
    const v = r.json<{ session: SessionView }>().session;
    return v.ready ? v : undefined;
  }, 120_000, 50);
  return { view, ms: Date.now() - t0 };
}

async function serviceIP(id: string): Promise<string> {
  const svc = await cluster.kube.core.readNamespacedService({ name: id, namespace: cluster.namespace });
  return svc.spec?.clusterIP ?? '';
}

async function podOf(namespace: string, name: string): Promise<{ ip: string; node: string }> {
  const pod = await cluster.kube.core.readNamespacedPod({ name, namespace });
  return { ip: pod.status?.podIP ?? '', node: pod.spec?.nodeName ?? '' };
}

async function flagOf(id: string): Promise<string> {
  const s = await cluster.kube.core.readNamespacedSecret({ name: `${id}-flag`, namespace: cluster.namespace });
  return Buffer.from(s.data?.flag ?? '', 'base64').toString();
}

/** Sends lines to host:port and collects what comes back until `until` matches. */
function tcpConversation(host: string, port: number, lines: string[], until: RegExp, timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const sock = connect({ host, port });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no match for ${until} from ${host}:${port}; got ${JSON.stringify(text)}`));
    }, timeoutMs);
    sock.on('connect', () => sock.write(lines.map((l) => `${l}\n`).join('')));
    sock.on('data', (d: Buffer) => {
      text += d.toString();
      if (until.test(text)) {
        clearTimeout(timer);
        sock.destroy();
        resolve(text);
      }
    });
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** A probe Pod in the entry namespace, labelled as the entry point. */
async function startEntryProbe(name: string, env: Record<string, string>): Promise<void> {
  await cluster.kube.core.createNamespacedPod({
    namespace: entryNs,
    body: {
      metadata: { name, labels: { app: 'entry' } },
      spec: {
        automountServiceAccountToken: false,
        securityContext: { runAsNonRoot: true, runAsUser: 65532, seccompProfile: { type: 'RuntimeDefault' } },
        containers: [{
          name: 'probe',
          image: 'challenge-engine/probe:1.0',
          imagePullPolicy: 'Never',
          env: Object.entries(env).map(([k, v]) => ({ name: k, value: v })),
          securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
        }],
      },
    },
  });
}

interface ProbeRound {
  round: number;
  probes: Record<string, string>;
  fetches: string[];
}

/** The newest complete probe round in a container log, or undefined before the first. */
async function lastRound(namespace: string, pod: string, container: string): Promise<ProbeRound | undefined> {
  const log = await podContainerLog(node, namespace, pod, container);
  const round = [...log.matchAll(/PROBE round=(\d+) done/g)].map((m) => Number(m[1])).at(-1);
  if (round === undefined) return undefined;
  const probes: Record<string, string> = {};
  for (const m of log.matchAll(new RegExp(`PROBE round=${round} (\\S+) (open|closed)`, 'g'))) probes[m[1] as string] = m[2] as string;
  const fetches = [...log.matchAll(new RegExp(`FETCH round=${round} (.*)`, 'g'))].map((m) => m[1] as string);
  return { round, probes, fetches };
}

/** Waits for a probe round that satisfies `ok` (policies and Service rules apply within seconds, not instantly). */
async function roundWhere(namespace: string, pod: string, container: string, ok: (r: ProbeRound) => boolean, what: string): Promise<ProbeRound> {
  let last: ProbeRound | undefined;
  try {
    return await waitUntil(what, async () => {
      last = await lastRound(namespace, pod, container);
      return last && ok(last) ? last : undefined;
    }, 90_000, 500);
  } catch (err) {
    throw new Error(`${(err as Error).message}; last round: ${JSON.stringify(last)}`);
  }
}

/** Running tasks (processes) of a Pod's containers. */
async function runningTasksOfPod(pod: string): Promise<string[]> {
  const ids = new Set(await containersOfPod(pod));
  const { stdout } = await run('ctr', ['-a', node.socket, '-n', 'k8s.io', 'tasks', 'ls'], { maxBuffer: 16 << 20 });
  return stdout.split('\n').slice(1).map((l) => l.trim().split(/\s+/)).filter(([id, , status]) => id && ids.has(id) && status === 'RUNNING').map(([id]) => id as string);
}

/** containerd's containers (k8s.io namespace) that belong to a Pod, by kubelet's labels. */
async function containersOfPod(pod: string): Promise<string[]> {
  const ctr = (args: string[]) => run('ctr', ['-a', node.socket, '-n', 'k8s.io', ...args], { maxBuffer: 16 << 20 }).then((r) => r.stdout);
  const ids = (await ctr(['containers', 'ls', '-q'])).split('\n').filter(Boolean);
  const mine: string[] = [];
  for (const id of ids) {
    const info = JSON.parse(await ctr(['containers', 'info', id]).catch(() => '{}')) as { Labels?: Record<string, string> };
    if (info.Labels?.['io.kubernetes.pod.name'] === pod && info.Labels['io.kubernetes.pod.namespace'] === cluster.namespace) mine.push(id);
  }
  return mine;
}

describe('real containers', () => {
  let aliceEcho: SessionView;

  it('player A spawns the TCP sample, reads the flag from the running container and solves it', async () => {
    const { view, ms } = await spawnReady('alice', 'pwn-echo');
    timings.pwnEchoSpawnToReadyMs = ms;
    aliceEcho = view;
    expect(await podOf(cluster.namespace, view.id)).toMatchObject({ node: REAL_NODE });
    const ip = await serviceIP(view.id);
    // Ready is the Pod's readiness; kube-proxy programs the Service once its EndpointSlice follows.
    const t0 = Date.now();
    const text = await waitUntil('the echo service to answer', () => tcpConversation(ip, 1337, ['hello', '%s'], /flag\{[^}]+\}/), 30_000, 200);
    timings.pwnEchoReadyToServiceAnswersMs = Date.now() - t0;
    expect(text).toContain('Echo Chamber');
    expect(text).toContain('hello');
    const flag = /flag\{[^}]+\}/.exec(text)?.[0] ?? '';
    expect(flag).toBe(await flagOf(view.id));
    const h = await auth('alice');
    const res = await app.inject({ method: 'POST', url: '/api/flags', headers: h, payload: { sessionId: view.id, flag } });
    expect(res.json()).toEqual({ correct: true });
    const after = await app.inject({ method: 'GET', url: `/api/sessions/${view.id}`, headers: h });
    expect(after.json<{ session: SessionView }>().session.solved).toBe(true);
  });

  it('isolates sessions: the entry point reaches them, other sessions, the host, metadata and outside do not', async () => {
    const web = await spawnReady('alice', 'web-notes');
    timings.webNotesSpawnToReadyMs = web.ms;
    const sql = await spawnReady('alice', 'sql-two-tier');
    timings.sqlTwoTierSpawnToReadyMs = sql.ms;
    const bob = await spawnReady('bob', 'pwn-echo');
    const bobPod = await podOf(cluster.namespace, bob.view.id);
    const targets = [
      `bobPod=${bobPod.ip}:1337`,
      `bobService=${await serviceIP(bob.view.id)}:1337`,
      `hostListener=${GATEWAY}:${hostPort}`,
      `apiserverService=10.0.0.1:443`,
      `metadata=169.254.169.254:80`,
      `outside=198.51.100.7:80`,
    ].join(' ');
    const webIP = await serviceIP(web.view.id);
    const sqlIP = await serviceIP(sql.view.id);

    await startEntryProbe('entry', {
      PROBE_TARGETS: `bobPod=${bobPod.ip}:1337 bobService=${await serviceIP(bob.view.id)}:1337 hostListener=${GATEWAY}:${hostPort}`,
      FETCH_URLS: `${webIP}:8080/cgi-bin/notes ${sqlIP}:8080/cgi-bin/search?q=UNION+secrets ${sqlIP}:8080/cgi-bin/search?q=gadget`,
    });

    // Player A's own probe session, created once the targets are known.
    await cluster.kube.custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: cluster.namespace,
      plural: CHALLENGE_PLURAL,
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'Challenge',
        metadata: { name: 'e2e-probe' },
        spec: {
          title: 'probe',
          category: 'misc',
          points: 1,
          description: 'network probe',
          containers: [{
            name: 'probe',
            image: 'challenge-engine/probe:1.0',
            ports: [{ name: 'http', containerPort: 8080 }],
            env: [{ name: 'PROBE_TARGETS', value: targets }],
            resources: { requests: { cpu: '10m', memory: '16Mi' }, limits: { cpu: '200m', memory: '64Mi' } },
            readinessProbe: { httpGet: { path: '/healthz', port: 8080 }, periodSeconds: 2 },
            scratchPaths: ['/tmp'],
          }],
          expose: [{ name: 'http', port: 8080, protocol: 'http' }],
          flag: { dynamic: { format: 'CTF{%s}' }, delivery: 'env', envName: 'FLAG' },
          lifetime: { default: '30m', max: '1h', extension: '10m' },
        },
      },
    });
    // Players spawn what the catalogue lists: wait until this replica's catalogue shows it.
    await waitUntil('e2e-probe in the catalogue', async () => {
      const r = await app.inject({ method: 'GET', url: '/api/challenges', headers: await auth('alice') });
      return r.json<{ challenges: { name: string }[] }>().challenges.some((c) => c.name === 'e2e-probe');
    }, 10_000, 50);
    const probe = await spawnReady('alice', 'e2e-probe');

    // Positive controls: without a policy of its own, the entry point reaches all three.
    const webFlag = await flagOf(web.view.id);
    const sha = createHash('sha256').update(webFlag).digest('hex');
    const entry = await roundWhere(entryNs, 'entry', 'probe', (r) => Object.values(r.probes).every((v) => v === 'open') && r.fetches.some((f) => f.includes(sha)) && r.fetches.some((f) => f.includes('gadget\t7') || /gadget\s+7/.test(f)), 'the entry point to reach every session');
    expect(entry.probes).toEqual({ bobPod: 'open', bobService: 'open', hostListener: 'open' });
    // HTTP sample through the entry point: the page proves the flag is in the container without serving it.
    const notes = entry.fetches.find((f) => f.includes('/cgi-bin/notes')) ?? '';
    expect(notes).toContain(`private-note-sha256: ${sha}`);
    expect(notes).not.toContain(webFlag);
    // Same-session containers: the app reaches its database container.
    expect(entry.fetches.find((f) => f.includes('q=gadget'))).toMatch(/gadget\s+7/);
    const sqlFlag = await flagOf(sql.view.id);
    expect(entry.fetches.find((f) => f.includes('UNION'))).toContain(sqlFlag);

    // Two full rounds after the entry point's success, so A's policy has had the same time to apply.
    const from = (await lastRound(cluster.namespace, probe.view.id, 'probe'))?.round ?? 0;
    const a = await roundWhere(cluster.namespace, probe.view.id, 'probe', (r) => r.round >= from + 2, 'two more rounds of the probe');
    expect(a.probes).toEqual({
      bobPod: 'closed',
      bobService: 'closed',
      hostListener: 'closed',
      apiserverService: 'closed',
      metadata: 'closed',
      outside: 'closed',
    });
  });

  it('stopping a session removes its containers from containerd', async () => {
    const before = await containersOfPod(aliceEcho.id);
    expect(before.length).toBeGreaterThanOrEqual(2); // sandbox + echo
    const h = await auth('alice');
    const res = await app.inject({ method: 'DELETE', url: `/api/challenges/${aliceEcho.id}`, headers: h });
    expect(res.statusCode).toBeLessThan(300);
    const t0 = Date.now();
    await waitUntil('processes of the stopped session to end', async () => (await runningTasksOfPod(aliceEcho.id)).length === 0, 60_000, 250);
    timings.stopToProcessesGoneMs = Date.now() - t0;
    // kubelet deletes exited containers in its garbage collection, once a minute.
    await waitUntil('containers of the stopped session to be deleted', async () => (await containersOfPod(aliceEcho.id)).length === 0, 150_000, 500);
    timings.stopToContainersDeletedMs = Date.now() - t0;
  });

  it('an expired session loses its containers too', async () => {
    const expires = new Date(Date.now() + 20_000);
    await createSession(cluster.kube, cluster.namespace, 'e2e-expiring', 'web-notes', 'carol', expires);
    await waitUntil('the expiring session to run', async () => (await containersOfPod('e2e-expiring')).length >= 2, 90_000, 500);
    await waitUntil('processes of the expired session to end', async () => (await runningTasksOfPod('e2e-expiring')).length === 0, 90_000, 250);
    timings.expiryToProcessesGoneMs = Date.now() - expires.getTime();
    await waitUntil('containers of the expired session to be deleted', async () => (await containersOfPod('e2e-expiring')).length === 0, 150_000, 500);
    timings.expiryToContainersDeletedMs = Date.now() - expires.getTime();
  });
});
