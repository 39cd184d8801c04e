import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ANNOTATION_CLAIMED_AT, ANNOTATION_CLAIMED_OWNER, ANNOTATION_CLAIMED_TEAM, ANNOTATION_CLAIMED_USER, ANNOTATION_EXPIRES_AT, LABEL_POOL, LABEL_TEAM_HASH, LABEL_USER_HASH } from '../../../src/api/group.js';
import { isUnclaimedPool, sessionPlayer, sessionSchema, type ChallengeSession } from '../../../src/api/session.js';
import type { Challenge } from '../../../src/api/challenge.js';
import { flagForSession } from '../../../src/flags/derive.js';
import { DEFAULT_NETWORK_OPTIONS, desiredSessionPolicy } from '../../../src/reconcile/network-policy.js';
import { claimPatch, desiredPoolInstance, isClaimable, isPoolName, planPool, poolInstanceName, poolPrefix } from '../../../src/reconcile/pool.js';
import { hostIdentity } from '../../../src/reconcile/public-host.js';
import { runtimeOf } from '../../../src/reconcile/runtime.js';
import { effectiveExpiry, extendedExpiry } from '../../../src/reconcile/expiry.js';
import { teamHash, userHash } from '../../../src/reconcile/names.js';
import { NAMESPACE, webChallenge } from './fixtures.js';
import { hasSettled, sessionView } from '../../../src/sessions/views.js';

/** Warm pools, the pure part: instance bodies, claimability, the claim's one write, and pool plans. */

let uid = 0;
function instance(challenge: Challenge, opts: { ready?: boolean; stale?: boolean; claimedBy?: string; deleting?: boolean; created?: string } = {}): ChallengeSession {
  const body = desiredPoolInstance(poolInstanceName(challenge.metadata.name), NAMESPACE, challenge.metadata.name);
  const runtime = runtimeOf(challenge.spec);
  if (opts.stale) runtime.containers[0] = { ...runtime.containers[0]!, image: 'challenge-engine/web-notes:0.9' };
  const ready = opts.ready ?? true;
  const annotations: Record<string, string> = opts.claimedBy ? { [ANNOTATION_CLAIMED_USER]: opts.claimedBy, [ANNOTATION_CLAIMED_OWNER]: 'user', [ANNOTATION_CLAIMED_AT]: '2030-01-01T10:00:00.123Z' } : {};
  return sessionSchema.parse({
    ...body,
    metadata: { ...body.metadata, annotations, uid: `pool-uid-${++uid}`, resourceVersion: String(100 + uid), creationTimestamp: opts.created ?? '2030-01-01T09:00:00Z', ...(opts.deleting ? { deletionTimestamp: '2030-01-01T10:00:00Z' } : {}) },
    status: {
      phase: ready ? 'Running' : 'Provisioning',
      conditions: [{ type: 'Ready', status: ready ? 'True' : 'False', reason: ready ? 'Running' : 'Provisioning', message: '', lastTransitionTime: '2030-01-01T09:00:00Z' }],
      provisionedFrom: { generation: 1, runtime },
    },
  });
}

const pooled = (size: number, overrides: Record<string, unknown> = {}) => webChallenge({ pool: { size }, ...overrides });

