import { describe, it, expect } from 'vitest';
import type { ChallengeSession } from '../../../src/api/session.js';
import { flagForSession } from '../../../src/flags/derive.js';
import { runtimeOf } from '../../../src/reconcile/runtime.js';
import { FlagIndex } from '../../../src/sessions/flag-index.js';
import { memoryCaches } from '../../support/memory.js';
import { NAMESPACE, session, webChallenge } from '../reconcile/fixtures.js';

const KEY = Buffer.alloc(32, 7);

function withUid(s: ChallengeSession, uid: string): ChallengeSession {
  return { ...s, metadata: { ...s.metadata, uid } };
}

describe('FlagIndex', () => {
  const mem = memoryCaches(NAMESPACE);
  mem.challenges.put(webChallenge());
  const chal = webChallenge();
  const runtime = runtimeOf(chal.spec);
  const index = new FlagIndex(mem.caches, KEY);

  it('derives what flagForSession derives, and the same again from its memo', () => {
    const s = withUid(session(), 'uid-1');
    const expected = flagForSession(KEY, s, runtime);
    expect(expected).toMatch(/\S/);
    expect(index.dynamicFlag(s, runtime)).toBe(expected);
    expect(index.dynamicFlag(s, runtime)).toBe(expected);
  });

  it('derives again for another session object and for another flag policy', () => {
    const a = withUid(session(), 'uid-a');
    const b = withUid(session(), 'uid-b');
    expect(index.dynamicFlag(a, runtime)).not.toBe(index.dynamicFlag(b, runtime));
    const dynamic = runtime.flag.dynamic;
    if (!dynamic) throw new Error('the web fixture has a dynamic flag');
    const longer = { ...runtime, flag: { ...runtime.flag, dynamic: { ...dynamic, length: dynamic.length + 4 } } };
    expect(index.dynamicFlag(a, longer)).toBe(flagForSession(KEY, a, longer));
    expect(index.dynamicFlag(a, longer)).not.toBe(index.dynamicFlag(a, runtime));
  });

  it('finds the session a cached flag belongs to', () => {
    const stored = mem.sessions.put(withUid(session({ name: 's-owner-0' }), 'uid-owner')) as unknown as ChallengeSession;
    const flag = flagForSession(KEY, stored, runtime) ?? '';
    expect(index.ownerOf(stored.spec.challenge, flag)?.metadata.name).toBe('s-owner-0');
    expect(index.ownerOf(stored.spec.challenge, `${flag}x`)).toBeUndefined();
  });

  it('has no dynamic flag for a static-flag runtime', () => {
    const s = withUid(session(), 'uid-static');
    const { dynamic: _dynamic, ...flag } = runtime.flag;
    expect(index.dynamicFlag(s, { flag: { ...flag, static: { secretRef: { name: 'f', key: 'flag' } } } })).toBeUndefined();
  });
});
