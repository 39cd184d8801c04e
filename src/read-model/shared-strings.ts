import { LABEL_CHALLENGE, LABEL_MANAGED_BY, LABEL_POOL } from '../api/group.js';

/**
 * One copy of the strings that cached objects repeat: every object arrives from JSON with its own
 * copy of its apiVersion, kind and namespace, its challenge's name, its phase and its condition
 * texts, so at 10,000 sessions the same few dozen strings were held tens of thousands of times.
 * Callers pass only low-cardinality values (never names, uids or timestamps). The pool is
 * bounded: when it is full it starts again empty, so values that turn out not to repeat cannot
 * grow it, and what is already cached keeps the copies it was given.
 */
export class StringPool {
  private readonly pool = new Map<string, string>();

  constructor(
    private readonly maxEntries = 2048,
    private readonly maxLength = 256,
  ) {}

  share<T extends string | undefined>(value: T): T {
    if (value === undefined || value.length > this.maxLength) return value;
    const kept = this.pool.get(value);
    if (kept !== undefined) return kept as T;
    if (this.pool.size >= this.maxEntries) this.pool.clear();
    this.pool.set(value, value);
    return value;
  }

  /** Strings held (for tests). */
  get size(): number {
    return this.pool.size;
  }
}

/** The pool the caches share. */
export const sharedStrings = new StringPool();

type Loose = Record<string, unknown>;
const isObject = (v: unknown): v is Loose => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Shares `obj[key]` in place when it is a string. */
function shareKey(pool: StringPool, obj: Loose, key: string): void {
  const v = obj[key];
  if (typeof v === 'string') obj[key] = pool.share(v);
}

/** Shares the values of `keys` in every member of an array of objects (conditions, endpoints). */
function shareEach(pool: StringPool, list: unknown, keys: readonly string[]): void {
  if (!Array.isArray(list)) return;
  for (const item of list) if (isObject(item)) for (const k of keys) shareKey(pool, item, k);
}

const CONDITION_KEYS = ['type', 'status', 'reason', 'message'] as const;

/** Session labels whose values repeat across sessions (not the per-owner hashes or names). */
const REPEATED_LABELS = [LABEL_CHALLENGE, LABEL_MANAGED_BY, LABEL_POOL];

/**
 * Shares, in place, what a cached ChallengeSession repeats from its siblings: apiVersion, kind,
 * namespace, the values of the labels that name a challenge or a manager, the spec's challenge
 * and owner mode, the phase, the condition texts and the endpoints' port names and protocols.
 */
export function shareSessionStrings(session: object, pool: StringPool = sharedStrings, repeatedLabels: readonly string[] = REPEATED_LABELS): void {
  const s = session as Loose;
  shareKey(pool, s, 'apiVersion');
  shareKey(pool, s, 'kind');
  if (isObject(s.metadata)) {
    shareKey(pool, s.metadata, 'namespace');
    const labels = s.metadata.labels;
    if (isObject(labels)) for (const l of repeatedLabels) shareKey(pool, labels, l);
  }
  if (isObject(s.spec)) {
    shareKey(pool, s.spec, 'challenge');
    shareKey(pool, s.spec, 'owner');
  }
  if (isObject(s.status)) {
    shareKey(pool, s.status, 'phase');
    shareKey(pool, s.status, 'message');
    shareEach(pool, s.status.conditions, CONDITION_KEYS);
    shareEach(pool, s.status.endpoints, ['name', 'protocol']);
  }
}
