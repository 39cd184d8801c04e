import { describe, it, expect } from 'vitest';
import { effectiveRuntime, provisionedFromOf, provisionedFromSchema, runtimeOf } from '../../../src/reconcile/runtime.js';
import { pwnChallenge, session, webChallenge, withRawStatus } from './fixtures.js';

describe('runtimeOf', () => {
  it('keeps what a session runs and leaves out the catalogue fields', () => {
    const spec = webChallenge().spec;
    const runtime = runtimeOf(spec);
    expect(Object.keys(runtime).sort()).toEqual(['containers', 'expose', 'flag', 'lifetime', 'network']);
    expect(runtime.containers).toEqual(spec.containers);
    expect(runtime).not.toHaveProperty('title');
    expect(runtime).not.toHaveProperty('points');
  });

  it('is a copy, so later edits of the spec do not reach it', () => {
    const spec = webChallenge().spec;
    const runtime = runtimeOf(spec);
    spec.containers[0]!.image = 'changed/image:2';
    expect(runtime.containers[0]?.image).toBe('challenge-engine/web-notes:1.0');
  });

  it('round-trips through the snapshot schema', () => {
    const snapshot = { generation: 3, runtime: runtimeOf(webChallenge().spec) };
    expect(provisionedFromSchema.parse(JSON.parse(JSON.stringify(snapshot)))).toEqual(snapshot);
  });
});

describe('effectiveRuntime', () => {
  const recorded = { generation: 1, runtime: runtimeOf(pwnChallenge().spec) };
  const current = webChallenge({}, 9);

  it.each([
    ['the snapshot over the current challenge', { provisionedFrom: recorded }, current, recorded],
    ['the snapshot when the challenge is gone', { provisionedFrom: recorded }, undefined, recorded],
    ['the current challenge without a snapshot', {}, current, { generation: 9, runtime: runtimeOf(current.spec) }],
    [
      'the current challenge when the snapshot does not parse',
      { provisionedFrom: { generation: 1, runtime: { containers: 'nope' } } },
      current,
      { generation: 9, runtime: runtimeOf(current.spec) },
    ],
    [
      'the current challenge when the snapshot breaks a cross-field rule',
      { provisionedFrom: { ...recorded, runtime: { ...recorded.runtime, flag: { ...recorded.runtime.flag, containers: ['ghost'] } } } },
      current,
      { generation: 9, runtime: runtimeOf(current.spec) },
    ],
    ['nothing when neither exists', {}, undefined, undefined],
  ])('uses %s', (_what, status, challenge, expected) => {
    expect(effectiveRuntime(withRawStatus(session(), status), challenge)).toEqual(expected);
  });

  it('reads no snapshot from a session without status', () => {
    expect(provisionedFromOf(session())).toBeUndefined();
  });
});
