import { describe, it, expect } from 'vitest';
import type { z } from 'zod';
import {
  challengeSchema,
  challengeSpecSchema,
  sessionSchema,
  formatDuration,
  isCidr,
  parseDuration,
  CHALLENGE_KIND,
} from '../../src/api/index.js';
import { invalidObjects, immutableSessionUpdate, loadSamples, validChallenge, validSession } from '../support/invalid-objects.js';

/** ['spec', 'containers', 0, 'name'] -> "spec.containers[0].name", the apiserver's notation. */
function formatPath(path: readonly PropertyKey[]): string {
  return path.map((key, i) => (typeof key === 'number' ? `[${key}]` : `${i === 0 ? '' : '.'}${String(key)}`)).join('');
}

/** The field itself or anything below it, but not a sibling that merely shares a prefix. */
function isWithin(path: string, field: string): boolean {
  return path === field || path.startsWith(`${field}.`) || path.startsWith(`${field}[`);
}

function schemaFor(kind: string) {
  return kind === CHALLENGE_KIND ? challengeSchema : sessionSchema;
}

function issuesOf(result: z.ZodSafeParseResult<unknown>) {
  return (result.error?.issues ?? []).map((issue) => ({ path: formatPath(issue.path), message: issue.message }));
}

describe('sample challenges', () => {
  const samples = loadSamples();

  it('includes the web, pwn, two-tier and static-flag examples', () => {
    expect(samples.map((s) => s.file)).toEqual(
      expect.arrayContaining(['challenges/web-notes.yaml', 'challenges/pwn-echo.yaml', 'challenges/sql-two-tier.yaml', 'challenges/static-flag-example.yaml']),
    );
  });

  it.each(samples.map((s) => [s.file, s.object] as const))('%s is a valid Challenge without a namespace', (_file, object) => {
    const result = challengeSchema.safeParse(object);
    expect(issuesOf(result)).toEqual([]);
    expect(result.data?.metadata.namespace).toBeUndefined();
  });

  it('have distinct names', () => {
    const names = samples.map((s) => challengeSchema.parse(s.object).metadata.name);
    expect(new Set(names).size).toBe(names.length);
  });
});

describe('invalid objects', () => {
  it('start from valid base objects', () => {
    expect(issuesOf(challengeSchema.safeParse(validChallenge()))).toEqual([]);
    expect(issuesOf(sessionSchema.safeParse(validSession()))).toEqual([]);
    expect(issuesOf(sessionSchema.safeParse(immutableSessionUpdate.after))).toEqual([]);
  });

  it('are at least 20 distinct cases covering both kinds', () => {
    expect(invalidObjects.length).toBeGreaterThanOrEqual(20);
    expect(new Set(invalidObjects.map((c) => c.name)).size).toBe(invalidObjects.length);
    expect(new Set(invalidObjects.map((c) => JSON.stringify(c.object))).size).toBe(invalidObjects.length);
    expect(new Set(invalidObjects.map((c) => c.kind))).toEqual(new Set(['Challenge', 'ChallengeSession']));
  });

  it.each(invalidObjects.map((c) => [c.name, c] as const))('rejects %s', (_name, c) => {
    const issues = issuesOf(schemaFor(c.kind).safeParse(c.object));
    const relevant = issues.filter((issue) => isWithin(issue.path, c.field));
    expect(relevant, `issues: ${JSON.stringify(issues)}`).not.toEqual([]);
    for (const issue of relevant) expect(issue.message).toMatch(/\w{3,}.*\w{3,}/);
  });
});

describe('defaults', () => {
  const minimal = {
    title: 'T',
    category: 'misc',
    points: 10,
    containers: [{ name: 'app', image: 'app:1', ports: [{ containerPort: 80 }], env: [{ name: 'A' }], readinessProbe: { httpGet: { port: 80 } } }],
    expose: [{ port: 80, protocol: 'http' }],
    flag: { dynamic: {} },
  };

  it('fills every optional field that has a default', () => {
    const spec = challengeSpecSchema.parse(minimal);
    expect(spec).toMatchObject({
      description: '',
      tags: [],
      enabled: true,
      lifetime: { default: '1h', max: '3h', extension: '30m' },
      maxSessionsPerUser: 1,
      network: { egress: [] },
      flag: { dynamic: { format: 'CTF{%s}', length: 32 }, delivery: 'env', envName: 'FLAG', filePath: '/run/flag/flag' },
    });
    expect(spec.containers[0]).toMatchObject({
      readOnlyRootFilesystem: true,
      ports: [{ containerPort: 80, protocol: 'TCP' }],
      env: [{ name: 'A', value: '' }],
      readinessProbe: { httpGet: { path: '/', port: 80 } },
    });
    expect(spec.flag.containers).toBeUndefined();
    // No default: an absent owner means the engine's CTF_INSTANCE_OWNER.
    expect(spec.owner).toBeUndefined();
  });

  it('fills the missing parts of a partial lifetime and still checks them against each other', () => {
    expect(challengeSpecSchema.parse({ ...minimal, lifetime: { default: '2h' } }).lifetime).toEqual({ default: '2h', max: '3h', extension: '30m' });
    const tooLong = challengeSpecSchema.safeParse({ ...minimal, lifetime: { default: '4h' } });
    expect(issuesOf(tooLong)).toEqual([{ path: 'lifetime.default', message: 'default lifetime must not exceed the maximum lifetime' }]);
  });

  it('keeps explicit values', () => {
    const spec = challengeSpecSchema.parse({ ...minimal, enabled: false, flag: { dynamic: { length: 8 }, delivery: 'file' } });
    expect(spec.enabled).toBe(false);
    expect(spec.flag).toMatchObject({ dynamic: { length: 8, format: 'CTF{%s}' }, delivery: 'file' });
  });
});

describe('durations', () => {
  it.each([
    ['1h', 3_600_000],
    ['30m', 1_800_000],
    ['90s', 90_000],
    ['1h30m', 5_400_000],
    ['2h0m5s', 7_205_000],
    ['0s', 0],
    ['168h', 604_800_000],
  ])('parses %s', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(['', '1d', '1.5h', '30m1h', 'h', '-1h', '1h ', '12345h'])('refuses %j', (text) => {
    expect(parseDuration(text)).toBeUndefined();
  });

  it.each([
    [0, '0s'],
    [1_000, '1s'],
    [90_000, '1m30s'],
    [3_600_000, '1h'],
    [5_400_000, '1h30m'],
    [90_061_000, '25h1m1s'],
    [1_499, '1s'],
  ])('formats %d ms as %s', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  it('round-trips whole seconds', () => {
    for (const ms of [1_000, 59_000, 61_000, 3_599_000, 86_400_000, 604_800_000]) expect(parseDuration(formatDuration(ms))).toBe(ms);
  });
});

describe('isCidr', () => {
  it.each(['203.0.113.0/24', '0.0.0.0/0', '10.1.2.3/32', '10.1.2.3/8', '2001:db8::/32', '::/0', 'fe80::1/128'])('accepts %s', (text) => {
    expect(isCidr(text)).toBe(true);
  });

  it.each(['203.0.113.0', '300.0.0.0/8', '10.0.0.0/33', '10.0.0.0/08', '010.0.0.0/8', '2001:db8::/129', '::ffff:a00:1/128', 'fe80::1%eth0/64', 'example.com/8', '/8'])(
    'refuses %s',
    (text) => {
      expect(isCidr(text)).toBe(false);
    },
  );
});
