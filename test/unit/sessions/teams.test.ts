import { describe, it, expect } from 'vitest';
import { LABEL_TEAM_HASH, LABEL_USER_HASH } from '../../../src/api/group.js';
import type { Owner } from '../../../src/api/session.js';
import { desiredSession } from '../../../src/reconcile/desired-session.js';
import { formatExpiry, initialExpiry } from '../../../src/reconcile/expiry.js';
import { teamHash, userHash } from '../../../src/reconcile/names.js';
import { slotName, TEAM_REQUIRED } from '../../../src/sessions/owner.js';
import { sessionName, slotOrder } from '../../../src/sessions/spawn.js';
import { NAMESPACE, webChallenge } from '../reconcile/fixtures.js';
import { BLUE, creates, LIMIT, LONER, NOW, objectWritesOf, RED_A, RED_B, teamChallenge, teamHarness } from './team-harness.js';

/**
 * Team-owned instances through the player domain: the exact writes of a team's spawns, one
 * instance per team and challenge whichever member asks, the limit per team, and what members
 * of the team, of another team and callers without a team may do with it.
 */

const RED: Owner = { mode: 'team', team: 'red' };
const redSlot = (challenge: string, i: number) => slotName(RED, slotOrder(challenge, LIMIT)[i] ?? 0);
const HOST = 'iaaaaaaaaaaaaaaaaaaaaaaaa.ctf.example';