describe('pool instances', () => {
  it('are sessions with spec.pool, no player, no expiry and the pool label; names are the challenge prefix and 60 random bits', () => {
    const body = desiredPoolInstance(poolInstanceName('web-notes'), NAMESPACE, 'web-notes');
    const s = sessionSchema.parse(body);
    expect(s.spec).toEqual({ challenge: 'web-notes', pool: true });
    expect(s.metadata.labels?.[LABEL_POOL]).toBe('web-notes');
    expect(s.metadata.labels?.[LABEL_USER_HASH]).toBeUndefined();
    expect(s.metadata.annotations?.[ANNOTATION_EXPIRES_AT]).toBeUndefined();
    expect(isUnclaimedPool(s)).toBe(true);
    expect(sessionPlayer(s)).toBeUndefined();
    expect(s.metadata.name.startsWith(poolPrefix('web-notes'))).toBe(true);
    expect(isPoolName(s.metadata.name)).toBe(true);
    expect(s.metadata.name.length).toBeLessThanOrEqual(52);
    expect(new Set(Array.from({ length: 200 }, () => poolInstanceName('web-notes'))).size).toBe(200);
  });

  it('cannot name a player in the spec, and a spawned session must', () => {
    expect(sessionSchema.safeParse({ ...desiredPoolInstance('p-1', NAMESPACE, 'web-notes'), spec: { challenge: 'web-notes', pool: true, user: 'eve' } }).success).toBe(false);
    expect(sessionSchema.safeParse({ ...desiredPoolInstance('p-1', NAMESPACE, 'web-notes'), spec: { challenge: 'web-notes' } }).success).toBe(false);
  });

  it('keep their flag through the claim, and it differs from any spawned session’s with the same uid', () => {
    const c = pooled(2);
    const s = instance(c);
    const before = flagForSession('k', s, c.spec);
    const claimed = { ...s, metadata: { ...s.metadata, annotations: claimPatch({ user: 'ann', owner: { mode: 'user', user: 'ann' } }, new Date('2030-01-01T10:00:00.5Z'), '2030-01-01T11:00:00Z').metadata.annotations } };
    expect(flagForSession('k', claimed, c.spec)).toBe(before);
    expect(flagForSession('k', { metadata: s.metadata, spec: { challenge: 'web-notes', user: 'pool' } }, c.spec)).not.toBe(before);
  });

  it('have no public host until claimed, and each claim gives new hosts', () => {
    const c = pooled(1);
    const s = instance(c);
    expect(hostIdentity(s)).toBeUndefined();
    const at = (t: string) => ({ ...s, metadata: { ...s.metadata, annotations: { [ANNOTATION_CLAIMED_USER]: 'ann', [ANNOTATION_CLAIMED_AT]: t } } });
    expect(hostIdentity(at('2030-01-01T10:00:00.100Z'))).toBe(`${s.metadata.uid}@2030-01-01T10:00:00.100Z`);
    expect(hostIdentity(at('2030-01-01T10:00:00.100Z'))).not.toBe(hostIdentity(at('2030-01-01T10:00:00.101Z')));
  });

  it('admit no entry-point ingress until claimed', () => {
    const c = pooled(1);
    const net = { ...DEFAULT_NETWORK_OPTIONS, entryPoint: { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'gateway' } } } };
    const s = instance(c);
    expect(desiredSessionPolicy(s, c.spec, net).policy.spec?.ingress).toHaveLength(1);
    const claimed = instance(c, { claimedBy: 'ann' });
    expect(desiredSessionPolicy(claimed, c.spec, net).policy.spec?.ingress).toHaveLength(2);
  });

  it('count their lifetime from the claim, extensions capped from it too', () => {
    const c = pooled(1, { lifetime: { default: '1h', max: '2h', extension: '30m' } });
    const s = instance(c, { claimedBy: 'ann', created: '2030-01-01T00:00:00Z' });
    const claimed = { ...s, metadata: { ...s.metadata, annotations: { ...s.metadata.annotations, [ANNOTATION_EXPIRES_AT]: '2030-01-01T11:00:00Z' } } };
    expect(effectiveExpiry(claimed, c.spec).toISOString()).toBe('2030-01-01T11:00:00.000Z');
    // Max 2h from the claim at 10:00:00.123, although the instance was created at midnight.
    const next = extendedExpiry(claimed, c.spec, new Date('2030-01-01T10:30:00Z'));
    expect(next).toEqual({ at: new Date('2030-01-01T11:30:00Z') });
    const capped = extendedExpiry({ ...claimed, metadata: { ...claimed.metadata, annotations: { ...claimed.metadata.annotations, [ANNOTATION_EXPIRES_AT]: '2030-01-01T11:50:00Z' } } }, c.spec, new Date('2030-01-01T11:00:00Z'));
    expect(capped).toEqual({ at: new Date('2030-01-01T12:00:00.123Z') });
  });
});

