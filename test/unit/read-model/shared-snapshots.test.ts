import { describe, it, expect } from 'vitest';
import { provisionedFromOf, runtimeOf } from '../../../src/reconcile/runtime.js';
import { SharedSnapshots } from '../../../src/read-model/shared-snapshots.js';
import { memoryCaches } from '../../support/memory.js';
import { NAMESPACE, session, webChallenge, withRawStatus } from '../reconcile/fixtures.js';

const snapshot = (generation: number) => ({ generation, runtime: runtimeOf(webChallenge().spec) });

describe('SharedSnapshots', () => {
  it('gives sessions with equal snapshots one copy, and keeps different ones apart', () => {
    const shared = new SharedSnapshots();
    const a = withRawStatus(session({ name: 's-a-0' }), { phase: 'Running', provisionedFrom: snapshot(3) });
    const b = withRawStatus(session({ name: 's-b-0' }), { phase: 'Running', provisionedFrom: snapshot(3) });
    const c = withRawStatus(session({ name: 's-c-0' }), { phase: 'Running', provisionedFrom: snapshot(4) });
    for (const s of [a, b, c]) shared.share(s);
    const of = (s: typeof a) => (s.status as { provisionedFrom: unknown }).provisionedFrom;
    expect(of(b)).toBe(of(a));
    expect(of(c)).not.toBe(of(a));
    expect(of(c)).toEqual(snapshot(4));
    expect(shared.size).toBe(2);
  });

  it('leaves sessions without a snapshot alone', () => {
    const shared = new SharedSnapshots();
    const s = session({ name: 's-d-0', status: { phase: 'Pending' } });
    shared.share(s);
    shared.share(session({ name: 's-e-0' }));
    expect(s.status).toEqual({ phase: 'Pending' });
    expect(shared.size).toBe(0);
  });

  it('is applied by the session cache, so the parsed snapshot is shared too', () => {
    const mem = memoryCaches(NAMESPACE);
    mem.sessions.put(withRawStatus(session({ name: 's-a-0' }), { phase: 'Running', provisionedFrom: snapshot(3) }));
    mem.sessions.put(withRawStatus(session({ name: 's-b-0' }), { phase: 'Running', provisionedFrom: snapshot(3) }));
    const a = mem.caches.session('s-a-0');
    const b = mem.caches.session('s-b-0');
    if (!a?.ok || !b?.ok) throw new Error('both sessions parse');
    expect(b.value.status).not.toBe(a.value.status);
    const pa = provisionedFromOf(a.value);
    expect(pa?.generation).toBe(3);
    expect(provisionedFromOf(b.value)).toBe(pa);
  });
});
