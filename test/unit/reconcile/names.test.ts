import { createHash } from 'node:crypto';
import { describe, it, expect } from 'vitest';
import { LABEL_CHALLENGE, LABEL_MANAGED_BY, LABEL_SESSION, LABEL_TEAM_HASH, LABEL_USER_HASH, MANAGED_BY, API_VERSION, SESSION_KIND } from '../../../src/api/group.js';
import { childNames, exposedPortName, teamHash, userHash } from '../../../src/reconcile/names.js';
import { childMetadata, ownerReference, sessionLabels, sessionSelector } from '../../../src/reconcile/labels.js';
import { desiredFlagSecret } from '../../../src/reconcile/secret.js';
import { NAMESPACE, SESSION_UID, session } from './fixtures.js';

describe('childNames', () => {
  it('names every child after the session and the secret with a suffix', () => {
    expect(childNames('web-notes-alice')).toEqual({ pod: 'web-notes-alice', service: 'web-notes-alice', networkPolicy: 'web-notes-alice', secret: 'web-notes-alice-flag' });
  });

  it('keeps the longest session name within a DNS label', () => {
    const longest = `a${'b'.repeat(51)}`;
    const n = childNames(longest);
    expect(Math.max(...[n.pod, n.service, n.networkPolicy, n.secret].map((x) => x.length))).toBeLessThanOrEqual(63);
  });
});

describe('userHash', () => {
  it.each(['alice@example.org', 'bob', 'x:y+z'])('%s is the first 16 hex of its SHA-256', (user) => {
    expect(userHash(user)).toBe(createHash('sha256').update(user).digest('hex').slice(0, 16));
    expect(userHash(user)).toMatch(/^[0-9a-f]{16}$/);
  });

  it('differs between users', () => {
    expect(userHash('alice')).not.toBe(userHash('alice2'));
  });
});

describe('exposedPortName', () => {
  it.each([
    [{ name: 'web', port: 8080, protocol: 'http' as const }, 'web'],
    [{ port: 8080, protocol: 'http' as const }, 'http-8080'],
    [{ port: 1337, protocol: 'tcp' as const }, 'tcp-1337'],
  ])('%j -> %s', (expose, expected) => {
    expect(exposedPortName(expose)).toBe(expected);
  });
});

describe('labels and owner', () => {
  const s = session();

  it('labels children with session, challenge, user hash and manager', () => {
    expect(sessionLabels(s)).toEqual({
      [LABEL_SESSION]: 'web-notes-alice',
      [LABEL_CHALLENGE]: 'web-notes',
      [LABEL_USER_HASH]: userHash('alice@example.org'),
      [LABEL_MANAGED_BY]: MANAGED_BY,
    });
    expect(Object.values(sessionLabels(s)).join()).not.toContain('@');
  });

  it('adds the team hash to a team-owned session only, never to a user-owned one whose player has a team', () => {
    const team = session({ user: 'alice@example.org', team: 'Red-Team:1', owner: 'team' });
    expect(sessionLabels(team)).toEqual({ ...sessionLabels(s), [LABEL_TEAM_HASH]: teamHash('Red-Team:1') });
    expect(teamHash('Red-Team:1')).toMatch(/^[0-9a-f]{16}$/);
    expect(sessionLabels(session({ team: 'red', owner: 'user' }))).toEqual(sessionLabels(s));
    expect(sessionLabels(session({ team: 'red' }))).toEqual(sessionLabels(s));
  });

  it('selects by the session label alone', () => {
    expect(sessionSelector(s)).toEqual({ [LABEL_SESSION]: 'web-notes-alice' });
  });

  it('makes the session the controller owner', () => {
    expect(ownerReference(s)).toEqual({ apiVersion: API_VERSION, kind: SESSION_KIND, name: 'web-notes-alice', uid: SESSION_UID, controller: true, blockOwnerDeletion: true });
  });

  it('puts children in the session namespace', () => {
    expect(childMetadata(s, 'x')).toMatchObject({ name: 'x', namespace: NAMESPACE, ownerReferences: [{ uid: SESSION_UID }] });
  });
});

describe('desiredFlagSecret', () => {
  it('holds the flag base64-encoded under "flag" in an Opaque Secret', () => {
    const secret = desiredFlagSecret(session(), 'CTF{abc}');
    expect(secret).toMatchObject({ apiVersion: 'v1', kind: 'Secret', type: 'Opaque', immutable: false, metadata: { name: 'web-notes-alice-flag', namespace: NAMESPACE } });
    expect(secret.data).toEqual({ flag: Buffer.from('CTF{abc}').toString('base64') });
    expect(secret.stringData).toBeUndefined();
    expect(secret.metadata?.ownerReferences?.[0]?.controller).toBe(true);
  });
});