describe('claims', () => {
  it('write the player’s labels, the claim and the expiry in one patch', () => {
    const p = claimPatch({ user: 'ann', team: 'red', owner: { mode: 'team', team: 'red' } }, new Date('2030-01-01T10:00:00.042Z'), '2030-01-01T11:00:00Z');
    expect(p).toEqual({
      metadata: {
        labels: { [LABEL_USER_HASH]: userHash('ann'), [LABEL_TEAM_HASH]: teamHash('red') },
        annotations: { [ANNOTATION_CLAIMED_USER]: 'ann', [ANNOTATION_CLAIMED_TEAM]: 'red', [ANNOTATION_CLAIMED_OWNER]: 'team', [ANNOTATION_CLAIMED_AT]: '2030-01-01T10:00:00.042Z', [ANNOTATION_EXPIRES_AT]: '2030-01-01T11:00:00Z' },
      },
    });
  });

  it('make the claimant the player; a claim whose values do not parse makes nobody the player', () => {
    const c = pooled(1);
    const s = instance(c);
    const withClaim = (a: Record<string, string>) => ({ ...s, metadata: { ...s.metadata, annotations: a } });
    expect(sessionPlayer(withClaim({ [ANNOTATION_CLAIMED_USER]: 'ann', [ANNOTATION_CLAIMED_OWNER]: 'user' }))).toEqual({ user: 'ann', owner: { mode: 'user', user: 'ann' } });
    expect(sessionPlayer(withClaim({ [ANNOTATION_CLAIMED_USER]: 'ann', [ANNOTATION_CLAIMED_TEAM]: 'red', [ANNOTATION_CLAIMED_OWNER]: 'team' }))).toEqual({ user: 'ann', team: 'red', owner: { mode: 'team', team: 'red' } });
    expect(sessionPlayer(withClaim({ [ANNOTATION_CLAIMED_USER]: 'ann', [ANNOTATION_CLAIMED_OWNER]: 'team' }))).toBeUndefined();
    expect(sessionPlayer(withClaim({ [ANNOTATION_CLAIMED_USER]: '-bad user', [ANNOTATION_CLAIMED_OWNER]: 'user' }))).toBeUndefined();
    expect(sessionPlayer(withClaim({ [ANNOTATION_CLAIMED_USER]: 'ann', [ANNOTATION_CLAIMED_OWNER]: 'admin' }))).toBeUndefined();
  });

  it('take only unclaimed, current, live instances that are ready', () => {
    const c = pooled(3);
    expect(isClaimable(instance(c), c)).toBe(true);
    expect(isClaimable(instance(c, { ready: false }), c)).toBe(false);
    expect(isClaimable(instance(c, { stale: true }), c)).toBe(false);
    expect(isClaimable(instance(c, { claimedBy: 'ann' }), c)).toBe(false);
    expect(isClaimable(instance(c, { deleting: true }), c)).toBe(false);
    // Catalogue and pool-size edits leave the instances current.
    expect(isClaimable(instance(c), pooled(9, { title: 'Renamed', points: 5 }))).toBe(true);
  });
});

