import type { V1Secret } from '@kubernetes/client-node';
import { childMetadata, type SessionMeta } from './labels.js';
import { childNames } from './names.js';

/** Key of the flag in the session's Secret; the Pod's env var or file reads this key. */
export const FLAG_SECRET_KEY = 'flag';

/**
 * The Secret holding the session's flag, dynamic or copied from a static Secret. The value is
 * base64 in `data`, the form the apiserver returns, so desired and observed compare directly.
 */
export function desiredFlagSecret(session: SessionMeta, flagValue: string): V1Secret {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: childMetadata(session, childNames(session.metadata.name).secret),
    type: 'Opaque',
    immutable: false,
    data: { [FLAG_SECRET_KEY]: Buffer.from(flagValue, 'utf8').toString('base64') },
  };
}
