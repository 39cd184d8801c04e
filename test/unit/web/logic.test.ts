import { describe, expect, it } from 'vitest';
import { byCategory, countdown, explain, extendBlocked, parseConnect, queueText, tcpCommands, tokenFromFragment, tokenInfo } from '../../../web/src/logic.js';

const b64url = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');

describe('the player page logic', () => {
  it('says where a waiting instance stands in the queue, and why', () => {
    expect(queueText({ position: 3, ahead: 2, reason: 'EngineCapacity' })).toBe('Queued: position 3 (all instances are in use; it starts on its own)');
    expect(queueText({ position: 1, ahead: 0, reason: 'ClusterFull' })).toBe('Queued: position 1 (the cluster is full; it starts on its own)');
    expect(queueText({ position: 2, ahead: 1, reason: 'Other' })).toBe('Queued: position 2');
    expect(queueText(undefined)).toBe('Queued: starting soon');
  });

  it('counts down in minutes and seconds, hours when long, and says expired at the end', () => {
    const now = Date.parse('2026-12-01T10:00:00Z');
    expect(countdown('2026-12-01T10:12:05Z', now)).toBe('12:05');
    expect(countdown('2026-12-01T11:02:03Z', now)).toBe('1:02:03');
    expect(countdown('2026-12-01T10:00:09Z', now)).toBe('0:09');
    expect(countdown('2026-12-01T10:00:00Z', now)).toBe('expired');
    expect(countdown('not a date', now)).toBe('');
  });

  it('blocks Extend only at the maximum lifetime, and says why', () => {
    expect(extendBlocked('2026-12-01T10:00:00Z', '2026-12-01T10:30:00Z', 7200)).toBeUndefined();
    expect(extendBlocked('2026-12-01T10:00:00Z', '2026-12-01T12:00:00Z', 7200)).toBe('At the maximum lifetime of 2 h');
    expect(extendBlocked('2026-12-01T10:00:00Z', '2026-12-01T10:45:00Z', 2700)).toBe('At the maximum lifetime of 45 min');
    expect(extendBlocked('', '2026-12-01T12:00:00Z', 7200)).toBeUndefined();
  });

  it('gives the ncat, openssl and pwntools forms for a TCP port behind the TLS listener', () => {
    expect(parseConnect('ncat --ssl i0abc.ctf.example.org 443')).toEqual({ host: 'i0abc.ctf.example.org', port: 443 });
    expect(parseConnect('rm -rf /')).toBeUndefined();
    expect(tcpCommands('h.example', 8443).map((c) => c.command)).toEqual([
      'ncat --ssl h.example 8443',
      'openssl s_client -quiet -connect h.example:8443 -servername h.example',
      "remote('h.example', 8443, ssl=True, sni='h.example')",
    ]);
  });

  it('explains API errors in plain words', () => {
    expect(explain({ status: 401 })).toMatch(/expired.*scoreboard/);
    expect(explain({ status: 429, retryAfterSeconds: 7 })).toBe('Too many attempts. Try again in 7 seconds.');
    expect(explain({ status: 409, detail: 'at most 3 sessions at a time; stop one first' })).toBe('at most 3 sessions at a time; stop one first');
    expect(explain({ status: 0 })).toMatch(/cannot be reached/);
    expect(explain({ status: 500, title: 'Internal error' })).toBe('Internal error');
  });

  it('takes a JWT-shaped token from the fragment and nothing else', () => {
    expect(tokenFromFragment('#token=aaa.bbb.ccc')).toBe('aaa.bbb.ccc');
    expect(tokenFromFragment('#other=1&token=a-b_c.d.e')).toBe('a-b_c.d.e');
    expect(tokenFromFragment('#token=<script>')).toBeUndefined();
    expect(tokenFromFragment('')).toBeUndefined();
  });

  it('reads user, team, role and expiry from a token for display only', () => {
    const token = `${b64url({ alg: 'HS256' })}.${b64url({ sub: 'alice', team: 'red', role: 'admin', exp: 1800000000 })}.sig`;
    expect(tokenInfo(token)).toEqual({ user: 'alice', team: 'red', admin: true, expiresAt: 1800000000000 });
    expect(tokenInfo(`${b64url({})}.${b64url({ sub: 'bob', role: 'player' })}.x`)).toEqual({ user: 'bob', admin: false });
    expect(tokenInfo('a.!!!.c')).toBeUndefined();
    expect(tokenInfo(`${b64url({})}.${b64url({ role: 'admin' })}.x`)).toBeUndefined();
  });

  it('groups the catalogue by category in its order', () => {
    const groups = byCategory([
      { name: 'a', category: 'crypto', points: 100 },
      { name: 'b', category: 'crypto', points: 200 },
      { name: 'c', category: 'web', points: 50 },
    ]);
    expect(groups.map((g) => [g.category, g.challenges.map((c) => c.name)])).toEqual([['crypto', ['a', 'b']], ['web', ['c']]]);
  });
});
