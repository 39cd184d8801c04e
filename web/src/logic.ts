/*
 * The player page's decisions, as pure functions (unit-tested without a browser): what a
 * countdown shows, whether Extend is possible, how to connect to a TCP port, what an API error
 * means in plain words, and what the sign-in fragment holds.
 */

export interface Problem {
  status: number;
  type?: string;
  title?: string;
  detail?: string;
  retryAfterSeconds?: number;
}

/** "12:05" or "1:02:03" until `expiresAt`; "expired" once past. */
export function countdown(expiresAt: string, now: number): string {
  const left = Math.floor((Date.parse(expiresAt) - now) / 1000);
  if (!Number.isFinite(left)) return '';
  if (left <= 0) return 'expired';
  const h = Math.floor(left / 3600);
  const m = Math.floor((left % 3600) / 60);
  const s = left % 60;
  const two = (n: number) => String(n).padStart(2, '0');
  return h > 0 ? `${h}:${two(m)}:${two(s)}` : `${m}:${two(s)}`;
}

/**
 * Why Extend is not offered, or undefined when it is: a session lives at most
 * `maxLifetimeSeconds` from its creation, so once its expiry reaches that there is nothing to add.
 */
export function extendBlocked(createdAt: string, expiresAt: string, maxLifetimeSeconds: number): string | undefined {
  const created = Date.parse(createdAt);
  const expires = Date.parse(expiresAt);
  if (!Number.isFinite(created) || !Number.isFinite(expires) || maxLifetimeSeconds <= 0) return undefined;
  if (expires >= created + maxLifetimeSeconds * 1000 - 1000) return `At the maximum lifetime of ${duration(maxLifetimeSeconds)}`;
  return undefined;
}

export function duration(seconds: number): string {
  if (seconds % 3600 === 0) return `${seconds / 3600} h`;
  if (seconds % 60 === 0) return `${seconds / 60} min`;
  return `${seconds} s`;
}

/** The ways to reach a TCP port published through the gateway's TLS listener (SNI = host). */
export function tcpCommands(host: string, port: number): { label: string; command: string }[] {
  return [
    { label: 'ncat', command: `ncat --ssl ${host} ${port}` },
    { label: 'openssl', command: `openssl s_client -quiet -connect ${host}:${port} -servername ${host}` },
    { label: 'pwntools', command: `remote('${host}', ${port}, ssl=True, sni='${host}')` },
  ];
}

/** The host and port of an endpoint's `connect` line (`ncat --ssl <host> <port>`). */
export function parseConnect(connect: string | undefined): { host: string; port: number } | undefined {
  const m = /^ncat --ssl (\S+) (\d+)$/.exec(connect ?? '');
  return m ? { host: m[1] as string, port: Number(m[2]) } : undefined;
}

/** What an API error means for the player, in plain words (never HTML: rendered as text). */
export function explain(p: Problem): string {
  switch (p.status) {
    case 0:
      return 'The engine cannot be reached. Check your connection and try again.';
    case 401:
      return 'Your sign-in has expired. Go back to the scoreboard for a new link.';
    case 403:
      return p.detail ?? 'You are not allowed to do that.';
    case 404:
      return p.detail ? `Not found: ${p.detail}.` : 'This challenge or instance no longer exists.';
    case 409:
      return p.detail ?? 'That conflicts with the current state; refresh and try again.';
    case 429:
      return `Too many attempts. Try again in ${p.retryAfterSeconds ?? 'a few'} seconds.`;
    case 503:
      return `The engine is busy. Try again in ${p.retryAfterSeconds ?? 'a few'} seconds.`;
    default:
      return p.detail ?? p.title ?? `The request failed (HTTP ${p.status}).`;
  }
}

/** The token handed over in the address's fragment (`#token=...`), if any. */
export function tokenFromFragment(hash: string): string | undefined {
  const params = new URLSearchParams(hash.startsWith('#') ? hash.slice(1) : hash);
  const token = params.get('token');
  return token && /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(token) ? token : undefined;
}

export interface TokenInfo {
  user: string;
  team?: string;
  admin: boolean;
  /** Expiry, ms since the epoch. */
  expiresAt?: number;
}

/**
 * What the page shows about its own token (name, team, organiser view). Only for display: the
 * API verifies every request; a tampered payload gains nothing.
 */
export function tokenInfo(token: string): TokenInfo | undefined {
  const part = token.split('.')[1];
  if (!part) return undefined;
  try {
    const json = JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(part.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0)))) as Record<string, unknown>;
    if (typeof json.sub !== 'string') return undefined;
    return {
      user: json.sub,
      ...(typeof json.team === 'string' ? { team: json.team } : {}),
      admin: json.role === 'admin',
      ...(typeof json.exp === 'number' ? { expiresAt: json.exp * 1000 } : {}),
    };
  } catch {
    return undefined;
  }
}

export interface Catalogued {
  name: string;
  category: string;
  points: number;
}

/** Challenges grouped by category (in the catalogue's order), for the page's sections. */
export function byCategory<T extends Catalogued>(challenges: T[]): { category: string; challenges: T[] }[] {
  const groups = new Map<string, T[]>();
  for (const c of challenges) groups.set(c.category, [...(groups.get(c.category) ?? []), c]);
  return [...groups].map(([category, list]) => ({ category, challenges: list }));
}

/** A waiting session's place, as the API gives it (Session.queue). */
export interface QueuePlace {
  position: number;
  ahead: number;
  reason: string;
}

const QUEUE_WHY: Record<string, string> = {
  EngineCapacity: 'all instances are in use',
  ChallengeCapacity: 'all instances of this challenge are in use',
  ClusterFull: 'the cluster is full',
};

/** What the page says of an instance waiting for capacity: "Queued: position 3 (...)". */
export function queueText(queue: QueuePlace | undefined): string {
  if (!queue) return 'Queued: starting soon';
  const why = QUEUE_WHY[queue.reason];
  return `Queued: position ${queue.position}${why ? ` (${why}; it starts on its own)` : ''}`;
}
