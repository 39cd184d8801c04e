import { createHmac } from 'node:crypto';
import { claimedAt, isPoolSession, isUnclaimedPool, type ChallengeSession } from '../api/session.js';

/**
 * Player-facing host names. A session's public host must not be computable by other players
 * (user ids, team ids, challenge names and slots are public on every scoreboard), so its label
 * is an HMAC of the session's UID and the exposed port under a key derived from the engine's
 * flag key: stable for the session's life and across restarts, 96 bits no player can compute,
 * and distinct per port (Host and SNI routing cannot tell ports apart).
 */

/** Bits of the label (hex characters times 4). */
export const PUBLIC_HOST_BITS = 96;

/** The host-name key: the flag key under a purpose of its own, so neither value reveals the other. */
export function hostKey(flagKey: Buffer): Buffer {
  return createHmac('sha256', flagKey).update('challenge-engine public host v1').digest();
}

/** The DNS label of one exposed port of a session: a letter, then 24 hex characters. */
export function publicHostLabel(key: Buffer, sessionUid: string, portName: string): string {
  const mac = createHmac('sha256', key).update(`${sessionUid}|${portName}`).digest('hex');
  return `i${mac.slice(0, PUBLIC_HOST_BITS / 4)}`;
}

export function publicHost(key: Buffer, sessionUid: string, portName: string, domain: string): string {
  return `${publicHostLabel(key, sessionUid, portName)}.${domain}`;
}

/**
 * What a session's public hosts are derived from: its UID, and for a pool instance also the
 * instant of its claim, so its hosts exist only from the claim on (nothing computed or seen
 * before names them). Undefined for an unclaimed pool instance (no public host) or an object
 * not yet stored. '@' appears in no UID, so the two forms never share a message.
 */
export function hostIdentity(session: Pick<ChallengeSession, 'spec' | 'metadata'>): string | undefined {
  const uid = session.metadata.uid;
  if (!uid || isUnclaimedPool(session)) return undefined;
  if (!isPoolSession(session)) return uid;
  const at = claimedAt(session);
  return at === undefined ? undefined : `${uid}@${at}`;
}
