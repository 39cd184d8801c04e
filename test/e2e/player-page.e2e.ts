import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { FastifyInstance } from 'fastify';
import { chromium, type Browser, type Page } from 'playwright-core';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { buildApp } from '../../src/http/app.js';
import { createTokenIssuer, createTokenVerifier } from '../../src/http/auth.js';
import { Caches } from '../../src/read-model/caches.js';
import { KubeSessionService } from '../../src/sessions/service.js';
import { createMetrics } from '../../src/metrics.js';
import type { Engine } from '../../src/engine.js';
import { REPO_ROOT } from '../../scripts/lib/control-plane.js';
import { GATEWAY } from '../../scripts/lib/real-node.js';
import { gatewayEngineEnv, type GatewayState } from '../../scripts/lib/gateway.js';
import { useCluster, waitUntil } from '../support/kube.js';
import { installSamples, startTestEngine, TEST_TOKEN_SECRET } from '../support/engine.js';
import { CHALLENGE_PLURAL, GROUP, VERSION } from '../../src/api/group.js';

/**
 * The player page in Debian's Chromium (playwright-core), against the real node and gateway:
 * sign-in by the fragment, Start until ready, Open through the gateway, a wrong then the right
 * flag, the countdown, Extend up to the maximum, Stop, markup shown as text, an expired sign-in,
 * the organiser view and phone width. Screenshots of each step go to test-artifacts/player-page/.
 */
const run = promisify(execFile);
const PSA = { 'pod-security.kubernetes.io/enforce': 'restricted' };
const cluster = useCluster(import.meta.filename, PSA);
const gw = inject('realNode').gateway as GatewayState;
const issuer = createTokenIssuer(TEST_TOKEN_SECRET);
const SCOREBOARD = 'https://scoreboard.example.org/challenges';
const ARTIFACTS = join(REPO_ROOT, 'test-artifacts', 'player-page');
const MARKUP = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"><b>bold?</b>';
let engine: Engine;
let app: FastifyInstance;
let caches: Caches;
let browser: Browser;
let base: string;
let step = 0;

const token = (user: string, opts: { admin?: boolean; ttlSeconds?: number; team?: string } = {}) => issuer.issue({ user, admin: opts.admin ?? false, ttlSeconds: opts.ttlSeconds ?? 3600, ...(opts.team ? { team: opts.team } : {}) });

async function shot(page: Page, name: string): Promise<void> {
  step += 1;
  await page.screenshot({ path: join(ARTIFACTS, `${String(step).padStart(2, '0')}-${name}.png`), fullPage: true });
}

async function signIn(user: string, opts: { admin?: boolean; ttlSeconds?: number; width?: number; team?: string } = {}): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: opts.width ?? 1100, height: 900 } });
  const page = await context.newPage();
  // Nothing the API sends may run as script: a dialog or a marker set by injected markup fails the test.
  page.on('dialog', (d) => {
    throw new Error(`unexpected dialog: ${d.message()}`);
  });
  await page.goto(`${base}/play#token=${await token(user, opts)}`);
  return page;
}

const card = (page: Page, title: string) => page.getByRole('article', { name: new RegExp(`^${title.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`) });

/**
 * The instance's heading. The gateway may still be loading the Pod's endpoint for a moment after
 * the session turns ready ("no available server", 503): like a player, reload until it answers.
 */
async function instancePage(instance: Page): Promise<string> {
  const h1 = await instance.locator('h1').textContent({ timeout: 1000 }).catch(() => '');
  if (h1 !== 'Notes') await instance.reload().catch(() => undefined);
  return h1 ?? '';
}

/** "m:ss" or "h:mm:ss" to seconds. */
function seconds(text: string): number {
  return text.split(':').map(Number).reduce((acc, n) => acc * 60 + n, 0);
}

