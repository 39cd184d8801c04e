import { apiGet, type BenchCluster } from './cluster.js';

/**
 * Write accounting from the apiserver's own /metrics: apiserver_request_total by verb, group,
 * resource and subresource, and the request-duration sums and counts for the same keys. A
 * snapshot before and after a phase gives what that phase cost the apiserver.
 */

export const WRITE_VERBS = new Set(['POST', 'PUT', 'PATCH', 'DELETE', 'APPLY', 'DELETECOLLECTION']);

export interface RequestKey {
  verb: string;
  group: string;
  resource: string;
  subresource: string;
}

export interface MetricsSnapshot {
  at: number;
  /** "VERB group/resource/subresource" -> count, all codes summed. */
  requests: Map<string, number>;
  /** The same, for answers outside 2xx only (conflicts, already-exists, invalid). */
  rejected: Map<string, number>;
  durationSum: Map<string, number>;
  durationCount: Map<string, number>;
}

const LINE = /^(apiserver_request_total|apiserver_request_duration_seconds_sum|apiserver_request_duration_seconds_count)\{([^}]*)\} ([0-9.eE+-]+)$/;
const LABEL = /(\w+)="((?:[^"\\]|\\.)*)"/g;

export function keyOf(k: RequestKey): string {
  return `${k.verb} ${k.group || 'core'}/${k.resource}${k.subresource ? `/${k.subresource}` : ''}`;
}

export function parseKey(key: string): RequestKey {
  const [verb = '', path = ''] = key.split(' ');
  const [group = '', resource = '', subresource = ''] = path.split('/');
  return { verb, group: group === 'core' ? '' : group, resource, subresource };
}

export function parseMetrics(text: string, at = Date.now()): MetricsSnapshot {
  const snap: MetricsSnapshot = { at, requests: new Map(), rejected: new Map(), durationSum: new Map(), durationCount: new Map() };
  for (const line of text.split('\n')) {
    if (!line.startsWith('apiserver_request_')) continue;
    const m = LINE.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(LABEL)) labels[l[1] as string] = l[2] as string;
    if (labels.dry_run) continue;
    const key = keyOf({ verb: labels.verb ?? '', group: labels.group ?? '', resource: labels.resource ?? '', subresource: labels.subresource ?? '' });
    const value = Number(m[3]);
    const target = m[1] === 'apiserver_request_total' ? snap.requests : m[1] === 'apiserver_request_duration_seconds_sum' ? snap.durationSum : snap.durationCount;
    target.set(key, (target.get(key) ?? 0) + value);
    if (m[1] === 'apiserver_request_total' && !(labels.code ?? '').startsWith('2')) snap.rejected.set(key, (snap.rejected.get(key) ?? 0) + value);
  }
  return snap;
}

export async function scrape(cluster: Pick<BenchCluster, 'state' | 'tls'>): Promise<MetricsSnapshot> {
  return parseMetrics(await apiGet(cluster, '/metrics', 30_000));
}

function diff(a: Map<string, number>, b: Map<string, number>): Map<string, number> {
  const out = new Map<string, number>();
  for (const [k, v] of b) {
    const d = v - (a.get(k) ?? 0);
    if (d > 0) out.set(k, d);
  }
  return out;
}

/**
 * Write requests between two snapshots, by key, largest first. Rejected writes (409 conflicts,
 * 422 failed preconditions) count: the apiserver did the work; rejectedBetween tells them apart.
 */
export function writesBetween(before: MetricsSnapshot, after: MetricsSnapshot): Map<string, number> {
  const all = diff(before.requests, after.requests);
  return new Map([...all].filter(([k]) => WRITE_VERBS.has(parseKey(k).verb)).sort((x, y) => y[1] - x[1]));
}

/** Write requests between two snapshots that the apiserver answered outside 2xx. */
export function rejectedBetween(before: MetricsSnapshot, after: MetricsSnapshot): Map<string, number> {
  const all = diff(before.rejected, after.rejected);
  return new Map([...all].filter(([k]) => WRITE_VERBS.has(parseKey(k).verb)));
}

/** Mean apiserver-side latency (ms) of every request key that was called between the snapshots. */
export function latencyBetween(before: MetricsSnapshot, after: MetricsSnapshot): Map<string, { count: number; meanMs: number }> {
  const sums = diff(before.durationSum, after.durationSum);
  const counts = diff(before.durationCount, after.durationCount);
  const out = new Map<string, { count: number; meanMs: number }>();
  for (const [k, c] of counts) out.set(k, { count: c, meanMs: ((sums.get(k) ?? 0) / c) * 1000 });
  return new Map([...out].sort((x, y) => y[1].count - x[1].count));
}

/**
 * Whether a write is the engine's (its API or its controller) rather than another component's.
 * Everything here uses one admin identity, so attribution is by what is written and how: the
 * engine creates and deletes sessions, patches their status, applies children with server-side
 * apply and records core/v1 Events. The scheduler binds Pods and writes events.k8s.io Events,
 * kwok patches Pod status and renews the node Lease, garbage collection deletes children, the
 * endpoint-slice controller maintains EndpointSlices.
 */
export function isEngineWrite(key: string): boolean {
  const k = parseKey(key);
  if (k.group === 'ctf.challenge-engine.io') return true;
  if (k.verb === 'APPLY' && ['secrets', 'services', 'networkpolicies', 'pods', 'namespaces'].includes(k.resource) && !k.subresource) return true;
  return k.group === '' && k.resource === 'events' && k.verb === 'POST';
}

export function sum(m: Map<string, number>, filter: (key: string) => boolean = () => true): number {
  let n = 0;
  for (const [k, v] of m) if (filter(k)) n += v;
  return n;
}

/** Subtracts `b` from `a` per key, dropping what falls to zero or below. */
export function subtract(a: Map<string, number>, b: Map<string, number>): Map<string, number> {
  const out = new Map<string, number>();
  for (const [k, v] of a) {
    const d = v - (b.get(k) ?? 0);
    if (d > 0) out.set(k, d);
  }
  return out;
}

export function toRecord(m: Map<string, number>, divisor = 1): Record<string, number> {
  return Object.fromEntries([...m].map(([k, v]) => [k, Math.round((v / divisor) * 1000) / 1000]));
}

/** All writes counted so far whose key passes `filter`. */
export function writeTotal(snap: MetricsSnapshot, filter: (key: string) => boolean = () => true): number {
  let n = 0;
  for (const [k, v] of snap.requests) if (WRITE_VERBS.has(parseKey(k).verb) && filter(k)) n += v;
  return n;
}

/**
 * Waits until the write counter (restricted to `filter`) has not moved for `forMs`, polling every
 * second; gives up after `maxMs`. Returns the time of the last change seen.
 */
export async function waitForQuiet(cluster: Pick<BenchCluster, 'state' | 'tls'>, forMs: number, maxMs: number, filter: (key: string) => boolean = () => true): Promise<number> {
  const deadline = Date.now() + maxMs;
  let last = writeTotal(await scrape(cluster), filter);
  let since = Date.now();
  while (Date.now() < deadline && Date.now() - since < forMs) {
    await new Promise((r) => setTimeout(r, 1000));
    const now = writeTotal(await scrape(cluster), filter);
    if (now !== last) {
      last = now;
      since = Date.now();
    }
  }
  return since;
}

/** Writes that go on whatever the engine does: node heartbeats (Lease renewals, node status). */
export function isBackgroundWrite(key: string): boolean {
  const r = parseKey(key).resource;
  return r === 'leases' || r === 'nodes';
}