describe('spawning a team-owned instance', () => {
  it('creates exactly the team\u2019s session: named by the team, labelled with its hash, started by the caller', async () => {
    const h = teamHarness();
    const out = await h.service.spawn(RED_A, 'web-notes');
    const name = redSlot('web-notes', 0);
    expect(name).toMatch(/^t-[0-9a-f]{16}-[0-9]$/);
    expect(out).toMatchObject({ created: true, session: { id: name, user: RED_A.user, team: 'red', owner: 'team' } });
    const body = desiredSession({ name, namespace: NAMESPACE, challenge: 'web-notes', user: RED_A.user, team: 'red', owner: 'team', expiresAt: formatExpiry(initialExpiry(webChallenge().spec, NOW)), requestedAt: NOW.toISOString() });
    expect(h.writer.writes).toEqual([{ verb: 'create', target: `ChallengeSession ${name}`, body }]);
    expect(body.spec).toEqual({ challenge: 'web-notes', user: RED_A.user, team: 'red', owner: 'team' });
    expect(body.metadata.labels).toMatchObject({ [LABEL_TEAM_HASH]: teamHash('red'), [LABEL_USER_HASH]: userHash(RED_A.user) });
  });

  it('gives a second member the same instance, created false, without writing', async () => {
    const h = teamHarness();
    const first = await h.service.spawn(RED_A, 'web-notes');
    const second = await h.service.spawn(RED_B, 'web-notes');
    expect(second).toEqual({ created: false, session: first.session });
    expect(creates(h.writer)).toEqual([first.session.id]);
  });

  it('answers with the team\u2019s instance when another replica created it first (the cache has not seen it)', async () => {
    const h = teamHarness();
    const name = redSlot('web-notes', 0);
    h.held({ name, challenge: 'web-notes', caller: RED_B, owner: 'team', uid: 'winner' });
    const out = await h.service.spawn(RED_A, 'web-notes');
    expect(out).toMatchObject({ created: false, session: { id: name, user: RED_B.user, owner: 'team' } });
    expect(objectWritesOf(h.writer)).toEqual([`create ${name} (refused)`]);
  });

  it('gives way to an older team session of the same challenge in another slot', async () => {
    const h = teamHarness();
    const older = redSlot('web-notes', 2);
    h.held({ name: older, challenge: 'web-notes', caller: RED_B, owner: 'team', uid: 'older' });
    const out = await h.service.spawn(RED_A, 'web-notes');
    expect(out).toMatchObject({ created: false, session: { id: older } });
    const mine = redSlot('web-notes', 0);
    expect(objectWritesOf(h.writer)).toEqual([`create ${mine}`, `delete ${mine}`]);
  });

  it('gives another team its own instance', async () => {
    const h = teamHarness();
    const red = await h.service.spawn(RED_A, 'web-notes');
    const blue = await h.service.spawn(BLUE, 'web-notes');
    expect(blue.created).toBe(true);
    expect(blue.session.id).toBe(slotName({ mode: 'team', team: 'blue' }, slotOrder('web-notes', LIMIT)[0] ?? 0));
    expect(blue.session.id).not.toBe(red.session.id);
  });

  it('counts the limit per team, whichever member asks; each member keeps their own slots for user challenges', async () => {
    const h = teamHarness();
    for (const c of ['team-1', 'team-2', 'team-3', 'team-4']) h.mem.challenges.put(teamChallenge(c));
    await h.service.spawn(RED_A, 'team-1');
    await h.service.spawn(RED_B, 'team-2');
    await h.service.spawn(RED_A, 'team-3');
    await expect(h.service.spawn(RED_B, 'team-4')).rejects.toMatchObject({ kind: 'LimitReached', message: `at most ${LIMIT} sessions at a time per team; stop one first` });
    expect(creates(h.writer)).toHaveLength(LIMIT);
    // Another team and the members' own sessions have budgets of their own.
    expect((await h.service.spawn(BLUE, 'team-4')).created).toBe(true);
    const own = await h.service.spawn(RED_B, 'pwn-echo');
    expect(own).toMatchObject({ created: true, session: { id: slotName({ mode: 'user', user: RED_B.user }, slotOrder('pwn-echo', LIMIT)[0] ?? 0), owner: 'user' } });
  });

  it('follows CTF_INSTANCE_OWNER for a Challenge without spec.owner, and the Challenge\u2019s own value over it', async () => {
    const h = teamHarness('team');
    const pwn = await h.service.spawn(RED_A, 'pwn-echo');
    expect(pwn.session).toMatchObject({ id: redSlot('pwn-echo', 0), owner: 'team' });
    h.mem.challenges.put(webChallenge({ owner: 'user' }));
    expect((await h.service.spawn(RED_A, 'web-notes')).session).toMatchObject({ id: sessionName(RED_A.user, slotOrder('web-notes', LIMIT)[0] ?? 0), owner: 'user' });
    expect(h.service.catalogue().map((c) => [c.name, c.owner])).toEqual([['pwn-echo', 'team'], ['web-notes', 'user']]);
    expect(teamHarness().service.catalogue().map((c) => [c.name, c.owner])).toEqual([['pwn-echo', 'user'], ['web-notes', 'team']]);
  });

  it('never lets a member\u2019s own spawn give way to a team session they started', async () => {
    const h = teamHarness();
    h.mem.challenges.put(webChallenge({ owner: 'user' }));
    // A team session of web-notes that RED_A started (before the Challenge's owner changed),
    // not in this cache: it carries RED_A's user hash, but it is not RED_A's own.
    h.held({ name: redSlot('web-notes', 0), challenge: 'web-notes', caller: RED_A, owner: 'team', uid: 'team-one' });
    const out = await h.service.spawn(RED_A, 'web-notes');
    expect(out).toMatchObject({ created: true, session: { owner: 'user', user: RED_A.user } });
    expect(objectWritesOf(h.writer)).toEqual([`create ${out.session.id}`]);
  });
});

