import type { OwnerMode } from '../api/common.js';
import type { Endpoint, Phase } from '../api/session.js';

/**
 * The player-facing domain: what the HTTP layer may ask of sessions and challenges. Reads come
 * from the informer caches; the only writes are ChallengeSession objects.
 */

export interface Caller {
  user: string;
  team?: string;
  admin: boolean;
}

export interface CatalogueEntry {
  name: string;
  title: string;
  description: string;
  category: string;
  points: number;
  tags: string[];
  protocols: ('http' | 'tcp')[];
  lifetimeSeconds: number;
  maxLifetimeSeconds: number;
  /** Whether a spawn gives the caller their own instance or their team's shared one. */
  owner: OwnerMode;
}

export interface SessionView {
  id: string;
  challenge: string;
  /** Who started it. */
  user: string;
  /** The starter's team; for a team-owned session, the team it belongs to. */
  team?: string;
  owner: OwnerMode;
  phase: Phase;
  ready: boolean;
  reason?: string;
  message?: string;
  createdAt: string;
  expiresAt: string;
  endpoints: Endpoint[];
  solved: boolean;
  solvedAt?: string;
  /** Only while the session waits for capacity (phase Queued): its place in the first-come queue. */
  queue?: { position: number; ahead: number; reason: string };
}

/** One request to an instance host, as the gateway's forward-auth call describes it. */
export interface AccessRequest {
  host?: string;
  uri?: string;
  cookie?: string;
}

/** allow: forward the request; otherwise answer it with `status` (a redirect sets the cookie). */
export type AccessDecision =
  | { allow: true }
  | { allow: false; status: 404 | 403; why: 'unknown-host' | 'bad-link' | 'not-yours' }
  | { allow: false; status: 302; location: string; cookie: { name: string; value: string; secure: boolean; maxAgeSeconds: number } };

export type FlagTarget = { sessionId: string } | { challenge: string };

export interface FlagResult {
  correct: boolean;
}

/** Domain errors the HTTP layer maps to problem responses. */
export class DomainError extends Error {
  constructor(
    readonly kind: 'NotFound' | 'LimitReached' | 'MaxLifetime' | 'Queued' | 'Invalid' | 'Unavailable' | 'TeamRequired',
    message: string,
  ) {
    super(message);
  }
}

export interface SessionService {
  catalogue(): CatalogueEntry[];
  /**
   * Idempotent: the owner's active session of the same challenge is returned with created=false.
   * The owner is the caller, or their team for a challenge played by teams (TeamRequired without one).
   */
  spawn(caller: Caller, challenge: string): Promise<{ created: boolean; session: SessionView }>;
  /** The caller's sessions and their team's; all sessions for admins when `all` is set. */
  list(caller: Caller, all?: boolean): SessionView[];
  /**
   * list(caller, all) once none of the listed sessions is still starting (each is ready or
   * failed), after `timeoutMs`, or when `signal` aborts; at once when there are none.
   */
  waitList(caller: Caller, all: boolean, timeoutMs: number, signal?: AbortSignal): Promise<SessionView[]>;
  /** NotFound for another user's or team's session (admins see all); TeamRequired for a team's without a team. */
  get(caller: Caller, id: string): SessionView;
  /** Resolves when the session is ready or failed, or after `timeoutMs` with its current view. */
  waitReady(caller: Caller, id: string, timeoutMs: number, signal?: AbortSignal): Promise<SessionView>;
  stop(caller: Caller, id: string): Promise<void>;
  extend(caller: Caller, id: string): Promise<SessionView>;
  submitFlag(caller: Caller, target: FlagTarget, flag: string): Promise<FlagResult>;
  /** A single-use link that opens the session's http port (its first, or `port`) in a browser. */
  openLink(caller: Caller, id: string, port?: string): Promise<{ url: string; expiresAt: string }>;
  /** Forward auth: may this request reach the instance behind its host? */
  authorize(req: AccessRequest): Promise<AccessDecision>;
  /** Caches synced and the apiserver reachable. */
  ready(): Promise<boolean>;
}
