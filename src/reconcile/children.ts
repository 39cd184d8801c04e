import { createHash } from 'node:crypto';
import type { V1ObjectMeta } from '@kubernetes/client-node';
import { ANNOTATION_SPEC_HASH } from '../api/group.js';
import { canonicalJson } from './canonical.js';

/*
 * ANNOTATION_SPEC_HASH holds the hash of the desired state a child was last written from. The
 * apiserver fills in defaults, so comparing a desired object with the stored one field by field
 * reports differences that are not there; comparing this annotation with the hash of the new
 * desired object does not.
 */
export { ANNOTATION_SPEC_HASH };

interface WithMetadata {
  metadata?: V1ObjectMeta;
}

/** First 16 hex characters of the SHA-256 of the object's canonical JSON, without its own hash annotation. */
export function specHash<T extends WithMetadata>(obj: T): string {
  return createHash('sha256').update(canonicalJson(withoutHash(obj))).digest('hex').slice(0, 16);
}

/** A copy of `obj` carrying its spec hash; applying it twice gives the same object. */
export function withSpecHash<T extends WithMetadata>(obj: T): T {
  const hash = specHash(obj);
  return { ...obj, metadata: { ...obj.metadata, annotations: { ...obj.metadata?.annotations, [ANNOTATION_SPEC_HASH]: hash } } };
}

/** True when `observed` was written from a desired object equal to `desired` (hashed or not). */
export function specHashMatches<T extends WithMetadata>(observed: WithMetadata | undefined, desired: T): boolean {
  const stored = observed?.metadata?.annotations?.[ANNOTATION_SPEC_HASH];
  return stored !== undefined && stored === specHash(desired);
}

function withoutHash(obj: WithMetadata): WithMetadata {
  const annotations = obj.metadata?.annotations;
  if (!annotations || !(ANNOTATION_SPEC_HASH in annotations)) return obj;
  const { [ANNOTATION_SPEC_HASH]: _hash, ...rest } = annotations;
  // An emptied map must hash like an absent one, or hashing a hashed object would change the hash.
  return { ...obj, metadata: { ...obj.metadata, annotations: Object.keys(rest).length > 0 ? rest : undefined } };
}
