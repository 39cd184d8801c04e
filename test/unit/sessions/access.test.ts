import { describe, it, expect } from 'vitest';
import type { ChallengeSession } from '../../../src/api/session.js';
import { accessKey, issueCookie } from '../../../src/access/tokens.js';
import type { LiveReads } from '../../../src/kube/live-reads.js';
import { createRecorder } from '../../../src/kube/recorder.js';
import { createMetrics } from '../../../src/metrics.js';
import { authorize, cookieName, normaliseHost, openLink, readCookie, ticketAnnotation, type AccessOptions } from '../../../src/sessions/access.js';
import type { PlayerDeps } from '../../../src/sessions/deps.js';
import { SessionWaits } from '../../../src/sessions/read-your-writes.js';
import { apiError, memoryCaches, RecordingWriter, silentLog } from '../../support/memory.js';
import { NAMESPACE, session, webChallenge } from '../reconcile/fixtures.js';

const NOW = new Date('2030-01-01T10:05:00Z');
const ALICE = { user: 'alice@example.org', admin: false };
const BOB = { user: 'bob@example.org', admin: false };
const HOST_A = 'iaaaaaaaaaaaaaaaaaaaaaaaa.ctf.example';
const HOST_B = 'ibbbbbbbbbbbbbbbbbbbbbbbb.ctf.example';

function running(name: string, user: string, uid: string, host: string): ChallengeSession {
  const s = session({ name, user, expiresAt: '2030-01-01T11:00:00Z', status: { phase: 'Running', endpoints: [{ name: 'http', protocol: 'http', host: `${name}.ctf.svc`, port: 8080, externalHost: host, url: `https://${host}`, route: `HTTPRoute ${name}-http` }] } });
  return { ...s, metadata: { ...s.metadata, uid, resourceVersion: '10' } };
}

function harness() {
  const mem = memoryCaches(NAMESPACE);
  const writer = new RecordingWriter();
  const server = new Map<string, ChallengeSession>();
  const put = (s: ChallengeSession) => {
    server.set(s.metadata.name, s);
    mem.sessions.put(s);
  };
  // Metadata patches land in the apiserver view and the cache; a stale resourceVersion conflicts.
  writer.fail = (w) => {
    const s = server.get(w.target.split(' ')[1] ?? '');
    return w.verb === 'patch-metadata' && w.resourceVersion && s && w.resourceVersion !== s.metadata.resourceVersion ? apiError(409, 'Conflict') : undefined;
  };
  writer.onWrite = (w) => {
    if (w.verb !== 'patch-metadata') return;
    const s = server.get(w.target.split(' ')[1] ?? '');
    if (!s) return;
    const patch = (w.body as { metadata: { annotations: Record<string, string | null> } }).metadata.annotations;
    const annotations = { ...s.metadata.annotations };
    for (const [k, v] of Object.entries(patch)) if (v === null) delete annotations[k]; else annotations[k] = v;
    put({ ...s, metadata: { ...s.metadata, annotations, resourceVersion: String(Number(s.metadata.resourceVersion) + 1) } });
  };
  const live: LiveReads = { session: (n) => Promise.resolve(server.get(n)), sessionsAt: () => Promise.resolve([]), secretValue: () => Promise.resolve(undefined), ping: () => Promise.resolve() };
  const d: PlayerDeps = { live, caches: mem.caches, writer, events: createRecorder(writer, silentLog), waits: new SessionWaits(mem.caches), log: silentLog, metrics: createMetrics(), flagKey: Buffer.alloc(32, 3), instanceOwner: 'user', now: () => NOW };
  const a: AccessOptions = { key: accessKey(d.flagKey), secure: true, origin: (host) => `https://${host}` };
  mem.challenges.put(webChallenge());
  put(running('s-a', ALICE.user, 'uid-a', HOST_A));
  put(running('s-b', BOB.user, 'uid-b', HOST_B));
  const open = (host: string, uri: string, cookie?: string) => authorize(d, a, { host, uri, cookie });
  return { d, a, writer, server, open };
}

const ticketOf = (url: string) => new URL(url).searchParams.get('ticket') ?? '';
const openUri = (url: string) => { const u = new URL(url); return `${u.pathname}${u.search}`; };

