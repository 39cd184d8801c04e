import { describe, it, expect } from 'vitest';
import {
  effectiveExpiry,
  extendedExpiry,
  formatExpiry,
  initialExpiry,
  msUntil,
  parseExpiry,
  parseTimestamp,
} from '../../../src/reconcile/expiry.js';
import { runtimeOf } from '../../../src/reconcile/runtime.js';
import { session, webChallenge } from './fixtures.js';

// web-notes: default 1h, max 3h, extension 30m; sessions are created at 2030-01-01T10:00:00Z.
const runtime = runtimeOf(webChallenge().spec);
const at = (iso: string) => new Date(iso);

describe('parseExpiry', () => {
  it.each([
    ['2030-01-01T11:00:00Z', '2030-01-01T11:00:00.000Z'],
    ['2030-01-01T11:00:00.5Z', '2030-01-01T11:00:00.500Z'],
    ['2028-02-29T00:00:00Z', '2028-02-29T00:00:00.000Z'],
  ])('accepts %s', (text, iso) => {
    const r = parseExpiry(session({ expiresAt: text }));
    expect(r).toEqual({ ok: true, at: new Date(iso) });
  });

  it.each([
    ['an offset instead of Z', '2030-01-01T11:00:00+00:00'],
    ['a local time', '2030-01-01T11:00:00'],
    ['a date only', '2030-01-01'],
    ['a day that does not exist', '2030-02-30T00:00:00Z'],
    ['hour 24', '2030-01-01T24:00:00Z'],
    ['a leap second', '2030-01-01T23:59:60Z'],
    ['lowercase separators', '2030-01-01t11:00:00z'],
    ['epoch milliseconds', '1893495600000'],
    ['an empty string', ''],
    ['surrounding space', ' 2030-01-01T11:00:00Z'],
  ])('rejects %s', (_what, text) => {
    const r = parseExpiry(session({ expiresAt: text }));
    expect(r.ok).toBe(false);
    expect(r.ok ? '' : r.reason).toContain('expires-at');
  });

  it('reports a missing annotation', () => {
    const r = parseExpiry(session());
    expect(r.ok).toBe(false);
    expect(r.ok ? '' : r.reason).toContain('missing');
  });

  it('parseTimestamp agrees with Date for valid input', () => {
    expect(parseTimestamp('2030-06-15T08:09:10Z')?.getTime()).toBe(Date.parse('2030-06-15T08:09:10Z'));
  });
});

describe('effectiveExpiry', () => {
  it.each([
    ['the annotation', session({ expiresAt: '2030-01-01T12:34:56Z' }), runtime, '2030-01-01T12:34:56Z'],
    ['creation plus the default lifetime without one', session(), runtime, '2030-01-01T11:00:00Z'],
    ['creation plus the default lifetime for a bad one', session({ expiresAt: 'soon' }), runtime, '2030-01-01T11:00:00Z'],
    ['creation plus one hour without a runtime', session(), undefined, '2030-01-01T11:00:00Z'],
    ['creation plus a shorter default', session(), { ...runtime, lifetime: { ...runtime.lifetime, default: '15m' } }, '2030-01-01T10:15:00Z'],
  ])('is %s', (_what, s, r, expected) => {
    expect(effectiveExpiry(s, r)).toEqual(at(expected));
  });

  it('counts from `now` for a session not yet stored, and refuses without either', () => {
    const unsaved = { ...session(), metadata: { ...session().metadata, creationTimestamp: undefined } };
    expect(effectiveExpiry(unsaved, runtime, at('2030-05-05T00:00:00Z'))).toEqual(at('2030-05-05T01:00:00Z'));
    expect(() => effectiveExpiry(unsaved, runtime)).toThrow(/creationTimestamp/);
  });
});

describe('extendedExpiry', () => {
  it.each([
    ['adds one extension', '2030-01-01T11:00:00Z', '2030-01-01T10:50:00Z', { at: at('2030-01-01T11:30:00Z') }],
    ['counts from the current expiry, not now', '2030-01-01T11:00:00Z', '2030-01-01T10:01:00Z', { at: at('2030-01-01T11:30:00Z') }],
    ['is capped at creation plus the maximum', '2030-01-01T12:45:00Z', '2030-01-01T12:40:00Z', { at: at('2030-01-01T13:00:00Z') }],
    ['fails at the cap', '2030-01-01T13:00:00Z', '2030-01-01T12:59:00Z', { error: 'MaxLifetimeReached' }],
    ['fails beyond the cap', '2030-01-01T14:00:00Z', '2030-01-01T12:59:00Z', { error: 'MaxLifetimeReached' }],
    ['fails once expired', '2030-01-01T11:00:00Z', '2030-01-01T11:00:00Z', { error: 'Expired' }],
  ])('%s', (_what, expiresAt, now, expected) => {
    expect(extendedExpiry(session({ expiresAt }), runtime, at(now))).toEqual(expected);
  });

  it('never passes the cap however often it is applied', () => {
    let expiresAt = '2030-01-01T11:00:00Z';
    const results: string[] = [];
    for (let i = 0; i < 10; i++) {
      const r = extendedExpiry(session({ expiresAt }), runtime, at('2030-01-01T10:30:00Z'));
      if ('error' in r) {
        results.push(r.error);
        break;
      }
      expiresAt = formatExpiry(r.at);
      results.push(expiresAt);
    }
    expect(results).toEqual(['2030-01-01T11:30:00Z', '2030-01-01T12:00:00Z', '2030-01-01T12:30:00Z', '2030-01-01T13:00:00Z', 'MaxLifetimeReached']);
  });
});

describe('lifetime of a session that waited in the queue', () => {
  it('caps extensions from the admission, not from the creation', () => {
    // Created 10:00, admitted 10:40 after queueing; its annotation was written again at admission.
    const queued = session({ expiresAt: '2030-01-01T13:30:00Z', status: { admittedAt: '2030-01-01T10:40:00.500Z' } });
    expect(extendedExpiry(queued, runtime, at('2030-01-01T13:00:00Z'))).toEqual({ at: at('2030-01-01T13:40:00.500Z') });
    const notQueued = session({ expiresAt: '2030-01-01T12:50:00Z' });
    expect(extendedExpiry(notQueued, runtime, at('2030-01-01T12:00:00Z'))).toEqual({ at: at('2030-01-01T13:00:00Z') });
  });
});

describe('initialExpiry, formatExpiry and msUntil', () => {
  it('starts from now, dropping fractions of a second', () => {
    expect(initialExpiry(runtime, at('2030-01-01T10:00:00.999Z'))).toEqual(at('2030-01-01T11:00:00Z'));
  });

  it('formats RFC 3339 UTC without milliseconds, round-tripping through parseExpiry', () => {
    const text = formatExpiry(at('2030-01-01T11:00:00.250Z'));
    expect(text).toBe('2030-01-01T11:00:00Z');
    expect(parseExpiry(session({ expiresAt: text }))).toEqual({ ok: true, at: at(text) });
  });

  it.each([
    ['2030-01-01T11:00:00Z', '2030-01-01T10:59:00Z', 60_000],
    ['2030-01-01T11:00:00Z', '2030-01-01T11:00:00Z', 0],
    ['2030-01-01T11:00:00Z', '2030-01-01T12:00:00Z', 0],
  ])('msUntil(%s, %s) = %i', (date, now, ms) => {
    expect(msUntil(at(date), at(now))).toBe(ms);
  });
});
