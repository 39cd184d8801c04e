import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify, type JWTPayload } from 'jose';
import { LRUCache } from 'lru-cache';
import { USER_PATTERN } from '../api/session.js';
import type { Caller } from '../sessions/types.js';
import { describeJoseError, InvalidTokenError, type TokenVerifier } from './auth.js';

/**
 * Tokens of any OIDC / JWKS issuer (the scoreboard's identity provider): RS256, ES256 and EdDSA
 * signatures checked against the issuer's published keys. jose's remote key set fetches the
 * JWKS once, keeps it for `cacheSeconds`, fetches it again for a `kid` it does not know, but at
 * most once per `cooldownSeconds`, so a flood of tokens with made-up `kid`s costs the issuer at
 * most one request per cool-down. Claims map to the caller by name (user, team, admin).
 */

export const ASYMMETRIC_ALGORITHMS = ['RS256', 'ES256', 'EdDSA'] as const;
const CLOCK_TOLERANCE_SECONDS = 30;
const MAX_TOKEN_LENGTH = 8192;
const USER_RE = new RegExp(USER_PATTERN);

export interface OidcOptions {
  jwksUrl: string;
  issuer: string;
  audience: string;
  /** Claim names: the user id, the team id, and the claim that makes an organiser. */
  claims: { user: string; team: string; admin: string };
  /** The admin claim's value (or one of its values, for a list such as `groups`). */
  adminValue: string;
  cacheSeconds: number;
  cooldownSeconds: number;
  timeoutMs?: number;
  now?: () => Date;
}

/** A dotted path into the claims: `realm_access.roles` reads nested objects. */
function claim(payload: JWTPayload, path: string): unknown {
  let v: unknown = payload;
  for (const part of path.split('.')) v = v && typeof v === 'object' ? (v as Record<string, unknown>)[part] : undefined;
  return v;
}

export function mapClaims(payload: JWTPayload, o: Pick<OidcOptions, 'claims' | 'adminValue'>): Caller {
  const user = claim(payload, o.claims.user);
  if (typeof user !== 'string' || !USER_RE.test(user)) throw new InvalidTokenError(`the token's ${o.claims.user} claim is not a user id`);
  const team = claim(payload, o.claims.team);
  if (team !== undefined && (typeof team !== 'string' || !USER_RE.test(team))) throw new InvalidTokenError(`the token's ${o.claims.team} claim is not a team id`);
  const admin = claim(payload, o.claims.admin);
  const isAdmin = Array.isArray(admin) ? admin.includes(o.adminValue) : admin === o.adminValue;
  return Object.freeze({ user, ...(typeof team === 'string' ? { team } : {}), admin: isAdmin });
}

export function createOidcVerifier(o: OidcOptions): TokenVerifier {
  const keys = createRemoteJWKSet(new URL(o.jwksUrl), {
    cacheMaxAge: o.cacheSeconds * 1000,
    cooldownDuration: o.cooldownSeconds * 1000,
    timeoutDuration: o.timeoutMs ?? 5000,
  });
  const now = o.now ?? (() => new Date());
  const verified = new LRUCache<string, { caller: Caller; exp: number }>({ max: 10_000, ttl: Math.min(o.cacheSeconds, 60) * 1000 });
  return {
    async verify(token) {
      if (token.length > MAX_TOKEN_LENGTH) throw new InvalidTokenError('the token is too long');
      const currentDate = now();
      const hit = verified.get(token);
      if (hit && hit.exp > currentDate.getTime() / 1000 - CLOCK_TOLERANCE_SECONDS) return hit.caller;
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, keys, {
          algorithms: [...ASYMMETRIC_ALGORITHMS],
          issuer: o.issuer,
          audience: o.audience,
          requiredClaims: ['exp'],
          clockTolerance: CLOCK_TOLERANCE_SECONDS,
          currentDate,
        }));
      } catch (err) {
        throw new InvalidTokenError(describeJoseError(err, ASYMMETRIC_ALGORITHMS));
      }
      const caller = mapClaims(payload, o);
      verified.set(token, { caller, exp: payload.exp ?? 0 });
      return caller;
    },
  };
}

/**
 * Both kinds of token at once: HS256 ones to the shared-secret verifier, every other algorithm to
 * the issuer's keys. Each side accepts only its own algorithms, so an HS256 token signed with the
 * issuer's public key, or one with alg "none", fails on both.
 */
export function combinedVerifier(shared: TokenVerifier | undefined, oidc: TokenVerifier | undefined): TokenVerifier {
  return {
    async verify(token) {
      let alg: string | undefined;
      try {
        alg = decodeProtectedHeader(token).alg;
      } catch {
        throw new InvalidTokenError('the token is malformed');
      }
      if (alg === 'HS256' && shared) return shared.verify(token);
      if (alg !== 'HS256' && oidc) return oidc.verify(token);
      if (shared) return shared.verify(token);
      if (oidc) return oidc.verify(token);
      throw new InvalidTokenError('no token is accepted');
    },
  };
}
