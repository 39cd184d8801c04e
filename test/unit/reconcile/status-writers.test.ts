import { describe, it, expect } from 'vitest';
import { STATUS_WRITERS, sessionStatusSchema } from '../../../src/api/session.js';
import { statusPatch } from '../../../src/reconcile/status.js';

describe('status ownership', () => {
  it('gives every status member exactly one writer', () => {
    const all = [...STATUS_WRITERS.controller, ...STATUS_WRITERS.api, ...STATUS_WRITERS.webhooks];
    expect(new Set(all).size).toBe(all.length);
    expect([...all].sort()).toEqual(Object.keys(sessionStatusSchema.shape).sort());
  });

  it("keeps the API's members out of the controller's patches, whatever the two statuses hold", () => {
    expect(statusPatch({ phase: 'Running', solved: true, solvedAt: '2030-01-01T10:00:00Z' }, { phase: 'Running' })).toBeUndefined();
    expect(statusPatch({ phase: 'Running' }, { phase: 'Running', solved: false })).toBeUndefined();
    expect(statusPatch({ phase: 'Running', solved: true }, { phase: 'Failed' })).toEqual({ phase: 'Failed' });
    expect(statusPatch({ phase: 'Running', solvedBy: { user: 'a' }, solveReportedAt: '2030-01-01T10:00:00Z' }, { phase: 'Running' })).toBeUndefined();
  });
});
