import type { FastifyRequest } from 'fastify';
import { SignJWT, errors as joseErrors, jwtVerify } from 'jose';
import { LRUCache } from 'lru-cache';
import { z } from 'zod';
import { USER_PATTERN } from '../api/session.js';
import type { Caller } from '../sessions/types.js';
import { HttpProblem } from './problem.js';

/**
 * Bearer tokens: HS256 JWTs signed with the shared token secret. Whoever holds the secret (the
 * scoreboard, or `npm run token`) mints tokens; the API only verifies them, so it keeps no
 * user store. `role: admin` lets a caller see and stop every session.
 */

export const TOKEN_ISSUER = 'challenge-engine';
export const TOKEN_AUDIENCE = 'challenge-engine-api';
export const MIN_SECRET_LENGTH = 32;
const CLOCK_TOLERANCE_SECONDS = 30;
/** Far above any real token; bounds the work an anonymous caller can cause. */
const MAX_TOKEN_LENGTH = 8192;

const USER_RE = new RegExp(USER_PATTERN);

const claimsSchema = z.object({
  sub: z.string().regex(USER_RE, 'sub must be a user id'),
  team: z.string().regex(USER_RE, 'team must be a team id').optional(),
  role: z.enum(['player', 'admin'], 'role must be player or admin'),
  exp: z.number(),
  iat: z.number().optional(),
});

export interface IssueOptions {
  user: string;
  team?: string;
  admin?: boolean;
  ttlSeconds: number;
}

export interface TokenIssuer {
  issue(opts: IssueOptions): Promise<string>;
}

export interface TokenVerifier {
  /** The caller the token speaks for; rejects with InvalidTokenError. */
  verify(token: string): Promise<Caller>;
}

export class InvalidTokenError extends Error {}

function secretKey(secret: string): Uint8Array {
  if (secret.length < MIN_SECRET_LENGTH) throw new Error(`the token secret must be at least ${MIN_SECRET_LENGTH} characters`);
  return new TextEncoder().encode(secret);
}

export function createTokenIssuer(secret: string, now: () => Date = () => new Date()): TokenIssuer {
  const key = secretKey(secret);
  return {
    async issue({ user, team, admin = false, ttlSeconds }) {
      if (!USER_RE.test(user)) throw new Error('user must be 1-128 characters of letters, digits and ._@:+-, starting with a letter or digit');
      if (team !== undefined && !USER_RE.test(team)) throw new Error('team must be 1-128 characters of letters, digits and ._@:+-, starting with a letter or digit');
      if (!Number.isInteger(ttlSeconds) || ttlSeconds <= 0) throw new Error('ttlSeconds must be a positive integer');
      const iat = Math.floor(now().getTime() / 1000);
      return new SignJWT({ role: admin ? 'admin' : 'player', ...(team !== undefined ? { team } : {}) })
        .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
        .setSubject(user)
        .setIssuer(TOKEN_ISSUER)
        .setAudience(TOKEN_AUDIENCE)
        .setIssuedAt(iat)
        .setExpirationTime(iat + ttlSeconds)
        .sign(key);
    },
  };
}

export function issueToken(secret: string, opts: IssueOptions): Promise<string> {
  return createTokenIssuer(secret).issue(opts);
}

/**
 * A short, quote-free reason; it goes to the client in the problem and WWW-Authenticate.
 * `algorithms`: what the verifier accepts (the shared secret's, or an issuer's).
 */
export function describeJoseError(err: unknown, algorithms: readonly string[] = ['HS256']): string {
  if (err instanceof joseErrors.JWTExpired) return 'the token has expired';
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    if (err.reason === 'missing') return `the token has no ${err.claim} claim`;
    if (err.claim === 'nbf') return 'the token is not valid yet';
    if (err.claim === 'iss' || err.claim === 'aud') return 'the token was not issued for this API';
    return `the token ${err.claim} claim is invalid`;
  }
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return `the token must be signed with ${algorithms.length === 1 ? algorithms[0] : `one of ${algorithms.join(', ')}`}`;
  if (err instanceof joseErrors.JWKSNoMatchingKey) return 'the token was signed with a key the issuer does not publish';
  if (err instanceof joseErrors.JWKSTimeout || err instanceof joseErrors.JWKSInvalid) return "the issuer's keys cannot be read right now";
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'the token signature is invalid';
  return 'the token is malformed';
}

