/**
 * Condition reasons of a ChallengeSession. Clients and alerts match on these strings, so they are
 * part of the API: add new ones, do not rename.
 */
export const Reason = {
  /** Neither a Challenge of that name nor a recorded runtime snapshot exists. */
  UnknownChallenge: 'UnknownChallenge',
  /** The Challenge does not parse, or the apiserver rejected a child built from it. */
  InvalidChallenge: 'InvalidChallenge',
  /** The Challenge's static flag Secret or key does not exist (yet). */
  StaticFlagMissing: 'StaticFlagMissing',
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
  /**
   * The session waited in the queue longer than CTF_QUEUE_TIMEOUT and was never admitted. While
   * it waits, its reason is one of QueueReason (src/reconcile/admission.ts).
   */
  QueueTimeout: 'QueueTimeout',
  /** Routes for every exposed port are attached to the configured Gateway. */
  Routed: 'Routed',
  /** A warm pool instance no spawn has claimed: deliberately unreachable. */
  Unclaimed: 'Unclaimed',
  /** A Gateway is configured but the Gateway API (HTTPRoute, TLSRoute) is not installed. */
  GatewayAPIMissing: 'GatewayAPIMissing',
  /** An exposed port's protocol has no listener configured, so it is not published. */
  NoListener: 'NoListener',
} as const;
export type Reason = (typeof Reason)[keyof typeof Reason];

/**
 * Reasons of the Events recorded on a ChallengeSession (besides a Failed session's condition
 * reason, which its Warning Event repeats). Part of the API like the condition reasons.
 */
export const EventReason = {
  /** Children created in one pass, named in the message. */
  Created: 'Created',
  /** Egress allowlist entries inside forbidden ranges were left out. */
  EgressDropped: 'EgressDropped',
  /** A player submitted the flag of this session (the related object is theirs). */
  FlagShared: 'FlagShared',
  /** A solve webhook keeps failing (it stays pending and is retried). */
  WebhookFailing: 'WebhookFailing',
  Expired: 'Expired',
  ChallengeDeleted: 'ChallengeDeleted',
  /** A pool instance claimed by an owner who already held a session of the challenge (two replicas at once): released. */
  DuplicateClaim: 'DuplicateClaim',
  /** A spawned session of an owner who already held one of the challenge (a duplicate check that could not run): released. */
  DuplicateSession: 'DuplicateSession',
  /** A Failed session whose condition carries no reason. */
  Failed: 'Failed',
} as const;

export const CONDITION_READY = 'Ready';
export const CONDITION_PROVISIONED = 'Provisioned';
/** Present only when a Gateway is configured: whether every exposed port is published. */
export const CONDITION_ROUTED = 'Routed';
