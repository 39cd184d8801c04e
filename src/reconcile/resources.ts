import type { V1ResourceRequirements } from '@kubernetes/client-node';
import type { ChallengeContainer } from '../api/challenge.js';
import { compareQuantities } from './quantity.js';

export interface ResourceList {
  cpu: string;
  memory: string;
}

export interface ResourceDefaults {
  defaultRequests: ResourceList;
  defaultLimits: ResourceList;
}

const RESOURCE_NAMES = ['cpu', 'memory'] as const;

/**
 * Requests and limits for one container: each of cpu and memory is taken from the challenge when
 * given and from the defaults otherwise, then adjusted so that the request never exceeds the
 * limit (the apiserver rejects such a Pod): a defaulted limit is raised to an explicit request,
 * and a request above its limit is lowered to it. Every container always has both limits, so one
 * session cannot starve its node.
 */
export function containerResources(resources: ChallengeContainer['resources'], defaults: ResourceDefaults): V1ResourceRequirements {
  const requests: Record<string, string> = {};
  const limits: Record<string, string> = {};
  for (const name of RESOURCE_NAMES) {
    const explicitRequest = resources?.requests?.[name];
    const limit = resources?.limits?.[name] ?? larger(defaults.defaultLimits[name], explicitRequest);
    requests[name] = smaller(explicitRequest ?? defaults.defaultRequests[name], limit);
    limits[name] = limit;
  }
  return { requests, limits };
}

/** The larger quantity; `a` when they cannot be compared or `b` is absent. */
function larger(a: string, b: string | undefined): string {
  return b !== undefined && compareQuantities(b, a) === 1 ? b : a;
}

/** The smaller quantity; `a` when they cannot be compared. */
function smaller(a: string, b: string): string {
  return compareQuantities(b, a) === -1 ? b : a;
}