/** Tokens verified recently; a player sends the same token with every request. */
const VERIFIED_CACHE_SIZE = 10_000;

export function createTokenVerifier(secret: string, now: () => Date = () => new Date()): TokenVerifier {
  const raw = secretKey(secret);
  // Imported once: given raw bytes, jose would import a WebCrypto key on every verification.
  const key = crypto.subtle.importKey('raw', raw, { name: 'HMAC', hash: 'SHA-256' }, false, ['verify']);
  // Keyed by the whole token, so only a byte-identical token that passed every check before
  // skips the signature; its expiry is still checked on every use.
  const verified = new LRUCache<string, { caller: Caller; exp: number }>({ max: VERIFIED_CACHE_SIZE });
  return {
    async verify(token) {
      if (token.length > MAX_TOKEN_LENGTH) throw new InvalidTokenError('the token is too long');
      const currentDate = now();
      const hit = verified.get(token);
      if (hit) {
        if (hit.exp > currentDate.getTime() / 1000 - CLOCK_TOLERANCE_SECONDS) return hit.caller;
        verified.delete(token);
      }
      let payload: unknown;
      try {
        ({ payload } = await jwtVerify(token, await key, {
          algorithms: ['HS256'],
          issuer: TOKEN_ISSUER,
          audience: TOKEN_AUDIENCE,
          requiredClaims: ['exp', 'sub'],
          clockTolerance: CLOCK_TOLERANCE_SECONDS,
          currentDate,
        }));
      } catch (err) {
        throw new InvalidTokenError(describeJoseError(err));
      }
      const claims = claimsSchema.safeParse(payload);
      if (!claims.success) throw new InvalidTokenError(`the token claims are invalid: ${claims.error.issues.map((i) => i.message).join(', ')}`);
      const { sub, team, role, iat, exp } = claims.data;
      // jose checks iat only together with maxTokenAge; a token from the future is as suspect as an nbf in it.
      if (iat !== undefined && iat > currentDate.getTime() / 1000 + CLOCK_TOLERANCE_SECONDS) throw new InvalidTokenError('the token was issued in the future');
      const caller: Caller = { user: sub, ...(team !== undefined ? { team } : {}), admin: role === 'admin' };
      Object.freeze(caller);
      verified.set(token, { caller, exp });
      return caller;
    },
  };
}

const REALM = 'Bearer realm="challenge-engine"';
const callers = new WeakMap<FastifyRequest, Caller>();

/** onRequest hook: runs before the body is read, so anonymous callers learn nothing about input. */
export function authenticate(verifier: TokenVerifier) {
  return async function authenticateRequest(request: FastifyRequest): Promise<void> {
    const header = request.headers.authorization;
    const match = header === undefined ? null : /^Bearer +(\S+) *$/i.exec(header);
    if (!match?.[1]) {
      throw new HttpProblem(401, 'unauthorized', 'this endpoint needs an "Authorization: Bearer <token>" header', { 'www-authenticate': REALM });
    }
    try {
      callers.set(request, await verifier.verify(match[1]));
    } catch (err) {
      if (!(err instanceof InvalidTokenError)) throw err;
      const description = err.message.replace(/["\\]/g, '');
      throw new HttpProblem(401, 'unauthorized', err.message, { 'www-authenticate': `${REALM}, error="invalid_token", error_description="${description}"` });
    }
  };
}

/** The authenticated caller of a request that passed `authenticate`. */
export function callerOf(request: FastifyRequest): Caller {
  const caller = callers.get(request);
  if (!caller) throw new Error('callerOf() on a request that was not authenticated');
  return caller;
}
