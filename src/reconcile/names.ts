import { createHash } from 'node:crypto';
import type { ExposedPort } from '../api/challenge.js';

/**
 * Names of a session's children. They are derived from the session name alone, so a reconcile
 * that crashed half-way finds the objects it already created instead of making new ones.
 * Session names are at most 52 characters, which leaves room for the "-flag" suffix.
 */
export interface ChildNames {
  pod: string;
  service: string;
  networkPolicy: string;
  secret: string;
}

export const FLAG_SECRET_SUFFIX = '-flag';

/** All child names of the session called `sessionName`. */
export function childNames(sessionName: string): ChildNames {
  return { pod: sessionName, service: sessionName, networkPolicy: sessionName, secret: `${sessionName}${FLAG_SECRET_SUFFIX}` };
}

/**
 * A label-safe stand-in for a user id: user ids may hold characters (@, :, +) and lengths that
 * label values cannot, and a hash also keeps e-mail addresses out of Pod labels.
 */
export function userHash(user: string): string {
  return createHash('sha256').update(user, 'utf8').digest('hex').slice(0, 16);
}

/** The same stand-in for a team id: team ids are scoreboard ids of any form, like user ids. */
export function teamHash(team: string): string {
  return userHash(team);
}

/** The Service port (and endpoint) name of an exposed port: its own name, or e.g. "http-8080". */
export function exposedPortName(expose: Pick<ExposedPort, 'name' | 'port' | 'protocol'>): string {
  return expose.name ?? `${expose.protocol}-${expose.port}`;
}
