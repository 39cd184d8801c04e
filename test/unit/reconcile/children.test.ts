import { describe, it, expect } from 'vitest';
import type { V1Secret } from '@kubernetes/client-node';
import { canonicalJson, jsonEqual } from '../../../src/reconcile/canonical.js';
import { ANNOTATION_SPEC_HASH, specHash, specHashMatches, withSpecHash } from '../../../src/reconcile/children.js';
import { mergePatch } from '../../../src/reconcile/merge-patch.js';

describe('canonicalJson', () => {
  it('sorts keys at every depth and drops undefined members', () => {
    expect(canonicalJson({ b: 1, a: { d: [{ z: 1, y: undefined, x: 2 }], c: undefined } })).toBe('{"a":{"d":[{"x":2,"z":1}]},"b":1}');
  });

  it('keeps array order', () => {
    expect(jsonEqual([1, 2], [2, 1])).toBe(false);
  });
});

describe('specHash', () => {
  const secret: V1Secret = { apiVersion: 'v1', kind: 'Secret', metadata: { name: 's', labels: { a: '1', b: '2' } }, data: { flag: 'eA==' } };

  it('is 16 hex characters and ignores key order', () => {
    const reordered = { data: { flag: 'eA==' }, metadata: { labels: { b: '2', a: '1' }, name: 's' }, kind: 'Secret', apiVersion: 'v1' };
    expect(specHash(secret)).toMatch(/^[0-9a-f]{16}$/);
    expect(specHash(reordered)).toBe(specHash(secret));
  });

  it('changes when the content changes', () => {
    expect(specHash({ ...secret, data: { flag: 'eQ==' } })).not.toBe(specHash(secret));
  });

  it('is stable under re-hashing and does not mutate its input', () => {
    const once = withSpecHash(secret);
    expect(once.metadata?.annotations?.[ANNOTATION_SPEC_HASH]).toBe(specHash(secret));
    expect(withSpecHash(once)).toEqual(once);
    expect(secret.metadata).not.toHaveProperty('annotations');
  });

  it('keeps other annotations', () => {
    const hashed = withSpecHash({ metadata: { name: 'p', annotations: { keep: 'me' } } });
    expect(hashed.metadata?.annotations).toMatchObject({ keep: 'me' });
    expect(withSpecHash(hashed)).toEqual(hashed);
  });

  it('matches an observed object written from the same desired object only', () => {
    const hashed = withSpecHash(secret);
    const observed: V1Secret = { ...hashed, metadata: { ...hashed.metadata, resourceVersion: '42' } };
    expect(specHashMatches(observed, secret)).toBe(true);
    expect(specHashMatches(observed, { ...secret, data: { flag: 'eQ==' } })).toBe(false);
    expect(specHashMatches(undefined, secret)).toBe(false);
    expect(specHashMatches({ metadata: {} }, secret)).toBe(false);
  });
});

describe('mergePatch', () => {
  it.each([
    ['equal objects', { a: 1, b: [1, 2] }, { b: [1, 2], a: 1 }, {}],
    ['a changed scalar', { a: 1 }, { a: 2 }, { a: 2 }],
    ['a removed member', { a: 1, b: 2 }, { a: 1 }, { b: null }],
    ['a member set to undefined', { a: 1, b: 2 }, { a: 1, b: undefined }, { b: null }],
    ['an added member', {}, { a: { b: 1 } }, { a: { b: 1 } }],
    ['arrays replaced whole', { a: [1, 2, 3] }, { a: [1, 2] }, { a: [1, 2] }],
    [
      'nested removal inside a snapshot',
      { provisionedFrom: { generation: 1, runtime: { flag: { dynamic: { length: 8 }, delivery: 'env' } } } },
      { provisionedFrom: { generation: 2, runtime: { flag: { static: { name: 's' }, delivery: 'env' } } } },
      { provisionedFrom: { generation: 2, runtime: { flag: { dynamic: null, static: { name: 's' } } } } },
    ],
    ['from undefined', undefined, { a: 1 }, { a: 1 }],
  ])('%s', (_what, from, to, expected) => {
    expect(mergePatch(from, to)).toEqual(expected);
  });
});
