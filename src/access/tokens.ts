import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Access to an instance's HTTP host is bound to its owner: the API hands the owner a short-lived
 * single-use link (a ticket) for that host, and opening it sets an HttpOnly cookie valid for that
 * one host and session only. Both are MACs under a key derived from the engine's flag key, so any
 * replica can check them and none has to store them. Single use comes from the cluster: issuing
 * records the ticket's nonce (hashed) on the session and opening removes it with a write guarded
 * by the session's resourceVersion, so of two opens only one can succeed.
 *
 * Formats (all parts base64url, none holding a secret):
 *   ticket  t1.<session uid>.<expiry s>.<nonce>.<mac>
 *   cookie  c1.<session uid>.<expiry s>.<mac>
 * The MAC covers the kind, the host, the session UID, the expiry and the nonce.
 */

export function accessKey(flagKey: Buffer): Buffer {
  return createHmac('sha256', flagKey).update('challenge-engine access v1').digest();
}

const b64 = (b: Buffer) => b.toString('base64url');

function mac(key: Buffer, parts: string[]): string {
  return b64(createHmac('sha256', key).update(parts.join('\n')).digest().subarray(0, 24));
}

function sameMac(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export interface Ticket {
  token: string;
  /** What the session records: the nonce's hash, never the nonce itself. */
  nonceHash: string;
  expiresAt: Date;
}

export function nonceHash(nonce: string): string {
  return createHmac('sha256', 'ticket-nonce').update(nonce).digest('base64url').slice(0, 32);
}

export function issueTicket(key: Buffer, host: string, sessionUid: string, now: Date, ttlSeconds: number): Ticket {
  const exp = String(Math.floor(now.getTime() / 1000) + ttlSeconds);
  const nonce = b64(randomBytes(16));
  return { token: ['t1', sessionUid, exp, nonce, mac(key, ['t1', host, sessionUid, exp, nonce])].join('.'), nonceHash: nonceHash(nonce), expiresAt: new Date(Number(exp) * 1000) };
}

export type Checked<T> = { ok: true; value: T } | { ok: false; why: 'malformed' | 'forged' | 'expired' };

/** The session UID and nonce hash a ticket for `host` carries, if it is genuine and current. */
export function checkTicket(key: Buffer, host: string, token: string, now: Date): Checked<{ sessionUid: string; nonceHash: string }> {
  const parts = token.split('.');
  if (parts.length !== 5 || parts[0] !== 't1' || token.length > 300) return { ok: false, why: 'malformed' };
  const [kind, uid, exp, nonce, m] = parts as [string, string, string, string, string];
  if (!/^\d{1,12}$/.test(exp)) return { ok: false, why: 'malformed' };
  if (!sameMac(m, mac(key, [kind, host, uid, exp, nonce]))) return { ok: false, why: 'forged' };
  if (Number(exp) * 1000 <= now.getTime()) return { ok: false, why: 'expired' };
  return { ok: true, value: { sessionUid: uid, nonceHash: nonceHash(nonce) } };
}

export function issueCookie(key: Buffer, host: string, sessionUid: string, expiresAt: Date): string {
  const exp = String(Math.floor(expiresAt.getTime() / 1000));
  return ['c1', sessionUid, exp, mac(key, ['c1', host, sessionUid, exp])].join('.');
}

/** The session UID an access cookie for `host` grants, if it is genuine and current. */
export function checkCookie(key: Buffer, host: string, value: string, now: Date): Checked<{ sessionUid: string }> {
  const parts = value.split('.');
  if (parts.length !== 4 || parts[0] !== 'c1' || value.length > 300) return { ok: false, why: 'malformed' };
  const [kind, uid, exp, m] = parts as [string, string, string, string];
  if (!/^\d{1,12}$/.test(exp)) return { ok: false, why: 'malformed' };
  if (!sameMac(m, mac(key, [kind, host, uid, exp]))) return { ok: false, why: 'forged' };
  if (Number(exp) * 1000 <= now.getTime()) return { ok: false, why: 'expired' };
  return { ok: true, value: { sessionUid: uid } };
}
