import { describe, it, expect } from 'vitest';
import { createRecorder } from '../../../src/kube/recorder.js';
import type { InvolvedObject } from '../../../src/kube/writes.js';
import { silentLog } from '../../support/memory.js';

const SESSION: InvolvedObject = { apiVersion: 'ctf.challenge-engine.io/v1alpha1', kind: 'ChallengeSession', name: 's-a-0', namespace: 'ctf' };

/** A writer whose Event writes stay open until released, one by one. */
function slowWriter(fail: (reason: string) => boolean = () => false) {
  const open: { reason: string; done: () => void }[] = [];
  const written: string[] = [];
  let maxOpen = 0;
  return {
    written,
    open,
    maxOpen: () => maxOpen,
    event: (_o: InvolvedObject, _t: string, reason: string) =>
      new Promise<void>((resolve, reject) => {
        open.push({ reason, done: () => (fail(reason) ? reject(new Error('refused')) : (written.push(reason), resolve())) });
        maxOpen = Math.max(maxOpen, open.length);
      }),
  };
}

const settle = () => new Promise((r) => setTimeout(r, 0));

async function releaseAll(w: ReturnType<typeof slowWriter>): Promise<void> {
  await settle();
  while (w.open.length > 0) {
    w.open.shift()?.done();
    await settle();
  }
}

describe('the Event recorder', () => {
  it('keeps at most inFlight writes open and writes every Event, in order', async () => {
    const w = slowWriter();
    const rec = createRecorder(w, silentLog, { inFlight: 2 });
    for (let i = 0; i < 7; i++) rec.normal(SESSION, `R${i}`, 'm');
    await settle();
    expect(w.open.length).toBe(2);
    await releaseAll(w);
    expect(w.written).toEqual(['R0', 'R1', 'R2', 'R3', 'R4', 'R5', 'R6']);
    expect(w.maxOpen()).toBe(2);
  });

  it('drops and reports Events beyond maxQueued waiting ones', async () => {
    const w = slowWriter();
    const dropped: string[] = [];
    const rec = createRecorder(w, silentLog, { inFlight: 1, maxQueued: 2, onDropped: (r) => dropped.push(r) });
    for (let i = 0; i < 5; i++) rec.warning(SESSION, `R${i}`, 'm');
    await releaseAll(w);
    expect(w.written).toEqual(['R0', 'R1', 'R2']);
    expect(dropped).toEqual(['R3', 'R4']);
  });

  it('goes on after a write fails, and never throws to the caller', async () => {
    const w = slowWriter((r) => r === 'R1');
    const rec = createRecorder(w, silentLog, { inFlight: 1 });
    expect(() => {
      for (let i = 0; i < 3; i++) rec.normal(SESSION, `R${i}`, 'm');
    }).not.toThrow();
    await releaseAll(w);
    expect(w.written).toEqual(['R0', 'R2']);
  });
});
