import { z } from 'zod';

/**
 * Who an instance belongs to: the player who started it (`user`), or every member of that
 * player's team (`team`, the token's `team` claim), who then share one instance.
 */
export const OWNER_MODES = ['user', 'team'] as const;
export type OwnerMode = (typeof OWNER_MODES)[number];

export const DNS_LABEL = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$';
export const DNS_SUBDOMAIN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$';

/** A lowercase RFC 1123 label (or subdomain) of at most `max` characters. */
export function dnsLabel(max: number, subdomain = false) {
  return z
    .string()
    .min(1)
    .max(max)
    .regex(new RegExp(subdomain ? DNS_SUBDOMAIN : DNS_LABEL), subdomain ? 'must be a DNS subdomain (lowercase letters, digits, - and .)' : 'must be a DNS label (lowercase letters, digits and -)');
}

/** The parts of ObjectMeta the engine reads; everything else passes through untouched. */
export const objectMeta = z.looseObject({
  name: z.string(),
  namespace: z.string().optional(),
  uid: z.string().optional(),
  resourceVersion: z.string().optional(),
  generation: z.number().optional(),
  creationTimestamp: z.union([z.string(), z.date()]).optional(),
  deletionTimestamp: z.union([z.string(), z.date()]).optional(),
  labels: z.record(z.string(), z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
});

/** The bounds of metav1.Condition, which the CRD's status schema carries too. */
export const CONDITION_TYPE_PATTERN =
  '^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$';
export const CONDITION_REASON_PATTERN = '^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$';

export const conditionSchema = z.object({
  type: z.string().max(316).regex(new RegExp(CONDITION_TYPE_PATTERN)),
  status: z.enum(['True', 'False', 'Unknown']),
  reason: z.string().min(1).max(1024).regex(new RegExp(CONDITION_REASON_PATTERN), 'must be CamelCase, such as PodReady'),
  message: z.string().max(32768),
  lastTransitionTime: z.string(),
  observedGeneration: z.number().int().min(0).optional(),
});
export type Condition = z.infer<typeof conditionSchema>;
