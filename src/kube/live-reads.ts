import { GROUP, LABEL_CHALLENGE, LABEL_TEAM_HASH, LABEL_USER_HASH, SESSION_PLURAL, VERSION } from '../api/group.js';
import { sessionSchema, type ChallengeSession, type Owner } from '../api/session.js';
import { teamHash, userHash } from '../reconcile/names.js';
import type { Kube } from './client.js';
import { ignoreNotFound } from './errors.js';
import { getJson } from './raw.js';

/**
 * The few reads the player domain makes past its cache, each for a reason the cache cannot
 * serve: a guarded write needs the current resourceVersion, spawn arbitration needs the sessions
 * exactly as of its create, a static flag lives in a Secret the engine does not cache.
 */
export interface LiveReads {
  session(name: string): Promise<ChallengeSession | undefined>;
  /**
   * The sessions (of one challenge, or of all when undefined) that carry the owner's hash label,
   * exactly as of `resourceVersion` (that parse). For a user that includes team-owned sessions
   * they started: the caller compares owners.
   */
  sessionsAt(owner: Owner, challenge: string | undefined, resourceVersion: string): Promise<ChallengeSession[]>;
  /** A key of a Secret in the sessions namespace, as UTF-8; undefined when either is missing. */
  secretValue(name: string, key: string): Promise<string | undefined>;
  /** Resolves when the apiserver answers. */
  ping(): Promise<void>;
}

export function liveReads(kube: Kube, namespace: string): LiveReads {
  return {
    async session(name) {
      const raw: unknown = await ignoreNotFound(kube.custom.getNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: SESSION_PLURAL, name }));
      return raw === undefined ? undefined : sessionSchema.parse(raw);
    },
    async sessionsAt(owner, challenge, resourceVersion) {
      const byOwner = owner.mode === 'team' ? `${LABEL_TEAM_HASH}=${teamHash(owner.team)}` : `${LABEL_USER_HASH}=${userHash(owner.user)}`;
      const selector = challenge === undefined ? byOwner : `${byOwner},${LABEL_CHALLENGE}=${challenge}`;
      const query = new URLSearchParams({ labelSelector: selector, resourceVersion, resourceVersionMatch: 'Exact' });
      const list = await getJson<{ items?: unknown[] }>(kube.kc, `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${SESSION_PLURAL}?${query.toString()}`, 10_000);
      const out: ChallengeSession[] = [];
      for (const item of list.items ?? []) {
        const p = sessionSchema.safeParse(item);
        if (p.success) out.push(p.data);
      }
      return out;
    },
    async secretValue(name, key) {
      const b64 = (await ignoreNotFound(kube.core.readNamespacedSecret({ name, namespace })))?.data?.[key];
      return b64 === undefined ? undefined : Buffer.from(b64, 'base64').toString('utf8');
    },
    async ping() {
      await getJson(kube.kc, '/version', 2000);
    },
  };
}
