import type { V1ObjectMeta, V1OwnerReference } from '@kubernetes/client-node';
import { isPoolSession, sessionPlayer, type ChallengeSession, type Player } from '../api/session.js';
import { ANNOTATION_CHALLENGE_GENERATION, API_VERSION, LABEL_CHALLENGE, LABEL_MANAGED_BY, LABEL_POOL, LABEL_SESSION, LABEL_TEAM_HASH, LABEL_USER_HASH, MANAGED_BY, SESSION_KIND } from '../api/group.js';
import { teamHash, userHash } from './names.js';

/** Generation of the Challenge whose runtime a Pod was built from. */
export { ANNOTATION_CHALLENGE_GENERATION };

/** The parts of a session that its children's metadata is derived from. */
export type SessionMeta = Pick<ChallengeSession, 'metadata' | 'spec'>;

/**
 * Labels every child carries: the session label is what selectors and the NetworkPolicy match,
 * the others let operators list a challenge's, a user's or a team's objects with a label
 * selector (the user is the one who started the session). The team label is only on team-owned
 * sessions, so that those of a user-owned session never change when its player has a team. A
 * pool instance's children carry the pool label instead of a player's, set before any claim and
 * never changed by one (the claimed session itself gets the player's labels: playerLabels).
 */
export function sessionLabels(session: SessionMeta): Record<string, string> {
  if (isPoolSession(session)) {
    return { [LABEL_SESSION]: session.metadata.name, [LABEL_CHALLENGE]: session.spec.challenge, [LABEL_POOL]: session.spec.challenge, [LABEL_MANAGED_BY]: MANAGED_BY };
  }
  const player = sessionPlayer({ spec: session.spec, metadata: {} });
  return {
    [LABEL_SESSION]: session.metadata.name,
    [LABEL_CHALLENGE]: session.spec.challenge,
    ...(player ? playerLabels(player) : {}),
    [LABEL_MANAGED_BY]: MANAGED_BY,
  };
}

/** The labels that find a player's sessions: the user's hash, and the owning team's. */
export function playerLabels(player: Player): Record<string, string> {
  return {
    [LABEL_USER_HASH]: userHash(player.user),
    ...(player.owner.mode === 'team' ? { [LABEL_TEAM_HASH]: teamHash(player.owner.team) } : {}),
  };
}

/** The selector for the session's own Pod: the session label alone, which no other session shares. */
export function sessionSelector(session: Pick<SessionMeta, 'metadata'>): Record<string, string> {
  return { [LABEL_SESSION]: session.metadata.name };
}

/**
 * The controller owner reference that lets garbage collection delete children with their
 * session and lets the controller map a child's events back to its session. Objects read from
 * the apiserver always have a UID; an empty one would be rejected on write, not silently kept.
 */
export function ownerReference(session: Pick<SessionMeta, 'metadata'>): V1OwnerReference {
  return {
    apiVersion: API_VERSION,
    kind: SESSION_KIND,
    name: session.metadata.name,
    uid: session.metadata.uid ?? '',
    controller: true,
    blockOwnerDeletion: true,
  };
}

/** Metadata shared by all children: name, the session's namespace, labels and the owner. */
export function childMetadata(session: SessionMeta, name: string, annotations?: Record<string, string>): V1ObjectMeta {
  return {
    name,
    namespace: session.metadata.namespace,
    labels: sessionLabels(session),
    ...(annotations ? { annotations } : {}),
    ownerReferences: [ownerReference(session)],
  };
}
