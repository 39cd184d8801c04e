import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { request } from 'node:http';
import { connect } from 'node:tls';
import { promisify } from 'node:util';
import type { FastifyInstance } from 'fastify';
import { chromium } from 'playwright-core';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { buildApp } from '../../src/http/app.js';
import { createTokenIssuer, createTokenVerifier } from '../../src/http/auth.js';
import { Caches } from '../../src/read-model/caches.js';
import { KubeSessionService } from '../../src/sessions/service.js';
import { createMetrics } from '../../src/metrics.js';
import type { Engine } from '../../src/engine.js';
import { useCluster, waitUntil } from '../support/kube.js';
import { installChallengeLike, installSamples, listSessions, startTestEngine, TEST_TOKEN_SECRET } from '../support/engine.js';
import { isUnclaimedPool } from '../../src/api/session.js';
import { LABEL_SESSION } from '../../src/api/group.js';
import { GATEWAY } from '../../scripts/lib/real-node.js';
import { gatewayEngineEnv, type GatewayState } from '../../scripts/lib/gateway.js';

/**
 * Players reach their own instances through the real gateway (Traefik on the real node) and
 * nobody else's: per-session routes on unguessable hosts, forward auth to the engine, a
 * single-use link that leaves a host-only cookie, TCP through the TLS listener by SNI, and
 * routes gone after stop. The engine's API listens on the pod bridge so the gateway Pod can
 * call its forward-auth endpoint, as it would call the engine's Service in a cluster.
 */
const run = promisify(execFile);
const PSA = { 'pod-security.kubernetes.io/enforce': 'restricted' };
const cluster = useCluster(import.meta.filename, PSA);
const gw = inject('realNode').gateway as GatewayState;
const issuer = createTokenIssuer(TEST_TOKEN_SECRET);
const auth = async (user: string) => ({ authorization: `Bearer ${await issuer.issue({ user, admin: false, ttlSeconds: 3600 })}` });
let engine: Engine;
let app: FastifyInstance;
let caches: Caches;
const timings: Record<string, number> = {};

interface Endpoint { name: string; protocol: string; externalHost?: string; url?: string; connect?: string; route?: string }
interface View { id: string; phase: string; ready: boolean; solved: boolean; endpoints: Endpoint[] }
interface Answer { status: number; body: string; headers: Record<string, string | string[] | undefined> }

