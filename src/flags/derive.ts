import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { ChallengeSpec } from '../api/challenge.js';

/**
 * Per-session flags: HMAC-SHA256 of the challenge, session UID and user under the engine's flag
 * key. Nothing is stored; the controller and the flag checker derive the same value on demand.
 * The parts are joined with '|', which none of them can contain (a DNS label, a UID and a user id
 * of letters, digits and ._@:+-), so distinct triples never share a message.
 */

export interface FlagParts {
  challenge: string;
  sessionUid: string;
  user: string;
}

export interface FlagPolicy {
  /** Printable text with exactly one %s, replaced by the derived value. */
  format: string;
  /** Characters of derived value, not counting the format around it. */
  length: number;
}

/** RFC 4648 base32 in lowercase: URL-, shell- and filename-safe, 5 bits a character. */
const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';

/** Derives the flag for one session; the same inputs always give the same flag. */
export function deriveFlag(key: Buffer | string, parts: FlagParts, policy: FlagPolicy): string {
  if (key.length === 0) throw new RangeError('the flag key must not be empty');
  if (!Number.isInteger(policy.length) || policy.length < 1) throw new RangeError(`flag length must be a positive integer, got ${policy.length}`);
  if (policy.format.split('%s').length !== 2) throw new RangeError('flag format must contain %s exactly once');
  const message = `${parts.challenge}|${parts.sessionUid}|${parts.user}`;
  const value = base32(expand(key, message, Math.ceil((policy.length * 5) / 8))).slice(0, policy.length);
  return policy.format.replace('%s', () => value);
}

/**
 * At least `bytes` bytes of keyed output. The first block is HMAC(key, message) itself; flags
 * longer than one block (52 characters) chain further blocks as HKDF-Expand does.
 */
function expand(key: Buffer | string, message: string, bytes: number): Buffer {
  const blocks: Buffer[] = [createHmac('sha256', key).update(message).digest()];
  while (blocks.length * 32 < bytes) {
    const previous = blocks[blocks.length - 1] ?? Buffer.alloc(0);
    blocks.push(createHmac('sha256', key).update(previous).update(message).digest());
  }
  return Buffer.concat(blocks);
}

/** Unpadded lowercase base32 of `data`. */
function base32(data: Buffer): string {
  let out = '';
  let buffer = 0;
  let bits = 0;
  for (const byte of data) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += BASE32[(buffer >>> bits) & 31];
    }
    buffer &= (1 << bits) - 1;
  }
  if (bits > 0) out += BASE32[(buffer << (5 - bits)) & 31];
  return out;
}

/**
 * Compares a submission with the expected flag in time independent of where they differ and of
 * their lengths: both are hashed first, so timingSafeEqual always sees 32 bytes and never throws.
 */
export function verifyFlag(expected: string, submitted: string): boolean {
  const a = createHash('sha256').update(expected, 'utf8').digest();
  const b = createHash('sha256').update(submitted, 'utf8').digest();
  return timingSafeEqual(a, b);
}

/** The session fields a flag depends on. */
export interface FlagSession {
  metadata: { uid?: string };
  spec: { challenge: string; user?: string; pool?: boolean };
}

/**
 * The dynamic flag of a session, or undefined when the challenge uses a static flag (whose value
 * lives in a Secret the controller reads). Throws without a UID: deriving from an empty UID would
 * give every session of the same user the same flag.
 */
export function flagForSession(key: Buffer | string, session: FlagSession, runtime: { flag: ChallengeSpec['flag'] }): string | undefined {
  const dynamic = runtime.flag.dynamic;
  if (!dynamic) return undefined;
  const uid = session.metadata.uid;
  if (!uid) throw new Error('cannot derive a flag for a session without a metadata.uid');
  // A pool instance's flag is fixed before anyone claims it: derived from the instance alone
  // ('@' cannot start a user id, so no spawned session's message is the same).
  const user = session.spec.pool === true ? '@pool' : session.spec.user;
  if (user === undefined) throw new Error('cannot derive a flag for a session without a user');
  return deriveFlag(key, { challenge: session.spec.challenge, sessionUid: uid, user }, dynamic);
}
