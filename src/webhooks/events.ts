import { createHmac, timingSafeEqual } from 'node:crypto';
import type { ChallengeSession } from '../api/session.js';
import { sessionPlayer } from '../api/session.js';

/*
 * Solve webhooks, the pure part: the event a scoreboard receives, its signature, and the retry
 * schedule. Delivery is at least once; the event id is stable (one per solved session), so a
 * receiver that deduplicates on it sees every solve exactly once.
 *
 * Signature: X-Challenge-Engine-Signature: sha256=<hex of HMAC-SHA256(secret, "<timestamp>.<body>")>
 * with X-Challenge-Engine-Timestamp: <unix seconds>. Receivers refuse timestamps older than a few
 * minutes (replay) and compare in constant time.
 */

export const SIGNATURE_HEADER = 'x-challenge-engine-signature';
export const TIMESTAMP_HEADER = 'x-challenge-engine-timestamp';
export const EVENT_ID_HEADER = 'x-challenge-engine-event-id';
export const REPLAY_WINDOW_SECONDS = 300;

export interface SolveEvent {
  id: string;
  type: 'solve';
  session: string;
  challenge: string;
  owner: { mode: 'user' | 'team'; user: string; team?: string };
  /** Who submitted the flag. */
  solvedBy: { user: string; team?: string };
  solvedAt: string;
}

/** The id of a session's solve event: one per session (its uid), whoever solved it. */
export function solveEventId(s: Pick<ChallengeSession, 'metadata'>): string {
  return `solve-${s.metadata.uid ?? s.metadata.name}`;
}

export function solveEvent(s: ChallengeSession, solvedBy: { user: string; team?: string }, solvedAt: string): SolveEvent {
  const player = sessionPlayer(s);
  if (!player) throw new Error(`session ${s.metadata.name} has no player`);
  const owner = player.owner;
  return {
    id: solveEventId(s),
    type: 'solve',
    session: s.metadata.name,
    challenge: s.spec.challenge,
    owner: owner.mode === 'team' ? { mode: 'team', user: player.user, team: owner.team } : { mode: 'user', user: player.user, ...(player.team ? { team: player.team } : {}) },
    solvedBy: { user: solvedBy.user, ...(solvedBy.team !== undefined ? { team: solvedBy.team } : {}) },
    solvedAt,
  };
}

export function sign(secret: string, timestamp: number, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/** What a receiver checks: the signature over exactly this body and a fresh timestamp. */
export function verifySignature(secret: string, headers: { signature?: string; timestamp?: string }, body: string, nowSeconds: number): boolean {
  const ts = Number(headers.timestamp);
  if (!Number.isInteger(ts) || Math.abs(nowSeconds - ts) > REPLAY_WINDOW_SECONDS || !headers.signature) return false;
  const expected = Buffer.from(sign(secret, ts, body));
  const got = Buffer.from(headers.signature);
  return expected.length === got.length && timingSafeEqual(expected, got);
}

/** Exponential backoff from 1 s up to `maxMs`, with full jitter between half and one and a half times. */
export function backoffMs(attempts: number, maxMs: number, random: () => number): number {
  const base = Math.min(maxMs, 1000 * 2 ** Math.min(attempts, 20));
  return Math.round(base * (0.5 + random()));
}

/**
 * Solves the sessions record (status.solvedBy, written with the solve) whose event is neither in
 * the outbox (`pending`, by event id) nor delivered (status.solveReportedAt, or `delivered` by
 * this replica a moment ago, which its cache may not show yet): the API wrote the solve and
 * stopped before its event. Sessions being deleted count too; their event outlives them.
 */
export function unrecordedSolves(sessions: Iterable<ChallengeSession>, pending: ReadonlySet<string>, delivered: ReadonlySet<string>): SolveEvent[] {
  const out: SolveEvent[] = [];
  for (const s of sessions) {
    const st = s.status;
    if (!st?.solved || !st.solvedBy || !st.solvedAt || st.solveReportedAt || !sessionPlayer(s)) continue;
    const id = solveEventId(s);
    if (!pending.has(id) && !delivered.has(id)) out.push(solveEvent(s, st.solvedBy, st.solvedAt));
  }
  return out;
}
