/** API group, version and the names shared by the CRDs, the controller and the HTTP API. */
export const GROUP = 'ctf.challenge-engine.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

export const CHALLENGE_KIND = 'Challenge';
export const CHALLENGE_PLURAL = 'challenges';
export const SESSION_KIND = 'ChallengeSession';
export const SESSION_PLURAL = 'challengesessions';

/** RFC 3339 UTC instant after which the session is deleted. The only source of truth for expiry. */
export const ANNOTATION_EXPIRES_AT = `${GROUP}/expires-at`;

export const LABEL_SESSION = `${GROUP}/session`;
export const LABEL_CHALLENGE = `${GROUP}/challenge`;
export const LABEL_USER_HASH = `${GROUP}/user-hash`;
/** Only on team-owned sessions and their children: the hash of the owning team. */
export const LABEL_TEAM_HASH = `${GROUP}/team-hash`;
export const LABEL_MANAGED_BY = 'app.kubernetes.io/managed-by';
export const MANAGED_BY = 'challenge-engine';
/** Hash of the desired spec of a child object; equal hash means nothing to write. */
export const ANNOTATION_SPEC_HASH = `${GROUP}/spec-hash`;
/**
 * Prefix of the annotations that hold, per player (`<prefix><user hash>`), the hash of the nonce
 * of that player's one open access link (see src/access/tokens.ts); removed when used.
 */
export const ANNOTATION_ACCESS_TICKET_PREFIX = `${GROUP}/access-ticket-`;
export const ANNOTATION_CHALLENGE_GENERATION = `${GROUP}/challenge-generation`;

/** On a pool instance's session only: the Challenge it is kept warm for (unclaimed or claimed). */
export const LABEL_POOL = `${GROUP}/pool`;
/**
 * A claimed pool instance's player, written once by the claim (src/sessions/pool-claim.ts) with a
 * resourceVersion precondition, so no instance ever gets two owners.
 */
export const ANNOTATION_CLAIMED_USER = `${GROUP}/claimed-user`;
export const ANNOTATION_CLAIMED_TEAM = `${GROUP}/claimed-team`;
/** `user` or `team`, as spec.owner of a spawned session. */
export const ANNOTATION_CLAIMED_OWNER = `${GROUP}/claimed-owner`;
/** RFC 3339 instant with milliseconds: the lifetime (and the public host) count from it. */
export const ANNOTATION_CLAIMED_AT = `${GROUP}/claimed-at`;
/**
 * When the player asked for the session, in milliseconds (RFC 3339 with a fraction): the
 * first-come queue's order. creationTimestamp has whole seconds only.
 */
export const ANNOTATION_REQUESTED_AT = `${GROUP}/requested-at`;
