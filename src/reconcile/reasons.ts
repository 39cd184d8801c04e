/**
 * Condition reasons of a ChallengeSession. Clients and alerts match on these strings, so they are
 * part of the API: add new ones, do not rename.
 */
export const Reason = {
  /** Neither a Challenge of that name nor a recorded runtime snapshot exists. */
  UnknownChallenge: 'UnknownChallenge',
  /** The Challenge does not parse, or the apiserver rejected a child built from it. */
  InvalidChallenge: 'InvalidChallenge',
  /** The expires-at annotation is not an RFC 3339 UTC time. */
  InvalidExpiry: 'InvalidExpiry',
  /** The Challenge is not in the cache yet; nothing is known about what to run. */
  WaitingForChallenge: 'WaitingForChallenge',
  ImagePullFailed: 'ImagePullFailed',
  CrashLoop: 'CrashLoop',
  PodFailed: 'PodFailed',
  /** No node fits the Pod now; it may once capacity frees up, so the session keeps waiting. */
  Unschedulable: 'Unschedulable',
  Provisioning: 'Provisioning',
  /** All children exist. */
  Provisioned: 'Provisioned',
  /** All children exist but some egress allowlist entries were left out as forbidden. */
  EgressRestricted: 'EgressRestricted',
  Ready: 'Ready',
  Expired: 'Expired',
} as const;
export type Reason = (typeof Reason)[keyof typeof Reason];

export const CONDITION_READY = 'Ready';
export const CONDITION_PROVISIONED = 'Provisioned';