describe('planPool', () => {
  it('creates the shortfall, at most a batch at a time, counting creates the cache does not show yet', () => {
    const c = pooled(25);
    const have = [instance(c), instance(c, { ready: false })];
    expect(planPool(c, have, 10)).toEqual({ create: 10, remove: [] });
    expect(planPool(c, have, 50)).toEqual({ create: 23, remove: [] });
    expect(planPool(c, have, 50, 20)).toEqual({ create: 3, remove: [] });
  });

  it('replaces stale instances and trims a surplus, not-ready and newest first', () => {
    const c = pooled(2);
    const stale = instance(c, { stale: true });
    const oldReady = instance(c, { created: '2030-01-01T08:00:00Z' });
    const newReady = instance(c, { created: '2030-01-01T09:30:00Z' });
    const starting = instance(c, { ready: false });
    const plan = planPool(c, [stale, oldReady, newReady, starting], 10);
    expect(plan.create).toBe(0);
    expect(plan.remove.map((s) => s.metadata.name)).toEqual([stale.metadata.name, starting.metadata.name]);
    expect(planPool(pooled(1), [oldReady, newReady], 10).remove).toEqual([newReady]);
  });

  it('empties the pool of a disabled or deleted Challenge', () => {
    const c = pooled(2);
    const have = [instance(c), instance(c)];
    const names = (p: { remove: ChallengeSession[] }) => p.remove.map((s) => s.metadata.name).sort();
    const all = have.map((s) => s.metadata.name).sort();
    expect(planPool(pooled(2, { enabled: false }), have, 10).create).toBe(0);
    expect(names(planPool(pooled(2, { enabled: false }), have, 10))).toEqual(all);
    expect(planPool(undefined, have, 10).create).toBe(0);
    expect(names(planPool(undefined, have, 10))).toEqual(all);
  });

  it('converges: applying plans reaches exactly the size with only current instances, and never deletes to re-create', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 30 }), fc.array(fc.record({ ready: fc.boolean(), stale: fc.boolean() }), { maxLength: 40 }), fc.integer({ min: 1, max: 12 }), (size, specs, batch) => {
        const c = pooled(size);
        let pool = specs.map((s) => instance(c, s));
        for (let round = 0; round < 40; round++) {
          const plan = planPool(c, pool, batch);
          // A pass that creates must not also delete current ready instances.
          if (plan.create > 0) expect(plan.remove.filter((r) => isClaimable(r, c))).toEqual([]);
          const gone = new Set(plan.remove.map((r) => r.metadata.name));
          pool = [...pool.filter((s) => !gone.has(s.metadata.name)), ...Array.from({ length: plan.create }, () => instance(c, { ready: false }))];
          expect(plan.create).toBeLessThanOrEqual(batch);
          if (plan.create === 0 && plan.remove.length === 0) break;
        }
        expect(pool).toHaveLength(size);
        expect(pool.every((s) => isClaimable({ ...s, status: { ...s.status, phase: 'Running', conditions: [{ type: 'Ready', status: 'True', reason: 'Running', message: '', lastTransitionTime: '2030-01-01T09:00:00Z' }] } }, c))).toBe(true);
      }),
      // Each case parses up to a few hundred sessions through the schema: fewer cases, more time on a busy machine.
      { numRuns: 60 },
    );
  }, 30_000);
});

describe('the view of a claimed instance', () => {
  it('is starting until the status reflects the claim, then Running with its endpoints', () => {
    const c = pooled(1);
    const s = instance(c, { claimedBy: 'ann' });
    const endpoints = [{ name: 'http', protocol: 'http' as const, host: 'h', port: 8080, url: 'http://h:8080' }];
    const claimedAt = s.metadata.annotations?.[ANNOTATION_CLAIMED_AT];
    const waiting = sessionView({ ...s, status: { ...s.status, endpoints } }, c, new Date('2030-01-01T10:00:01Z'));
    expect(waiting).toMatchObject({ phase: 'Provisioning', ready: false, reason: 'Claimed', endpoints: [], user: 'ann', createdAt: claimedAt });
    expect(hasSettled(waiting)).toBe(false);
    const published = sessionView({ ...s, status: { ...s.status, endpoints, claimedAt } }, c, new Date('2030-01-01T10:00:01Z'));
    expect(published).toMatchObject({ phase: 'Running', ready: true, endpoints, user: 'ann' });
  });
});
