import { createHmac } from 'node:crypto';
import { describe, it, expect } from 'vitest';
import { deriveFlag, flagForSession, verifyFlag } from '../../../src/flags/derive.js';

const KEY = 'k'.repeat(32);
const PARTS = { challenge: 'web-notes', sessionUid: '3f1c2a8e-5b7d-4e2a-9c41-0d6b8f7e1a23', user: 'alice@example.org' };
const POLICY = { format: 'CTF{%s}', length: 32 };

describe('deriveFlag', () => {
  it('is deterministic for the same key and parts, given as string or Buffer', () => {
    expect(deriveFlag(KEY, PARTS, POLICY)).toBe(deriveFlag(KEY, { ...PARTS }, POLICY));
    expect(deriveFlag(Buffer.from(KEY), PARTS, POLICY)).toBe(deriveFlag(KEY, PARTS, POLICY));
  });

  it('is the base32 of HMAC-SHA256(key, challenge|uid|user)', () => {
    const mac = createHmac('sha256', KEY).update(`${PARTS.challenge}|${PARTS.sessionUid}|${PARTS.user}`).digest();
    // First 8 characters are the first 40 bits in RFC 4648 base32.
    const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
    let bits = 0n;
    for (const b of mac.subarray(0, 5)) bits = (bits << 8n) | BigInt(b);
    const expected = Array.from({ length: 8 }, (_, i) => alphabet[Number((bits >> BigInt(35 - 5 * i)) & 31n)]).join('');
    expect(deriveFlag(KEY, PARTS, { format: '%s', length: 8 })).toBe(expected);
  });

  it.each([
    ['challenge', { ...PARTS, challenge: 'pwn-echo' }],
    ['session', { ...PARTS, sessionUid: '00000000-0000-0000-0000-000000000000' }],
    ['user', { ...PARTS, user: 'bob@example.org' }],
  ])('differs when the %s differs', (_what, parts) => {
    expect(deriveFlag(KEY, parts, POLICY)).not.toBe(deriveFlag(KEY, PARTS, POLICY));
  });

  it('differs under a different key', () => {
    expect(deriveFlag('x'.repeat(32), PARTS, POLICY)).not.toBe(deriveFlag(KEY, PARTS, POLICY));
  });

  it.each([
    ['CTF{%s}', 8, /^CTF\{[a-z2-7]{8}\}$/],
    ['CTF{%s}', 32, /^CTF\{[a-z2-7]{32}\}$/],
    ['flag{%s}', 52, /^flag\{[a-z2-7]{52}\}$/],
    ['%s', 64, /^[a-z2-7]{64}$/],
    ['pre_%s_post', 10, /^pre_[a-z2-7]{10}_post$/],
  ])('applies format %s with length %i', (format, length, pattern) => {
    expect(deriveFlag(KEY, PARTS, { format, length })).toMatch(pattern);
  });

  it('extends past one HMAC block without changing the shorter prefix', () => {
    const long = deriveFlag(KEY, PARTS, { format: '%s', length: 64 });
    const short = deriveFlag(KEY, PARTS, { format: '%s', length: 52 });
    expect(long.startsWith(short)).toBe(true);
  });

  it('does not interpret $ patterns in the format', () => {
    expect(deriveFlag(KEY, PARTS, { format: "$&$'%s", length: 8 })).toMatch(/^\$&\$'[a-z2-7]{8}$/);
  });

  it.each([
    ['an empty key', '', POLICY],
    ['a format without %s', KEY, { format: 'CTF{}', length: 8 }],
    ['a format with two %s', KEY, { format: '%s%s', length: 8 }],
    ['a zero length', KEY, { format: '%s', length: 0 }],
    ['a fractional length', KEY, { format: '%s', length: 8.5 }],
  ])('rejects %s', (_what, key, policy) => {
    expect(() => deriveFlag(key, PARTS, policy)).toThrow(RangeError);
  });
});

describe('verifyFlag', () => {
  const flag = deriveFlag(KEY, PARTS, POLICY);
  const changed = `${flag.slice(0, -2)}${flag.at(-2) === 'a' ? 'b' : 'a'}}`;

  it.each([
    ['the same flag', flag, true],
    ['one changed character', changed, false],
    ['a prefix', flag.slice(0, 10), false],
    ['a longer string', `${flag}x`, false],
    ['the empty string', '', false],
    ['different case', flag.toUpperCase(), false],
  ])('%s -> %s', (_what, submitted, expected) => {
    expect(verifyFlag(flag, submitted)).toBe(expected);
  });

  it('compares strings of any lengths without throwing', () => {
    expect(() => verifyFlag('a', 'b'.repeat(10_000))).not.toThrow();
    expect(verifyFlag('', '')).toBe(true);
  });
});

describe('flagForSession', () => {
  const s = { metadata: { uid: PARTS.sessionUid }, spec: { challenge: PARTS.challenge, user: PARTS.user } };

  it('derives the dynamic flag from the session', () => {
    const runtime = { flag: { dynamic: POLICY, delivery: 'env' as const, envName: 'FLAG', filePath: '/run/flag/flag' } };
    expect(flagForSession(KEY, s, runtime)).toBe(deriveFlag(KEY, PARTS, POLICY));
  });

  it('is undefined for a static flag', () => {
    const runtime = { flag: { static: { secretRef: { name: 'f', key: 'flag' } }, delivery: 'env' as const, envName: 'FLAG', filePath: '/run/flag/flag' } };
    expect(flagForSession(KEY, s, runtime)).toBeUndefined();
  });

  it('refuses a session without a UID rather than share flags between sessions', () => {
    const runtime = { flag: { dynamic: POLICY, delivery: 'env' as const, envName: 'FLAG', filePath: '/run/flag/flag' } };
    expect(() => flagForSession(KEY, { ...s, metadata: {} }, runtime)).toThrow(/uid/);
  });
});