describe('openLink and authorize', () => {
  it('lets the owner in once through the link, then by the cookie it sets', async () => {
    const h = harness();
    const link = await openLink(h.d, h.a, ALICE, 's-a');
    expect(link.url.startsWith(`https://${HOST_A}/.challenge-engine/open?ticket=`)).toBe(true);
    expect(h.server.get('s-a')?.metadata.annotations?.[ticketAnnotation(ALICE.user)]).toBeDefined();
    const first = await h.open(`${HOST_A}:443`, openUri(link.url));
    expect(first).toMatchObject({ allow: false, status: 302, location: `https://${HOST_A}/`, cookie: { name: '__Host-challenge-engine-access', secure: true } });
    if (first.allow || first.status !== 302) throw new Error('no cookie');
    expect(h.server.get('s-a')?.metadata.annotations?.[ticketAnnotation(ALICE.user)]).toBeUndefined();
    const cookie = `other=1; ${first.cookie.name}=${first.cookie.value}`;
    expect(await h.open(HOST_A, '/notes', cookie)).toEqual({ allow: true });
    // The link works once.
    expect(await h.open(HOST_A, openUri(link.url))).toMatchObject({ status: 403, why: 'bad-link' });
    // The cookie is for its own host only.
    expect(await h.open(HOST_B, '/', cookie)).toMatchObject({ status: 403, why: 'not-yours' });
  });

  it('refuses no cookie, forged or foreign cookies, forged and cross-host links, unknown hosts', async () => {
    const h = harness();
    expect(await h.open(HOST_A, '/')).toMatchObject({ status: 403, why: 'not-yours' });
    const forged = issueCookie(accessKey(Buffer.alloc(32, 9)), HOST_A, 'uid-a', new Date('2031-01-01T00:00:00Z'));
    expect(await h.open(HOST_A, '/', `${cookieName(true)}=${forged}`)).toMatchObject({ status: 403 });
    const bobs = issueCookie(h.a.key, HOST_B, 'uid-b', new Date('2031-01-01T00:00:00Z'));
    expect(await h.open(HOST_A, '/', `${cookieName(true)}=${bobs}`)).toMatchObject({ status: 403 });
    const link = await openLink(h.d, h.a, BOB, 's-b');
    expect(await h.open(HOST_A, `/.challenge-engine/open?ticket=${ticketOf(link.url)}`)).toMatchObject({ status: 403, why: 'bad-link' });
    expect(await h.open(HOST_A, '/.challenge-engine/open?ticket=t1.uid-a.99999999999.x.y')).toMatchObject({ status: 403, why: 'bad-link' });
    for (const uri of ['http://[', '//evil.example/.challenge-engine/open?ticket=x', '\u0000']) expect(await h.open(HOST_A, uri)).toMatchObject({ allow: false, status: 403 });
    for (const host of ['inobody.ctf.example', 'evil..host', '', 'UPPER.CTF.EXAMPLE:99999999']) expect(await h.open(host, '/')).toMatchObject({ status: 404, why: 'unknown-host' });
  });

  it('only the newest link works, and a link for another player\'s session cannot be asked for', async () => {
    const h = harness();
    const old = await openLink(h.d, h.a, ALICE, 's-a');
    const fresh = await openLink(h.d, h.a, ALICE, 's-a');
    expect(await h.open(HOST_A, openUri(old.url))).toMatchObject({ status: 403 });
    expect(await h.open(HOST_A, openUri(fresh.url))).toMatchObject({ status: 302 });
    await expect(openLink(h.d, h.a, BOB, 's-a')).rejects.toMatchObject({ kind: 'NotFound' });
  });

  it('of two opens of one link at once, exactly one gets the cookie', async () => {
    const h = harness();
    const link = await openLink(h.d, h.a, ALICE, 's-a');
    const results = await Promise.all([h.open(HOST_A, openUri(link.url)), h.open(HOST_A, openUri(link.url))]);
    expect(results.map((r) => (r.allow ? 200 : r.status)).sort()).toEqual([302, 403]);
  });
});

describe('header parsing', () => {
  it('normalises hosts and reads one cookie by name', () => {
    expect(normaliseHost('I0.CTF.Example:8443')).toBe('i0.ctf.example');
    expect(normaliseHost('a.example, b.example')).toBe('a.example');
    expect(normaliseHost('bad host')).toBeUndefined();
    expect(normaliseHost(undefined)).toBeUndefined();
    expect(readCookie('a=1; b=2;c=3', 'b')).toBe('2');
    expect(readCookie('ab=1', 'b')).toBeUndefined();
  });
});
