import { hrtime } from 'node:process';
import type * as Crypto from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';
import { deriveFlag, verifyFlag } from '../../src/flags/derive.js';
import { prng } from './helpers.js';

/**
 * verifyFlag must take the same time wherever a guess differs from the flag and whatever its
 * length: it hashes both sides and compares the digests in constant time. Checked two ways: by
 * instrumenting node:crypto (what it computes) and by timing it against a comparator that does
 * short-circuit (that the measurement would notice if it did).
 */

const calls = vi.hoisted(() => ({ recording: false, hashes: [] as { algorithm: string; input: string[] }[], equal: [] as [number, number][] }));

vi.mock('node:crypto', async (importOriginal) => {
  const real = await importOriginal<typeof Crypto>();
  return {
    ...real,
    createHash: (algorithm: string, options?: Crypto.HashOptions) => {
      const hash = real.createHash(algorithm, options);
      if (!calls.recording) return hash;
      const record = { algorithm, input: [] as string[] };
      calls.hashes.push(record);
      const update = hash.update.bind(hash);
      const recordingUpdate = (data: string | Buffer, encoding?: Crypto.Encoding): Crypto.Hash => {
        record.input.push(typeof data === 'string' ? data : data.toString('latin1'));
        return typeof data === 'string' && encoding ? update(data, encoding) : update(data);
      };
      hash.update = recordingUpdate;
      return hash;
    },
    timingSafeEqual: (a: NodeJS.ArrayBufferView, b: NodeJS.ArrayBufferView) => {
      if (calls.recording) calls.equal.push([a.byteLength, b.byteLength]);
      return real.timingSafeEqual(a, b);
    },
  };
});

const FLAG = deriveFlag('timing-test-key-0123456789', { challenge: 'web-notes', sessionUid: '6f1c1d2e-0000-4000-8000-000000000001', user: 'alice' }, { format: 'CTF{%s}', length: 32 });

/** The expected flag with one character changed at `index`. */
function differAt(flag: string, index: number): string {
  const c = flag[index] === 'x' ? 'y' : 'x';
  return flag.slice(0, index) + c + flag.slice(index + 1);
}

/** A comparator that short-circuits on length and on the first differing character. */
function naiveEqual(expected: string, submitted: string): boolean {
  if (expected.length !== submitted.length) return false;
  for (let i = 0; i < expected.length; i++) if (expected.charCodeAt(i) !== submitted.charCodeAt(i)) return false;
  return true;
}

/**
 * Median time of `batch` calls per input. Every round measures all inputs in a fresh random
 * order, so drift in machine load and garbage collection hit them alike; the first rounds warm
 * the JIT up and are discarded.
 */
function medians(compare: (expected: string, submitted: string) => boolean, expected: string, inputs: Record<string, string>, rounds = 201, batch = 300): Record<string, number> {
  const samples: Record<string, number[]> = Object.fromEntries(Object.keys(inputs).map((k) => [k, []]));
  const random = prng(rounds * batch);
  let sink = 0;
  const entries = Object.entries(inputs);
  for (let r = -20; r < rounds; r++) {
    const order = [...entries].sort(() => random() - 0.5);
    for (const [name, input] of order) {
      const t0 = hrtime.bigint();
      for (let i = 0; i < batch; i++) if (compare(expected, input)) sink++;
      if (r >= 0) samples[name]?.push(Number(hrtime.bigint() - t0));
    }
  }
  expect(sink).toBeGreaterThanOrEqual(0);
  return Object.fromEntries(
    Object.entries(samples).map(([k, v]) => {
      const sorted = [...v].sort((a, b) => a - b);
      return [k, sorted[Math.floor(sorted.length / 2)] ?? 0];
    }),
  );
}

describe('verifyFlag', () => {
  it('hashes the whole of both sides with SHA-256 and compares 32-byte digests, whatever the lengths', () => {
    calls.recording = true;
    for (const submitted of ['', 'x', differAt(FLAG, 0), differAt(FLAG, FLAG.length - 1), FLAG, `${FLAG}${'y'.repeat(219)}`, 'ü\u0000\u202e'.repeat(100), 'z'.repeat(10_000)]) {
      calls.hashes.length = 0;
      calls.equal.length = 0;
      const result = verifyFlag(FLAG, submitted);
      expect(result).toBe(submitted === FLAG);
      expect(calls.hashes.map((h) => h.algorithm)).toEqual(['sha256', 'sha256']);
      expect(calls.hashes.map((h) => h.input.join(''))).toEqual([FLAG, submitted]);
      expect(calls.equal).toEqual([[32, 32]]);
    }
    calls.recording = false;
  });

  it('takes the same time whether a guess differs at the first or the last character, or in length', () => {
    const inputs = {
      first: differAt(FLAG, 0),
      last: differAt(FLAG, FLAG.length - 1),
      equal: FLAG,
      short: 'x',
      longer: `${FLAG}xyz`,
    };
    const t = medians(verifyFlag, FLAG, inputs);
    const ratio = (a: number, b: number) => a / b;
    // Generous bounds: the comparison is constant time by construction; this guards against a
    // regression to an early exit, which moves these ratios far further (see the control below).
    expect(ratio(t.first ?? 0, t.last ?? 1), JSON.stringify(t)).toBeGreaterThan(0.8);
    expect(ratio(t.first ?? 0, t.last ?? 1), JSON.stringify(t)).toBeLessThan(1.25);
    expect(ratio(t.equal ?? 0, t.last ?? 1), JSON.stringify(t)).toBeGreaterThan(0.8);
    expect(ratio(t.equal ?? 0, t.last ?? 1), JSON.stringify(t)).toBeLessThan(1.25);
    expect(ratio(t.short ?? 0, t.last ?? 1), JSON.stringify(t)).toBeGreaterThan(0.6);
    expect(ratio(t.longer ?? 0, t.last ?? 1), JSON.stringify(t)).toBeLessThan(1.6);
    console.log(`[reliability] verifyFlag medians per 300 calls (ns): ${JSON.stringify(t)}; first/last ${(ratio(t.first ?? 0, t.last ?? 1)).toFixed(3)}, short/last ${(ratio(t.short ?? 0, t.last ?? 1)).toFixed(3)}`);
  });

  it('would notice a comparator that short-circuits (control for the measurement)', () => {
    const long = `CTF{${'a'.repeat(240)}}`;
    const t = medians(naiveEqual, long, { first: differAt(long, 0), last: differAt(long, long.length - 1), short: 'x' }, 101, 1_000);
    expect((t.first ?? 0) / (t.last ?? 1), JSON.stringify(t)).toBeLessThan(0.5);
    expect((t.short ?? 0) / (t.last ?? 1), JSON.stringify(t)).toBeLessThan(0.5);
  });
});