/** One request to the gateway's HTTP listener for `host`, as a browser on this machine sends it. */
function viaGateway(host: string, path: string, cookie?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { host: `${host}:${gw.httpPort}` };
    if (cookie) headers.cookie = cookie;
    const req = request({ host: gw.address, port: gw.httpPort, path, headers, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

/**
 * The page through the gateway with `cookie`. The gateway may still be loading the Pod's
 * endpoint when the session turns Running (it answers 503 meanwhile), so this polls.
 */
function pageWith(host: string, cookie: string): Promise<Answer> {
  return waitUntil(`the page of ${host}`, async () => {
    const a = await viaGateway(host, '/', cookie);
    if (a.status !== 200 && a.status !== 503) throw new Error(`answered ${a.status}`);
    return a.status === 200 ? a : undefined;
  }, 20_000, 25);
}

/** TLS to the gateway's TLS listener with SNI `host`, verified against the local CA; sends lines until `until`. */
function viaTls(host: string, lines: string[], until: RegExp): Promise<string> {
  return readFile(gw.caCert, 'utf8').then(
    (ca) =>
      new Promise((resolve, reject) => {
        let got = '';
        const s = connect({ host: gw.address, port: gw.tlsPort, servername: host, ca }, () => s.write(lines.map((l) => `${l}\n`).join('')));
        const timer = setTimeout(() => s.destroy(new Error(`no ${String(until)} within 5 s (got ${JSON.stringify(got)})`)), 5000);
        s.setEncoding('utf8');
        s.on('data', (d: string) => {
          got += d;
          if (until.test(got)) {
            clearTimeout(timer);
            s.destroy();
            resolve(got);
          }
        });
        s.on('error', (err: Error) => {
          clearTimeout(timer);
          reject(err);
        });
        s.on('close', () => {
          clearTimeout(timer);
          reject(new Error(`closed before ${String(until)} (got ${JSON.stringify(got)})`));
        });
      }),
  );
}

const cookieOf = (a: Answer) => String(a.headers['set-cookie'] ?? '').split(';')[0] ?? '';
const pathOf = (url: string) => {
  const u = new URL(url);
  return `${u.pathname}${u.search}`;
};

async function spawn(user: string, challenge: string): Promise<{ view: View; t0: number }> {
  const h = await auth(user);
  const t0 = Date.now();
  const res = await app.inject({ method: 'POST', url: '/api/challenges', headers: h, payload: { challenge } });
  expect(res.statusCode, res.body).toBe(201);
  const id = res.json<{ session: { id: string } }>().session.id;
  const view = await waitUntil(`${challenge} of ${user} ready`, async () => {
    const r = await app.inject({ method: 'GET', url: `/api/sessions/${id}?wait=20`, headers: h });
    const v = r.json<{ session: View }>().session;
    return v.ready ? v : undefined;
  }, 120_000, 50);
  return { view, t0 };
}

async function link(user: string, id: string): Promise<string> {
  const res = await app.inject({ method: 'POST', url: `/api/sessions/${id}/access`, headers: await auth(user) });
  expect(res.statusCode, res.body).toBe(200);
  return res.json<{ url: string }>().url;
}

beforeAll(async () => {
  expect(gw, 'the real node state records no gateway').toBeDefined();
  await installSamples(cluster.kube, cluster.namespace);
  const log = pino({ level: 'silent' });
  const metrics = createMetrics();
  ({ engine } = await startTestEngine(cluster.kubeconfig, cluster.namespace, {
    CTF_MAX_SESSIONS_PER_USER: '5',
    ...gatewayEngineEnv(gw),
  }));
  caches = Caches.watching(engine.kube, cluster.namespace, log);
  await caches.start();
  const service = new KubeSessionService({ kube: engine.kube, caches, writer: engine.writer, log, metrics, flagKey: engine.flagKey, maxSessionsPerUser: 5, publicHttp: { scheme: 'http', port: gw.httpPort } });
  app = await buildApp({ service, tokens: createTokenVerifier(TEST_TOKEN_SECRET), metrics, log, corsOrigins: [] });
  await app.listen({ host: GATEWAY, port: 0 });
  const port = (app.server.address() as { port: number }).port;
  // The organiser's one ForwardAuth Middleware in the sessions namespace, named by CTF_GATEWAY_AUTH_FILTER.
  const middleware = { apiVersion: 'traefik.io/v1alpha1', kind: 'Middleware', metadata: { name: 'challenge-engine-access', namespace: cluster.namespace }, spec: { forwardAuth: { address: `http://${GATEWAY}:${port}/gateway/auth` } } };
  const child = run(inject('kubectl'), ['--kubeconfig', inject('kubeconfig'), 'apply', '--server-side', '-f', '-']);
  child.child.stdin?.end(JSON.stringify(middleware));
  await child;
});

afterAll(async () => {
  process.stderr.write(`[e2e-access] timings ${JSON.stringify(timings)}\n`);
  await app?.close();
  await caches?.stop();
  await engine?.stop();
});

describe('players reach their own instances through the gateway', () => {
  let web: View;
  let host: string;
  let openPath: string;
  let aliceCookie: string;

  let spawnedAt = 0;

  it('publishes the web instance on an unguessable host that refuses requests without access', async () => {
    const spawned = await spawn('alice', 'web-notes');
    spawnedAt = spawned.t0;
    web = spawned.view;
    const e = web.endpoints[0];
    host = e?.externalHost ?? '';
    expect(host).toMatch(new RegExp(`^i[0-9a-f]{24}\\.${gw.domain.replace(/\./g, '\\.')}$`));
    expect(host).not.toContain(web.id);
    expect(e).toMatchObject({ url: `http://${host}:${gw.httpPort}`, route: `HTTPRoute ${web.id}-http` });
    // Until the gateway has the route it answers 404; then forward auth refuses the anonymous request.
    const refused = await waitUntil('the route to be live', async () => {
      const a = await viaGateway(host, '/');
      return a.status === 403 ? a : undefined;
    }, 30_000, 25);
    timings.spawnToRouted = Date.now() - spawned.t0;
    expect(refused.body).toMatch(/not open to you/);
    expect(refused.body).not.toContain('Notes');
  });

  it('lets the owner in with the single-use link, which then works no more', async () => {
    const t0 = Date.now();
    openPath = pathOf(await link('alice', web.id));
    const opened = await viaGateway(host, openPath);
    expect(opened.status, opened.body).toBe(302);
    expect(opened.headers.location).toBe(`http://${host}:${gw.httpPort}/`);
    expect(String(opened.headers['set-cookie'])).toMatch(/^challenge-engine-access=c1\.[^;]+; Path=\/; HttpOnly; SameSite=Lax; Max-Age=\d+$/);
    aliceCookie = cookieOf(opened);
    const page = await pageWith(host, aliceCookie);
    timings.linkToPage = Date.now() - t0;
    timings.spawnToPage = Date.now() - spawnedAt;
    expect(page.body).toContain('<h1>Notes</h1>');
    const again = await viaGateway(host, openPath);
    expect(again.status).toBe(403);
    expect(again.body).toMatch(/no longer works/);
  });

  it('works the same from curl with --resolve', async () => {
    const { stdout } = await run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--resolve', `${host}:${gw.httpPort}:${gw.address}`, '-H', `cookie: ${aliceCookie}`, `http://${host}:${gw.httpPort}/`]);
    expect(stdout).toBe('200');
    const anonymous = await run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--resolve', `${host}:${gw.httpPort}:${gw.address}`, `http://${host}:${gw.httpPort}/`]);
    expect(anonymous.stdout).toBe('403');
  });

  it('opens in headless Chromium through a link; a browser without it gets the refusal page', async () => {
    // Debian's Chromium; the wildcard domain resolves to the Gateway's address, as wildcard DNS would.
    const browser = await chromium.launch({
      executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', `--host-resolver-rules=MAP *.${gw.domain} ${gw.address}`],
    });
    try {
      const owner = await (await browser.newContext()).newPage();
      const url = await link('alice', web.id);
      const t0 = Date.now();
      const opened = await owner.goto(url);
      timings.browserLinkToPage = Date.now() - t0;
      expect(opened?.status()).toBe(200);
      expect(owner.url()).toBe(`http://${host}:${gw.httpPort}/`);
      expect(await owner.locator('h1').textContent()).toBe('Notes');
      // The cookie is HttpOnly: the instance's own scripts cannot read it.
      expect(await owner.evaluate('document.cookie')).toBe('');
      expect((await owner.reload())?.status()).toBe(200);
      const stranger = await (await browser.newContext()).newPage();
      const refused = await stranger.goto(`http://${host}:${gw.httpPort}/`);
      expect(refused?.status()).toBe(403);
      expect(await stranger.locator('h1').textContent()).toBe('This instance is not open to you');
      const reused = await stranger.goto(url);
      expect(reused?.status()).toBe(403);
      expect(await stranger.locator('h1').textContent()).toBe('This link no longer works');
    } finally {
      await browser.close();
    }
  });

  it("refuses another player, their own cookie, forged cookies and links, and hosts that are not sessions, without a 5xx or echoing secrets", async () => {
    const bob = await spawn('bob', 'web-notes');
    const bobHost = bob.view.endpoints[0]?.externalHost ?? '';
    await waitUntil("bob's route", async () => ((await viaGateway(bobHost, '/')).status === 403 ? true : undefined), 30_000, 25);
    const bobOpen = await viaGateway(bobHost, pathOf(await link('bob', bob.view.id)));
    const bobCookie = cookieOf(bobOpen);
    expect(bobOpen.status).toBe(302);
    expect((await pageWith(bobHost, bobCookie)).body).toContain('<h1>Notes</h1>');
    const attempts: [string, string, string | undefined][] = [
      ['bob with his cookie on alice\'s host', '/', bobCookie],
      ['alice\'s cookie, tampered', '/', aliceCookie.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A'))],
      ['a forged cookie', '/', 'challenge-engine-access=c1.x.99999999999.AAAA'],
      ['bob\'s link on alice\'s host', pathOf(await link('bob', bob.view.id)), undefined],
      ['a tampered link', openPath.replace(/ticket=t1\.[^.]+/, 'ticket=t1.someone-else'), undefined],
      ['a link without a ticket', '/.challenge-engine/open', undefined],
    ];
    for (const [what, path, cookie] of attempts) {
      const a = await viaGateway(host, path, cookie);
      expect([what, a.status]).toEqual([what, 403]);
      expect(a.body).not.toMatch(/ticket|c1\./);
    }
    const nobody = await viaGateway(`i${'0'.repeat(24)}.${gw.domain}`, '/');
    expect(nobody.status).toBe(404);
    const stop = await app.inject({ method: 'DELETE', url: `/api/challenges/${bob.view.id}`, headers: await auth('bob') });
    expect(stop.statusCode).toBe(204);
  });

  it('serves the TCP instance through the TLS listener by SNI, and takes its flag', async () => {
    const { view, t0 } = await spawn('carol', 'pwn-echo');
    const e = view.endpoints[0];
    expect(e?.connect).toBe(`ncat --ssl ${e?.externalHost} ${gw.tlsPort}`);
    const text = await waitUntil('the echo through the TLS listener', () => viaTls(e?.externalHost ?? '', ['hello', '%s'], /flag\{[^}]+\}/), 30_000, 100);
    timings.spawnToTcp = Date.now() - t0;
    const flag = /flag\{[^}]+\}/.exec(text)?.[0] ?? '';
    // The same through openssl, as the connect command's alternative; killed after 5 s (the echo keeps the stream open).
    const openssl = run('openssl', ['s_client', '-connect', `${gw.address}:${gw.tlsPort}`, '-servername', e?.externalHost ?? '', '-CAfile', gw.caCert, '-verify_return_error', '-quiet'], { timeout: 5000 });
    openssl.child.stdin?.write('%s\n');
    const { stdout } = await openssl.catch((err: { stdout?: string }) => ({ stdout: err.stdout ?? '' }));
    expect(stdout).toContain(flag);
    const res = await app.inject({ method: 'POST', url: '/api/flags', headers: await auth('carol'), payload: { sessionId: view.id, flag } });
    expect(res.json()).toEqual({ correct: true });
  });

  it('removes the routes after stop: the host answers 404 from the gateway', async () => {
    const stop = await app.inject({ method: 'DELETE', url: `/api/challenges/${web.id}`, headers: await auth('alice') });
    expect(stop.statusCode).toBe(204);
    const t0 = Date.now();
    await waitUntil('the route gone', async () => ((await viaGateway(host, '/', aliceCookie)).status === 404 ? true : undefined), 60_000, 50);
    timings.stopToGone = Date.now() - t0;
  });
});

describe('a warm pool instance through the gateway', () => {
  const routesOf = async (session: string) => {
    const list = (await cluster.kube.custom.listNamespacedCustomObject({ group: 'gateway.networking.k8s.io', version: 'v1', namespace: cluster.namespace, plural: 'httproutes', labelSelector: `${LABEL_SESSION}=${session}` })) as { items: unknown[] };
    return list.items.length;
  };

  it('has no route and takes no traffic until claimed; the claimant then reaches it on a host of its own', async () => {
    await installChallengeLike(cluster.kube, cluster.namespace, 'warm-web', { pool: { size: 1 } });
    const warm = await waitUntil('a ready pool instance', async () => {
      const s = (await listSessions(cluster.kube, cluster.namespace)).find((x) => x.spec.challenge === 'warm-web' && isUnclaimedPool(x) && x.status?.phase === 'Running');
      return s;
    }, 120_000, 200);
    expect(await routesOf(warm.metadata.name)).toBe(0);
    expect(warm.status?.endpoints?.some((e) => e.externalHost !== undefined)).toBe(false);
    const t0 = Date.now();
    const { view } = await spawn('bob', 'warm-web');
    timings.claimToPublished = Date.now() - t0;
    expect(view.id).toBe(warm.metadata.name);
    const e = view.endpoints[0];
    const claimedHost = e?.externalHost ?? '';
    expect(claimedHost).toMatch(/^i[0-9a-f]{24}\./);
    expect(e?.route).toBe(`HTTPRoute ${view.id}-http`);
    expect(await routesOf(view.id)).toBe(1);
    const opened = await waitUntil('the claimed route to be live', async () => {
      const a = await viaGateway(claimedHost, pathOf(await link('bob', view.id)));
      return a.status === 302 ? a : undefined;
    }, 30_000, 100);
    const page = await pageWith(claimedHost, cookieOf(opened));
    timings.claimToPage = Date.now() - t0;
    expect(page.body).toContain('<h1>Notes</h1>');
    // Another player's cookie-less request is refused as for any instance.
    expect((await viaGateway(claimedHost, '/')).status).toBe(403);
  });
});