/** A Challenge running the web sample's image, with these texts and settings. */
function installWebChallenge(name: string, spec: Record<string, unknown>): Promise<unknown> {
  return cluster.kube.custom.createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace: cluster.namespace,
    plural: CHALLENGE_PLURAL,
    body: {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: 'Challenge',
      metadata: { name },
      spec: {
        containers: [{ name: 'app', image: 'challenge-engine/web-notes:1.0', ports: [{ name: 'http', containerPort: 8080 }], readinessProbe: { httpGet: { path: '/healthz', port: 8080 }, periodSeconds: 2 }, scratchPaths: ['/tmp'] }],
        expose: [{ name: 'http', port: 8080, protocol: 'http' }],
        flag: { dynamic: { format: 'CTF{%s}', length: 16 }, delivery: 'env', envName: 'FLAG' },
        ...spec,
      },
    },
  });
}

beforeAll(async () => {
  expect(gw, 'the real node state records no gateway').toBeDefined();
  await run(process.execPath, [join(REPO_ROOT, 'node_modules', 'tsx', 'dist', 'cli.mjs'), join(REPO_ROOT, 'scripts', 'build-web.ts')]);
  await mkdir(ARTIFACTS, { recursive: true });
  await installSamples(cluster.kube, cluster.namespace);
  // A challenge whose texts are markup, with a short maximum lifetime (one extension reaches it).
  await installWebChallenge('markup-notes', { title: '<i>Markup</i> notes', category: 'misc', points: 50, description: MARKUP, lifetime: { default: '5m', max: '6m', extension: '1m' } });
  // The web sample owned by teams: one instance per team.
  await installWebChallenge('team-notes', { title: 'Team notes', category: 'team', points: 150, description: 'Played by teams.', owner: 'team' });
  const log = pino({ level: 'silent' });
  const metrics = createMetrics();
  ({ engine } = await startTestEngine(cluster.kubeconfig, cluster.namespace, {
    CTF_MAX_SESSIONS_PER_USER: '5',
    ...gatewayEngineEnv(gw),
  }));
  caches = Caches.watching(engine.kube, cluster.namespace, log);
  await caches.start();
  const service = new KubeSessionService({ kube: engine.kube, caches, writer: engine.writer, log, metrics, flagKey: engine.flagKey, maxSessionsPerUser: 5, publicHttp: { scheme: 'http', port: gw.httpPort } });
  app = await buildApp({ service, tokens: createTokenVerifier(TEST_TOKEN_SECRET), metrics, log, corsOrigins: [], page: { dir: join(REPO_ROOT, 'dist', 'web'), scoreboardUrl: SCOREBOARD } });
  await app.listen({ host: GATEWAY, port: 0 });
  const port = (app.server.address() as { port: number }).port;
  base = `http://${GATEWAY}:${port}`;
  const middleware = { apiVersion: 'traefik.io/v1alpha1', kind: 'Middleware', metadata: { name: 'challenge-engine-access', namespace: cluster.namespace }, spec: { forwardAuth: { address: `${base}/gateway/auth` } } };
  const child = run(inject('kubectl'), ['--kubeconfig', inject('kubeconfig'), 'apply', '--server-side', '-f', '-']);
  child.child.stdin?.end(JSON.stringify(middleware));
  await child;
  // *.ctf.localhost resolves to the loopback address in Chromium; the gateway is relayed there.
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', ...(gw.hostRelays.length ? [] : [`--host-resolver-rules=MAP *.${gw.domain} ${gw.address}`])],
  });
});

afterAll(async () => {
  await browser?.close();
  await app?.close();
  await caches?.stop();
  await engine?.stop();
});

