import { ANNOTATION_EXPIRES_AT, ANNOTATION_REQUESTED_AT, API_VERSION, SESSION_KIND } from '../api/group.js';
import type { OwnerMode } from '../api/common.js';
import type { SessionSpec } from '../api/session.js';
import { sessionLabels } from './labels.js';

/**
 * The ChallengeSession a spawn creates: the one body the API, the tests and the benchmarks all
 * write, so they never drift from each other.
 */
export interface SessionIntent {
  name: string;
  namespace?: string;
  challenge: string;
  user: string;
  team?: string;
  /** `team`: every member of `team` shares the instance; a user-owned spec leaves the field out. */
  owner?: OwnerMode;
  /** The expires-at annotation: an RFC 3339 UTC time (see formatExpiry). */
  expiresAt: string;
  /** When the player asked (ISO 8601 with milliseconds): the session's place in the queue. */
  requestedAt?: string;
}

export interface SessionBody {
  apiVersion: typeof API_VERSION;
  kind: typeof SESSION_KIND;
  metadata: { name: string; namespace?: string; labels: Record<string, string>; annotations: Record<string, string> };
  spec: SessionSpec;
}

export function desiredSession(i: SessionIntent): SessionBody {
  const spec: SessionSpec = { challenge: i.challenge, user: i.user, ...(i.team ? { team: i.team } : {}), ...(i.owner === 'team' ? { owner: 'team' as const } : {}) };
  return {
    apiVersion: API_VERSION,
    kind: SESSION_KIND,
    metadata: {
      name: i.name,
      ...(i.namespace ? { namespace: i.namespace } : {}),
      labels: sessionLabels({ metadata: { name: i.name }, spec }),
      annotations: { [ANNOTATION_EXPIRES_AT]: i.expiresAt, ...(i.requestedAt ? { [ANNOTATION_REQUESTED_AT]: i.requestedAt } : {}) },
    },
    spec,
  };
}
