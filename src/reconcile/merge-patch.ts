import { jsonEqual } from './canonical.js';

/**
 * An RFC 7386 JSON merge patch turning `from` into `to`. A merge patch merges nested objects and
 * keeps members it does not mention, so writing a recomputed status as it is would leave stale
 * members behind (an old endpoint list, or a flag.dynamic beside a new flag.static in a runtime
 * snapshot); this patch sets each of them to null. Arrays and scalars are replaced whole.
 * An empty object means there is nothing to write.
 */
export function mergePatch(from: object | undefined, to: object): Record<string, unknown> {
  const before = (from ?? {}) as Record<string, unknown>;
  const after = to as Record<string, unknown>;
  const patch: Record<string, unknown> = {};
  for (const key of Object.keys(before)) {
    if (before[key] !== undefined && after[key] === undefined) patch[key] = null;
  }
  for (const [key, value] of Object.entries(after)) {
    if (value === undefined) continue;
    const old = before[key];
    if (isPlainObject(old) && isPlainObject(value)) {
      const inner = mergePatch(old, value);
      if (Object.keys(inner).length > 0) patch[key] = inner;
    } else if (!jsonEqual(old, value)) {
      patch[key] = value;
    }
  }
  return patch;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Date);
}
