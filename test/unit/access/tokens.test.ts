import { describe, it, expect } from 'vitest';
import { accessKey, checkCookie, checkTicket, issueCookie, issueTicket, nonceHash } from '../../../src/access/tokens.js';

const key = accessKey(Buffer.from('0123456789abcdef0123456789abcdef'));
const other = accessKey(Buffer.from('another flag key, another engine'));
const HOST = 'i0123456789abcdef01234567.ctf.example';
const NOW = new Date('2030-01-01T10:00:00Z');
const later = (s: number) => new Date(NOW.getTime() + s * 1000);

describe('access tickets', () => {
  it('are accepted for their host until they expire, and carry the nonce hash the session records', () => {
    const t = issueTicket(key, HOST, 'uid-1', NOW, 60);
    expect(checkTicket(key, HOST, t.token, later(59))).toEqual({ ok: true, value: { sessionUid: 'uid-1', nonceHash: t.nonceHash } });
    expect(checkTicket(key, HOST, t.token, later(60))).toEqual({ ok: false, why: 'expired' });
    expect(t.token).not.toContain(t.nonceHash);
  });

  it('are refused for another host, under another key, or when any part is changed', () => {
    const t = issueTicket(key, HOST, 'uid-1', NOW, 60);
    expect(checkTicket(key, `x${HOST}`, t.token, NOW)).toMatchObject({ ok: false, why: 'forged' });
    expect(checkTicket(other, HOST, t.token, NOW)).toMatchObject({ ok: false, why: 'forged' });
    const parts = t.token.split('.');
    for (let i = 1; i < parts.length; i++) {
      const changed = [...parts];
      changed[i] = i === 2 ? String(Number(parts[2]) + 3600) : `${parts[i]}x`;
      expect(checkTicket(key, HOST, changed.join('.'), NOW).ok).toBe(false);
    }
    for (const junk of ['', 't1', 't1....', 'c1.uid-1.1.x', 'x'.repeat(400), `${t.token}.`]) expect(checkTicket(key, HOST, junk, NOW).ok).toBe(false);
  });

  it('are all different, even for the same session and time', () => {
    const a = issueTicket(key, HOST, 'uid-1', NOW, 60);
    const b = issueTicket(key, HOST, 'uid-1', NOW, 60);
    expect(a.token).not.toBe(b.token);
    expect(a.nonceHash).not.toBe(b.nonceHash);
    expect(nonceHash('n')).toBe(nonceHash('n'));
  });
});

describe('access cookies', () => {
  it('grant their own session on their own host only, until they expire', () => {
    const c = issueCookie(key, HOST, 'uid-1', later(3600));
    expect(checkCookie(key, HOST, c, NOW)).toEqual({ ok: true, value: { sessionUid: 'uid-1' } });
    expect(checkCookie(key, `i1${HOST.slice(2)}`, c, NOW)).toMatchObject({ ok: false, why: 'forged' });
    expect(checkCookie(other, HOST, c, NOW)).toMatchObject({ ok: false, why: 'forged' });
    expect(checkCookie(key, HOST, c, later(3600))).toMatchObject({ ok: false, why: 'expired' });
    expect(checkCookie(key, HOST, c.replace('uid-1', 'uid-2'), NOW)).toMatchObject({ ok: false, why: 'forged' });
  });

  it('are not tickets, and tickets are not cookies', () => {
    const t = issueTicket(key, HOST, 'uid-1', NOW, 60).token;
    const c = issueCookie(key, HOST, 'uid-1', later(60));
    expect(checkCookie(key, HOST, t, NOW).ok).toBe(false);
    expect(checkTicket(key, HOST, c, NOW).ok).toBe(false);
  });
});