describe('using a team-owned instance', () => {
  async function spawned() {
    const h = teamHarness();
    const id = (await h.service.spawn(RED_A, 'web-notes')).session.id;
    h.writer.writes.length = 0;
    return { h, id };
  }

  it('every member lists and reads it; another team does not see it (NotFound)', async () => {
    const { h, id } = await spawned();
    for (const member of [RED_A, RED_B]) {
      expect(h.service.list(member).map((s) => s.id)).toEqual([id]);
      expect(h.service.get(member, id)).toMatchObject({ id, owner: 'team', team: 'red' });
      expect((await h.service.waitReady(member, id, 0)).id).toBe(id);
    }
    expect(h.service.list(BLUE)).toEqual([]);
    expect(() => h.service.get(BLUE, id)).toThrow(expect.objectContaining({ kind: 'NotFound' }));
    expect(h.service.list({ ...LONER, admin: true }, true).map((s) => s.id)).toEqual([id]);
  });

  it('a member extends and stops it; another team can do neither, and nothing is written for it', async () => {
    const { h, id } = await spawned();
    await expect(h.service.extend(BLUE, id)).rejects.toMatchObject({ kind: 'NotFound' });
    await expect(h.service.stop(BLUE, id)).rejects.toMatchObject({ kind: 'NotFound' });
    expect(h.writer.writes).toEqual([]);
    const extended = await h.service.extend(RED_B, id);
    expect(extended.expiresAt).toBe('2030-01-01T11:35:00Z');
    await h.service.stop(RED_B, id);
    expect(objectWritesOf(h.writer)).toEqual([`patch-metadata ${id}`, `delete ${id}`]);
    expect(h.service.list(RED_A)).toEqual([]);
  });

  it('refuses to extend a queued session (its lifetime starts at admission), and writes nothing', async () => {
    const { h, id } = await spawned();
    const s = h.server.get(id);
    if (!s) throw new Error('not spawned');
    const queued = { ...s, status: { phase: 'Queued' as const, reason: 'EngineCapacity', message: 'position 1' } };
    h.server.set(id, queued);
    h.mem.sessions.put(queued);
    await expect(h.service.extend(RED_B, id)).rejects.toMatchObject({ kind: 'Queued' });
    expect(h.writer.writes).toEqual([]);
    // Admitted (and its lifetime started): extensions work again.
    const admitted = { ...queued, status: { phase: 'Provisioning' as const, admittedAt: '2030-01-01T10:04:00Z' } };
    h.server.set(id, admitted);
    h.mem.sessions.put(admitted);
    expect((await h.service.extend(RED_B, id)).expiresAt).toBe('2030-01-01T11:35:00Z');
  });

  it('a member who did not start it opens it: the link and the cookie it leaves pass the gateway', async () => {
    const { h, id } = await spawned();
    h.running(id, HOST);
    await expect(h.service.openLink(BLUE, id)).rejects.toMatchObject({ kind: 'NotFound' });
    const link = await h.service.openLink(RED_B, id);
    const u = new URL(link.url);
    const opened = await h.open(HOST, `${u.pathname}${u.search}`);
    if (opened.allow || opened.status !== 302) throw new Error(`expected a redirect, got ${JSON.stringify(opened)}`);
    expect(await h.open(HOST, '/', `${opened.cookie.name}=${opened.cookie.value}`)).toEqual({ allow: true });
    expect(await h.open(HOST, '/')).toMatchObject({ status: 403, why: 'not-yours' });
  });

  it('two members asking for links at once each get one that works; a member\'s newer link replaces only their own', async () => {
    const { h, id } = await spawned();
    h.running(id, HOST);
    const uri = (url: string) => `${new URL(url).pathname}${new URL(url).search}`;
    const annOld = await h.service.openLink(RED_A, id);
    const [ann, ben] = await Promise.all([h.service.openLink(RED_A, id), h.service.openLink(RED_B, id)]);
    // Ann's first link was replaced by her second; Ben's link did not replace Ann's.
    expect(await h.open(HOST, uri(annOld.url))).toMatchObject({ status: 403, why: 'bad-link' });
    expect(await h.open(HOST, uri(ben.url))).toMatchObject({ status: 302 });
    expect(await h.open(HOST, uri(ann.url))).toMatchObject({ status: 302 });
    // Each works once.
    expect(await h.open(HOST, uri(ben.url))).toMatchObject({ status: 403, why: 'bad-link' });
  });

  it('refuses a token without a team on every call about it, and a spawn of a team challenge, without a write', async () => {
    const { h, id } = await spawned();
    h.running(id, HOST);
    const calls: [string, () => unknown][] = [
      ['spawn', () => h.service.spawn(LONER, 'web-notes')],
      ['get', () => h.service.get(LONER, id)],
      ['wait', () => h.service.waitReady(LONER, id, 0)],
      ['extend', () => h.service.extend(LONER, id)],
      ['stop', () => h.service.stop(LONER, id)],
      ['open', () => h.service.openLink(LONER, id)],
      ['flag by session', () => h.service.submitFlag(LONER, { sessionId: id }, 'CTF{x}')],
      ['flag by challenge', () => h.service.submitFlag(LONER, { challenge: 'web-notes' }, 'CTF{x}')],
      // The same answer for a team's slot name that holds nothing, so it tells nothing.
      ['get an unused team slot', () => h.service.get(LONER, 't-0123456789abcdef-2')],
    ];
    for (const [what, call] of calls) {
      await expect((async () => call())(), what).rejects.toMatchObject({ kind: 'TeamRequired', message: TEAM_REQUIRED });
    }
    expect(h.writer.writes).toEqual([]);
    expect(h.service.list(LONER)).toEqual([]);
    // Their own sessions of user challenges are not affected.
    expect((await h.service.spawn(LONER, 'pwn-echo')).created).toBe(true);
    expect(() => h.service.get(LONER, sessionName(RED_A.user, 0))).toThrow(expect.objectContaining({ kind: 'NotFound' }));
  });
});

