import { ANNOTATION_ACCESS_TICKET_PREFIX } from '../api/group.js';
import type { ChallengeSession } from '../api/session.js';
import { checkCookie, checkTicket, issueCookie, issueTicket } from '../access/tokens.js';
import { classifyError } from '../kube/errors.js';
import { effectiveRuntime } from '../reconcile/runtime.js';
import { creationTime, lifetimeMs } from '../reconcile/expiry.js';
import { userHash } from '../reconcile/names.js';
import { challengeOf, visibleSession, type PlayerDeps } from './deps.js';
import { DomainError, type AccessDecision, type AccessRequest, type Caller } from './types.js';

/**
 * Owner-bound access to an instance's HTTP hosts, decided for the gateway (forward auth):
 * a single-use link from the API opens the instance and leaves an HttpOnly cookie for that one
 * host; any other request to the host without that cookie is refused.
 */

/** Path on an instance's host that the gateway sends to the engine with the ticket. */
export const OPEN_PATH = '/.challenge-engine/open';
export const TICKET_TTL_SECONDS = 60;

export interface AccessOptions {
  key: Buffer;
  /** Cookies for https hosts are Secure and use the __Host- prefix. */
  secure: boolean;
  /**
   * The public origin of a host (scheme, host, port). The redirect after a link is absolute:
   * gateways resolve a relative Location against the auth service's own address (Traefik does).
   */
  origin: (host: string) => string;
}

export function cookieName(secure: boolean): string {
  return secure ? '__Host-challenge-engine-access' : 'challenge-engine-access';
}

/** Issues a single-use link for the session's http port (its first, or the one named). */
export async function openLink(d: PlayerDeps, a: AccessOptions, caller: Caller, id: string, port?: string): Promise<{ url: string; expiresAt: string }> {
  const s = visibleSession(d, caller, id);
  const endpoint = (s.status?.endpoints ?? []).find((e) => e.protocol === 'http' && e.externalHost && e.route && (port === undefined || e.name === port));
  if (s.status?.phase !== 'Running') throw new DomainError('Invalid', `session ${id} is not running yet`);
  if (!endpoint?.externalHost || !endpoint.url) throw new DomainError('Invalid', port ? `session ${id} publishes no http port named ${port}` : `session ${id} publishes no http port`);
  const uid = s.metadata.uid ?? '';
  const ticket = issueTicket(a.key, endpoint.externalHost, uid, d.now(), TICKET_TTL_SECONDS);
  // A player's new link replaces their previous one (only the nonce they recorded last can be
  // used); other members of a team keep theirs.
  const key = ticketAnnotation(caller.user);
  d.caches.assumeSession(await d.writer.patchSessionMetadata(d.caches.namespace, id, { metadata: { annotations: { [key]: ticket.nonceHash } } }));
  await d.waits.untilWritten(id, uid, (c) => c.metadata.annotations?.[key] === ticket.nonceHash);
  d.log.info({ session: id }, 'Issued an access link');
  return { url: `${endpoint.url}${OPEN_PATH}?ticket=${encodeURIComponent(ticket.token)}`, expiresAt: ticket.expiresAt.toISOString() };
}

/** The annotation holding `user`'s open link on a session. */
export function ticketAnnotation(user: string): string {
  return `${ANNOTATION_ACCESS_TICKET_PREFIX}${userHash(user)}`;
}

const HOST = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

/** The host without a port, lowercased; undefined when it cannot be a host name. */
export function normaliseHost(raw: string | undefined): string | undefined {
  const host = raw?.split(',')[0]?.trim().toLowerCase().replace(/:\d{1,5}$/, '');
  return host && HOST.test(host) ? host : undefined;
}

export function readCookie(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
}

/** What the gateway should do with one request to an instance host. */
export async function authorize(d: PlayerDeps, a: AccessOptions, req: AccessRequest): Promise<AccessDecision> {
  const host = normaliseHost(req.host);
  const session = host ? d.caches.sessionByHost(host) : undefined;
  if (!host || !session?.metadata.uid) return { allow: false, status: 404, why: 'unknown-host' };
  const uid = session.metadata.uid;
  const url = parseUri(req.uri);
  if (url?.pathname === OPEN_PATH) {
    const ticket = url.searchParams.get('ticket') ?? '';
    const checked = checkTicket(a.key, host, ticket, d.now());
    if (!checked.ok || checked.value.sessionUid !== uid) return { allow: false, status: 403, why: 'bad-link' };
    if (!(await consumeTicket(d, session, checked.value.nonceHash))) return { allow: false, status: 403, why: 'bad-link' };
    d.log.info({ session: session.metadata.name }, 'Access link used');
    const cookie = issueCookie(a.key, host, uid, latestEnd(d, session));
    return { allow: false, status: 302, location: `${a.origin(host)}/`, cookie: { name: cookieName(a.secure), value: cookie, secure: a.secure, maxAgeSeconds: Math.max(1, Math.floor((latestEnd(d, session).getTime() - d.now().getTime()) / 1000)) } };
  }
  const value = readCookie(req.cookie, cookieName(a.secure));
  const checked = value === undefined ? undefined : checkCookie(a.key, host, value, d.now());
  if (checked?.ok && checked.value.sessionUid === uid) return { allow: true };
  return { allow: false, status: 403, why: 'not-yours' };
}

/** The path and query of the original request; undefined when it does not parse (never a link). */
function parseUri(uri: string | undefined): URL | undefined {
  try {
    return new URL(uri ?? '/', 'http://instance');
  } catch {
    return undefined;
  }
}

/** The latest the session can live (creation plus the maximum lifetime): the cookie's end. */
function latestEnd(d: PlayerDeps, s: ChallengeSession): Date {
  const eff = effectiveRuntime(s, challengeOf(d, s.spec.challenge));
  const start = creationTime(s) ?? d.now();
  return new Date(start.getTime() + lifetimeMs(eff?.runtime, 'max'));
}

/**
 * Removes the ticket's nonce from the session (whichever player's annotation holds it), over the
 * resourceVersion read, so that of two opens of one link (on any replicas) exactly one succeeds.
 */
async function consumeTicket(d: PlayerDeps, session: ChallengeSession, nonceHash: string): Promise<boolean> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const live = await d.live.session(session.metadata.name);
    if (!live || live.metadata.uid !== session.metadata.uid) return false;
    const key = Object.entries(live.metadata.annotations ?? {}).find(([k, v]) => k.startsWith(ANNOTATION_ACCESS_TICKET_PREFIX) && v === nonceHash)?.[0];
    if (key === undefined) return false;
    try {
      d.caches.assumeSession(await d.writer.patchSessionMetadata(d.caches.namespace, live.metadata.name, { metadata: { annotations: { [key]: null } } }, live.metadata.resourceVersion));
      return true;
    } catch (err) {
      const kind = classifyError(err).kind;
      if (kind === 'NotFound') return false;
      if (kind !== 'Conflict') throw err;
    }
  }
  return false;
}