describe('the player page in a real browser', () => {
  it('plays a whole journey: start, wait, open, a wrong then the right flag, countdown, extend, stop', async () => {
    const page = await signIn('alice');
    // The token leaves the address bar at once and stays in session storage.
    await expect.poll(() => page.url()).toBe(`${base}/play`);
    expect(await page.evaluate('sessionStorage.length')).toBe(1);
    await expect.poll(() => page.getByRole('heading', { name: 'web', level: 2 }).count()).toBe(1);
    await shot(page, 'catalogue');
    const web = card(page, 'Notes');
    expect(await web.textContent()).toContain('200 points');

    await web.getByRole('button', { name: 'Start' }).click();
    await expect.poll(() => web.getByRole('status').textContent().catch(() => '')).toMatch(/Starting/);
    await shot(page, 'starting');
    await web.getByRole('button', { name: 'Open' }).waitFor({ timeout: 90_000 });
    await shot(page, 'ready');

    const popup = page.context().waitForEvent('page');
    await web.getByRole('button', { name: 'Open' }).click();
    const instance = await popup;
    await instance.waitForLoadState();
    await expect.poll(() => instancePage(instance), { timeout: 20_000, interval: 250 }).toBe('Notes');
    expect(new URL(instance.url()).hostname.endsWith(`.${gw.domain}`)).toBe(true);
    await shot(instance, 'instance');
    await instance.close();

    const flagBox = web.getByRole('textbox', { name: 'Flag' });
    await flagBox.fill('CTF{not-it}');
    await web.getByRole('button', { name: 'Submit' }).click();
    await expect.poll(() => web.getByRole('status').textContent().catch(() => '')).toMatch(/Wrong flag/);
    await shot(page, 'wrong-flag');
    const sessions = caches.sessionsOfUser('alice');
    const id = sessions.find((s) => s.spec.challenge === 'web-notes')?.metadata.name ?? '';
    const secret = await cluster.kube.core.readNamespacedSecret({ name: `${id}-flag`, namespace: cluster.namespace });
    const flag = Buffer.from(secret.data?.flag ?? '', 'base64').toString('utf8');
    // By keyboard: type into the box and press Enter.
    await flagBox.fill(flag);
    await flagBox.press('Enter');
    await expect.poll(() => web.getByRole('status').textContent().catch(() => '')).toMatch(/Correct/);
    await shot(page, 'right-flag');

    const timer = web.getByRole('timer');
    const t1 = seconds((await timer.textContent()) ?? '');
    await page.waitForTimeout(2500);
    const t2 = seconds((await timer.textContent()) ?? '');
    expect(t2).toBeLessThan(t1);
    expect(t1 - t2).toBeLessThanOrEqual(4);
    await web.getByRole('button', { name: 'Extend' }).click();
    await expect.poll(async () => seconds((await timer.textContent()) ?? ''), { timeout: 10_000 }).toBeGreaterThan(t2 + 25 * 60);
    await shot(page, 'extended');

    await web.getByRole('button', { name: 'Stop' }).click();
    await web.getByRole('button', { name: 'Start' }).waitFor({ timeout: 30_000 });
    await shot(page, 'stopped');
    await page.context().close();
  });

  it('shows names and descriptions with markup as text, and disables Extend at the maximum lifetime with the reason', async () => {
    const page = await signIn('carol');
    const markup = card(page, '<i>Markup</i> notes');
    await markup.waitFor();
    expect(await markup.locator('.description').textContent()).toBe(MARKUP);
    expect(await markup.locator('script, img, b, i').count()).toBe(0);
    await markup.getByRole('button', { name: 'Start' }).click();
    await markup.getByRole('button', { name: 'Open' }).waitFor({ timeout: 90_000 });
    const extend = markup.getByRole('button', { name: 'Extend' });
    expect(await extend.isEnabled()).toBe(true);
    await extend.click();
    // Extend is also disabled while its own request runs: wait for the reason, then check the button.
    await expect.poll(async () => (await markup.textContent()) ?? '', { timeout: 10_000 }).toContain('At the maximum lifetime of 6 min');
    expect(await extend.isDisabled()).toBe(true);
    expect(await page.evaluate('window.__pwned')).toBeUndefined();
    await shot(page, 'markup-and-max-lifetime');
    await page.context().close();
  });

  it('sends a player whose sign-in expired back to the scoreboard', async () => {
    const page = await signIn('dave', { ttlSeconds: 3 });
    await page.getByRole('heading', { name: 'web', level: 2 }).waitFor();
    const back = page.getByRole('link', { name: 'Back to the scoreboard' });
    await back.waitFor({ timeout: 10_000 });
    expect(await back.getAttribute('href')).toBe(SCOREBOARD);
    expect(await page.getByRole('alert').textContent()).toMatch(/expired/);
    expect(await page.evaluate('sessionStorage.length')).toBe(0);
    await shot(page, 'expired-sign-in');
    // Without any token the page says where to sign in.
    const bare = await (await browser.newContext()).newPage();
    await bare.goto(`${base}/play`);
    await bare.getByRole('link', { name: 'Back to the scoreboard' }).waitFor();
    await bare.context().close();
    await page.context().close();
  });

  it('gives organisers every instance by challenge and owner, and stops any of them', async () => {
    const player = await signIn('erin');
    const web = card(player, 'Notes');
    await web.getByRole('button', { name: 'Start' }).click();
    await web.getByRole('button', { name: 'Open' }).waitFor({ timeout: 90_000 });
    const id = (caches.sessionsOfUser('erin')).find((s) => s.spec.challenge === 'web-notes')?.metadata.name ?? '';
    const admin = await signIn('organiser', { admin: true });
    const table = admin.getByRole('table', { name: 'web-notes' });
    await table.waitFor({ timeout: 20_000 });
    expect(await table.textContent()).toContain('erin');
    await shot(admin, 'organiser');
    await admin.getByRole('button', { name: `Stop ${id}` }).click();
    await waitUntil('erin\'s session gone', async () => ((caches.sessionsOfUser('erin')).some((s) => s.metadata.name === id) ? undefined : true), 30_000, 200);
    await player.reload();
    await card(player, 'Notes').getByRole('button', { name: 'Start' }).waitFor({ timeout: 20_000 });
    await admin.context().close();
    await player.context().close();
  });

  it("shows a team's instance to every member of the team and to no other team", async () => {
    const rita = await signIn('rita', { team: 'red' });
    const ritaCard = card(rita, 'Team notes');
    await ritaCard.waitFor();
    expect(await ritaCard.textContent()).toContain('One instance per team');
    await ritaCard.getByRole('button', { name: 'Start' }).click();
    await ritaCard.getByRole('button', { name: 'Open' }).waitFor({ timeout: 90_000 });
    // A second member of the team: the same instance, ready, no Start.
    const rob = await signIn('rob', { team: 'red' });
    const robCard = card(rob, 'Team notes');
    await robCard.getByRole('button', { name: 'Open' }).waitFor({ timeout: 20_000 });
    expect(await robCard.getByRole('button', { name: 'Start' }).count()).toBe(0);
    await shot(rob, 'team-member');
    const popup = rob.context().waitForEvent('page');
    await robCard.getByRole('button', { name: 'Open' }).click();
    const instance = await popup;
    await expect.poll(() => instancePage(instance), { timeout: 20_000, interval: 250 }).toBe('Notes');
    // Another team sees no instance of it and would start its own.
    const bea = await signIn('bea', { team: 'blue' });
    const beaCard = card(bea, 'Team notes');
    await beaCard.getByRole('button', { name: 'Start' }).waitFor({ timeout: 20_000 });
    expect(await beaCard.getByRole('button', { name: 'Open' }).count()).toBe(0);
    await shot(bea, 'other-team');
    const teamSessions = caches.allSessions().filter((s) => s.spec.challenge === 'team-notes');
    expect(teamSessions).toHaveLength(1);
    for (const p of [rita, rob, bea]) await p.context().close();
  });

  it('works at phone width without sideways scrolling, every control reachable by keyboard', async () => {
    const page = await signIn('frank', { width: 375 });
    await page.getByRole('heading', { name: 'web', level: 2 }).waitFor();
    expect(await page.evaluate('document.documentElement.scrollWidth')).toBeLessThanOrEqual(375);
    // Tab reaches a Start button and Enter presses it.
    let focused = '';
    for (let i = 0; i < 20 && focused !== 'Start'; i++) {
      await page.keyboard.press('Tab');
      focused = String(await page.evaluate("document.activeElement?.textContent?.trim() ?? ''"));
    }
    expect(focused).toBe('Start');
    await page.keyboard.press('Enter');
    await page.getByRole('button', { name: 'Stop' }).first().waitFor({ timeout: 90_000 });
    expect(await page.evaluate('document.documentElement.scrollWidth')).toBeLessThanOrEqual(375);
    await shot(page, 'phone');
    await page.context().close();
  });
});