describe('flags of a team-owned instance', () => {
  const sharing = async (h: ReturnType<typeof teamHarness>) => (await h.metrics.flagSharing.get()).values[0]?.value ?? 0;
  const events = async (h: ReturnType<typeof teamHarness>) => {
    await new Promise((r) => setTimeout(r, 10));
    return h.writer.events().map((e) => ({ target: e.target, ...(e.body as { reason: string; message: string }) }));
  };

  it('a member who did not start it solves it, by challenge or by session', async () => {
    const h = teamHarness();
    const id = (await h.service.spawn(RED_A, 'web-notes')).session.id;
    const flag = h.flagOf(id);
    expect(await h.service.submitFlag(RED_B, { challenge: 'web-notes' }, flag)).toEqual({ correct: true });
    expect(h.service.get(RED_A, id).solved).toBe(true);
    expect(await h.service.submitFlag(RED_A, { sessionId: id }, flag)).toEqual({ correct: true });
    expect(objectWritesOf(h.writer).filter((w) => w.startsWith('patch-status'))).toEqual([`patch-status ${id}`]);
  });

  it('reports team A\u2019s flag submitted by a member of team B as suspected sharing, naming both teams', async () => {
    const h = teamHarness();
    const red = (await h.service.spawn(RED_A, 'web-notes')).session.id;
    const blue = (await h.service.spawn(BLUE, 'web-notes')).session.id;
    expect(await h.service.submitFlag(BLUE, { sessionId: blue }, h.flagOf(red))).toEqual({ correct: false });
    expect(await sharing(h)).toBe(1);
    expect(await events(h)).toEqual([
      { target: `ChallengeSession ${red}`, type: 'Warning', reason: 'FlagShared', message: `User ${BLUE.user} of team blue (session ${blue}) submitted the flag of session ${red} (team red)` },
    ]);
  });

  it('does not report a member who submits the team\u2019s flag on another session of theirs', async () => {
    const h = teamHarness();
    const red = (await h.service.spawn(RED_A, 'web-notes')).session.id;
    // RED_B's own web-notes session, from before the Challenge was played by teams.
    const own = h.held({ name: sessionName(RED_B.user, 0), challenge: 'web-notes', caller: RED_B, uid: 'own', cached: true });
    expect(await h.service.submitFlag(RED_B, { sessionId: own.metadata.name }, h.flagOf(red))).toEqual({ correct: false });
    expect(await sharing(h)).toBe(0);
    expect(await events(h)).toEqual([]);
  });

  it('in user mode still reports a teammate\u2019s flag as sharing, as before teams', async () => {
    const h = teamHarness();
    const a = (await h.service.spawn(RED_A, 'pwn-echo')).session.id;
    const b = (await h.service.spawn(RED_B, 'pwn-echo')).session.id;
    expect(await h.service.submitFlag(RED_B, { sessionId: b }, h.flagOf(a))).toEqual({ correct: false });
    expect(await sharing(h)).toBe(1);
    expect((await events(h)).map((e) => e.message)).toEqual([`User ${RED_B.user} (session ${b}) submitted the flag of session ${a} (user ${RED_A.user})`]);
  });
});
