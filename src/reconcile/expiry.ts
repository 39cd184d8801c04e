import { ANNOTATION_CLAIMED_AT, ANNOTATION_EXPIRES_AT } from '../api/group.js';
import { parseDuration } from '../api/duration.js';
import type { ChallengeSession } from '../api/session.js';
import type { ChallengeRuntime } from './runtime.js';

/**
 * Expiry arithmetic. The expires-at annotation is the only source of truth: the API writes it on
 * creation and on extension, the controller deletes the session once it has passed. Lifetimes
 * are capped from the start of the lifetime: a claimed pool instance's claim (the claimed-at
 * annotation, written once with the claim), else the admission (status.admittedAt, which the
 * controller writes once), else the creation timestamp, which the apiserver sets and nobody can
 * change. A session that waited in the queue gets its annotation written again when admitted.
 */

/** Used when neither an annotation nor a runtime gives a lifetime: the schema's default. */
export const FALLBACK_LIFETIME_MS = 3_600_000;

type SessionTimes = Pick<ChallengeSession, 'metadata'> & { status?: { admittedAt?: string } };
type Lifetime = Pick<ChallengeRuntime, 'lifetime'>;

const RFC3339_UTC = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?Z$/;

/** An RFC 3339 UTC instant ("...Z") that names a real calendar time; undefined otherwise. */
export function parseTimestamp(text: string): Date | undefined {
  const m = RFC3339_UTC.exec(text);
  if (!m) return undefined;
  const [y, mo, d, h, mi, s] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const ms = m[7] ? Math.floor(Number(`0${m[7]}`) * 1000) : 0;
  const date = new Date(Date.UTC(y, mo - 1, d, h, mi, s, ms));
  // Date.UTC rolls 2024-02-30 over to March; a round trip of the fields catches it.
  const same = date.getUTCFullYear() === y && date.getUTCMonth() === mo - 1 && date.getUTCDate() === d && date.getUTCHours() === h && date.getUTCMinutes() === mi && date.getUTCSeconds() === s;
  return same ? date : undefined;
}

/** The session's expiry annotation, or why it cannot be used. */
export function parseExpiry(session: SessionTimes): { ok: true; at: Date } | { ok: false; reason: string } {
  const text = session.metadata.annotations?.[ANNOTATION_EXPIRES_AT];
  if (text === undefined) return { ok: false, reason: `annotation ${ANNOTATION_EXPIRES_AT} is missing` };
  const at = parseTimestamp(text);
  if (!at) return { ok: false, reason: `annotation ${ANNOTATION_EXPIRES_AT} is not an RFC 3339 UTC time such as 2030-01-01T00:00:00Z: ${JSON.stringify(text.slice(0, 64))}` };
  return { ok: true, at };
}

/** The session's creation time, or undefined for an object not yet stored. */
export function creationTime(session: SessionTimes): Date | undefined {
  const c = session.metadata.creationTimestamp;
  if (c instanceof Date) return Number.isNaN(c.getTime()) ? undefined : c;
  if (typeof c !== 'string') return undefined;
  const t = Date.parse(c);
  return Number.isNaN(t) ? undefined : new Date(t);
}

/**
 * When the session ends: its annotation, else creation plus the default lifetime so that a
 * session with a missing or damaged annotation still ends. `now` stands in for the creation
 * time of an object not yet stored; without either there is no answer.
 */
export function effectiveExpiry(session: SessionTimes, runtime?: Lifetime, now?: Date): Date {
  const parsed = parseExpiry(session);
  if (parsed.ok) return parsed.at;
  return new Date(startOf(session, now).getTime() + lifetimeMs(runtime, 'default'));
}

/**
 * The expiry after one extension: the current one plus the extension step, capped at creation
 * plus the maximum lifetime. Extending an expired session would race its deletion, and at the
 * cap there is nothing to extend.
 */
export function extendedExpiry(session: SessionTimes, runtime: Lifetime, now: Date): { at: Date } | { error: 'MaxLifetimeReached' | 'Expired' } {
  const current = effectiveExpiry(session, runtime, now);
  if (current.getTime() <= now.getTime()) return { error: 'Expired' };
  const cap = startOf(session, now).getTime() + lifetimeMs(runtime, 'max');
  if (current.getTime() >= cap) return { error: 'MaxLifetimeReached' };
  return { at: new Date(Math.min(current.getTime() + lifetimeMs(runtime, 'extension'), cap)) };
}

/** The expiry of a session created now: whole seconds, so it survives formatting unchanged. */
export function initialExpiry(runtime: Lifetime, now: Date): Date {
  return new Date(Math.floor(now.getTime() / 1000) * 1000 + lifetimeMs(runtime, 'default'));
}

/** RFC 3339 UTC without fractional seconds, the form Kubernetes itself writes. */
export function formatTimestamp(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** The expires-at annotation value for `date`. */
export function formatExpiry(date: Date): string {
  return formatTimestamp(date);
}

/** Milliseconds from `now` until `date`; 0 once it has passed, ready to hand to a timer. */
export function msUntil(date: Date, now: Date): number {
  return Math.max(0, date.getTime() - now.getTime());
}

/** When the session's lifetime started: its claim for a claimed pool instance, else its admission, else its creation. */
export function startOf(session: SessionTimes, now: Date | undefined): Date {
  const claimed = session.metadata.annotations?.[ANNOTATION_CLAIMED_AT];
  const claimedAt = claimed === undefined ? undefined : parseTimestamp(claimed);
  const admitted = session.status?.admittedAt;
  const start = claimedAt ?? (admitted === undefined ? undefined : parseTimestamp(admitted)) ?? creationTime(session) ?? now;
  if (!start) throw new Error(`session ${session.metadata.name} has no creationTimestamp and no time was given`);
  return start;
}

export function lifetimeMs(runtime: Lifetime | undefined, which: 'default' | 'max' | 'extension'): number {
  const text = runtime?.lifetime[which];
  const ms = text === undefined ? undefined : parseDuration(text);
  return ms ?? (which === 'extension' ? 0 : FALLBACK_LIFETIME_MS);
}
