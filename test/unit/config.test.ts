import { describe, expect, it } from 'vitest';
import { ConfigError, guessableSecret, loadConfig } from '../../src/config.js';

const base = { CTF_FLAG_SECRET: 'literal:0123456789abcdef', CTF_TOKEN_SECRET: '5f0c9e2b7a4d1836c0e9f7a2b5d8c14e' };

describe('loadConfig', () => {
  it('applies the documented defaults', () => {
    const c = loadConfig(base);
    expect(c).toMatchObject({ port: 8080, namespace: 'ctf', engineNamespace: 'ctf', maxSessionsPerUser: 3, instanceOwner: 'user', leaderElection: true, clusterDomain: 'cluster.local' });
    expect(c.flagKey).toEqual({ literal: '0123456789abcdef' });
    expect(Object.isFrozen(c)).toBe(true);
    expect(c.resyncMs).toBe(600_000);
    expect(c.auditMs).toBe(10_000);
    expect(c.watch.relistEveryMs).toBe(3_600_000);
  });

  it('makes instances team-owned by default with CTF_INSTANCE_OWNER=team', () => {
    expect(loadConfig({ ...base, CTF_INSTANCE_OWNER: 'team' }).instanceOwner).toBe('team');
  });

  it('turns the cache audit and the periodic relist off with 0', () => {
    const c = loadConfig({ ...base, CTF_CACHE_AUDIT_SECONDS: '0', CTF_RELIST_SECONDS: '0' });
    expect(c.auditMs).toBe(0);
    expect(c.watch.relistEveryMs).toBe(0);
  });

  it('reads a flag-key Secret name and selectors', () => {
    const c = loadConfig({ ...base, CTF_FLAG_SECRET: 'engine-flag-key', CTF_ENTRY_NAMESPACE_SELECTOR: 'kubernetes.io/metadata.name=ingress', CTF_EXTRA_FORBIDDEN_CIDRS: '10.96.0.0/12, 10.244.0.0/16' });
    expect(c.flagKey).toEqual({ secretName: 'engine-flag-key', key: 'flag-key' });
    expect(c.entryPoint.namespaceSelector).toEqual({ 'kubernetes.io/metadata.name': 'ingress' });
    expect(c.extraForbiddenCidrs).toEqual(['10.96.0.0/12', '10.244.0.0/16']);
  });

  it.each([
    [{ CTF_FLAG_SECRET: undefined }, 'CTF_FLAG_SECRET: is required'],
    [{ CTF_FLAG_SECRET: 'literal:short' }, 'at least 16 characters'],
    [{ CTF_FLAG_SECRET: 'Not_A_Name' }, 'must be the name of a Secret'],
    [{ PORT: '70000' }, 'PORT'],
    [{ PORT: 'eighty' }, 'PORT'],
    [{ CTF_TOKEN_SECRET: 'short' }, 'CTF_TOKEN_SECRET: must be at least 32 characters'],
    [{ CTF_TOKEN_SECRET: undefined }, 'CTF_TOKEN_SECRET: is required when the API runs'],
    [{ CTF_NAMESPACE: 'Bad Namespace' }, 'CTF_NAMESPACE: must be a namespace name'],
    [{ CTF_LEADER_ELECTION: 'yes' }, 'CTF_LEADER_ELECTION'],
    [{ CTF_ENTRY_POD_SELECTOR: 'app' }, 'CTF_ENTRY_POD_SELECTOR: must be key=value'],
    [{ CTF_CACHE_AUDIT_SECONDS: '-1' }, 'CTF_CACHE_AUDIT_SECONDS'],
    [{ CTF_RELIST_SECONDS: 'hourly' }, 'CTF_RELIST_SECONDS'],
    [{ CTF_INSTANCE_OWNER: 'squad' }, 'CTF_INSTANCE_OWNER: must be user or team'],
  ])('rejects %o with a message naming the variable', (override, message) => {
    const env: Record<string, string | undefined> = { ...base, ...override };
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(message);
  });

  it('reads the Gateway, its listeners, the auth filter and the public ports', () => {
    const c = loadConfig({ ...base, CTF_GATEWAY: 'ctf-gateway/ctf', CTF_EXTERNAL_DOMAIN: 'ctf.example', CTF_GATEWAY_TLS_LISTENER: 'none', CTF_GATEWAY_AUTH_FILTER: 'traefik.io/Middleware/challenge-engine-access', CTF_PUBLIC_HTTP_SCHEME: 'http', CTF_PUBLIC_TLS_PORT: '8443' });
    expect(c.gateway).toEqual({ namespace: 'ctf-gateway', name: 'ctf', httpListener: 'http', tlsListener: undefined, authFilter: { group: 'traefik.io', kind: 'Middleware', name: 'challenge-engine-access' } });
    expect(c.publicAccess).toEqual({ httpScheme: 'http', httpPort: 80, tlsPort: 8443 });
    expect(loadConfig(base).gateway).toBeUndefined();
    expect(loadConfig(base).publicAccess).toEqual({ httpScheme: 'https', httpPort: 443, tlsPort: 443 });
  });

  it('refuses a Gateway without a public domain, and malformed Gateway settings, naming them', () => {
    expect(() => loadConfig({ ...base, CTF_GATEWAY: 'ctf-gateway/ctf' })).toThrow(/CTF_EXTERNAL_DOMAIN: is required with CTF_GATEWAY/);
    expect(() => loadConfig({ ...base, CTF_EXTERNAL_DOMAIN: 'ctf.example', CTF_GATEWAY: 'just-a-name' })).toThrow(/CTF_GATEWAY: must be <namespace>\/<name>/);
    expect(() => loadConfig({ ...base, CTF_GATEWAY_AUTH_FILTER: 'Middleware' })).toThrow(/CTF_GATEWAY_AUTH_FILTER: must be <group>\/<Kind>\/<name>/);
    expect(() => loadConfig({ ...base, CTF_PUBLIC_HTTP_SCHEME: 'ftp' })).toThrow(/CTF_PUBLIC_HTTP_SCHEME/);
  });

  it('caps instances with CTF_MAX_INSTANCES (0 or unset: unlimited) and times the queue out', () => {
    expect(loadConfig(base).queue).toEqual({ maxInstances: undefined, timeoutMs: 600_000 });
    expect(loadConfig({ ...base, CTF_MAX_INSTANCES: '0' }).queue.maxInstances).toBeUndefined();
    expect(loadConfig({ ...base, CTF_MAX_INSTANCES: '40', CTF_QUEUE_TIMEOUT: '1h30m' }).queue).toEqual({ maxInstances: 40, timeoutMs: 5_400_000 });
    expect(() => loadConfig({ ...base, CTF_MAX_INSTANCES: '-1' })).toThrow(/CTF_MAX_INSTANCES/);
    expect(() => loadConfig({ ...base, CTF_MAX_INSTANCES: 'many' })).toThrow(/CTF_MAX_INSTANCES/);
    expect(() => loadConfig({ ...base, CTF_MAX_INSTANCES: '2.5' })).toThrow(/CTF_MAX_INSTANCES/);
    expect(() => loadConfig({ ...base, CTF_QUEUE_TIMEOUT: '10 minutes' })).toThrow(/CTF_QUEUE_TIMEOUT: must be a duration such as 10m/);
    expect(() => loadConfig({ ...base, CTF_QUEUE_TIMEOUT: '0s' })).toThrow(/CTF_QUEUE_TIMEOUT: must be at least 1s/);
  });

  it('reports every bad value at once', () => {
    expect(() => loadConfig({ PORT: 'x', CTF_NAMESPACE: 'A B' })).toThrow(/PORT[\s\S]*CTF_NAMESPACE[\s\S]*CTF_FLAG_SECRET/);
  });

  it('does not need a token secret when the API is off', () => {
    expect(loadConfig({ CTF_FLAG_SECRET: base.CTF_FLAG_SECRET, CTF_API: 'false' }).runApi).toBe(false);
  });
});

describe('guessableSecret', () => {
  it.each([
    ['CHANGE-ME-token-secret-generate-with-openssl-rand-hex-32', /placeholder/],
    ['change-me', /placeholder/],
    ['  Change-Me-later\n', /placeholder/],
    ['x'.repeat(32), /one short pattern repeated/],
    ['ab'.repeat(20), /one short pattern repeated/],
    ['1234'.repeat(8), /one short pattern repeated/],
    ['\0'.repeat(32), /one short pattern repeated/],
    ['   \n\t ', /blank/],
  ])('refuses %j', (value, reason) => {
    expect(guessableSecret(value)).toMatch(reason);
  });

  it.each([
    '5f0c9e2b7a4d1836c0e9f7a2b5d8c14e',
    'test-token-secret-0123456789abcdef0123',
    '0123456789abcdef',
    'abcde'.repeat(8),
    'not-a-placeholder: CHANGE-ME',
  ])('accepts %j', (value) => {
    expect(guessableSecret(value)).toBeUndefined();
  });
});

describe('loadConfig refuses guessable secrets', () => {
  const placeholder = 'CHANGE-ME-token-secret-generate-with-openssl-rand-hex-32';

  it.each([
    ['the shipped placeholder', placeholder, 'holds a placeholder (it starts with CHANGE-ME)'],
    ['a placeholder in lower case after blanks', `  ${placeholder.toLowerCase()}`, 'holds a placeholder'],
    ['one character repeated', 'z'.repeat(48), 'holds a guessable value'],
  ])('CTF_TOKEN_SECRET: %s, naming the variable and the Secret it comes from, not the value', (_what, value, reason) => {
    const err = catchConfigError({ ...base, CTF_TOKEN_SECRET: value });
    expect(err.message).toContain(`  CTF_TOKEN_SECRET: ${reason}`);
    expect(err.message).toContain('in manifests/ it comes from Secret challenge-engine-token, key token-secret: replace it with the output of openssl rand -hex 32');
    expect(err.message).not.toContain(value.trim());
  });

  it.each([
    ['a placeholder', 'literal:CHANGE-ME-flag-key-generate-with-openssl-rand-hex-32', 'CHANGE-ME-flag-key'],
    ['one character repeated', `literal:${'0'.repeat(32)}`, '0'.repeat(32)],
  ])('CTF_FLAG_SECRET=literal: with %s', (_what, value, secret) => {
    const err = catchConfigError({ ...base, CTF_FLAG_SECRET: value });
    expect(err.message).toMatch(/^ {2}CTF_FLAG_SECRET: the literal:<key> holds a (placeholder|guessable value).*: replace it with the output of openssl rand -hex 32$/m);
    expect(err.message).not.toContain(secret);
  });

  it('reports a placeholder token with the other bad values at once', () => {
    const err = catchConfigError({ ...base, CTF_TOKEN_SECRET: placeholder, PORT: 'x' });
    expect(err.message).toMatch(/PORT[\s\S]*CTF_TOKEN_SECRET: holds a placeholder/);
  });

  it('takes a Secret name for the flag key as it is: the engine checks the key it reads', () => {
    expect(loadConfig({ ...base, CTF_FLAG_SECRET: 'challenge-engine-flag-key' }).flagKey).toEqual({ secretName: 'challenge-engine-flag-key', key: 'flag-key' });
  });
});

function catchConfigError(env: Record<string, string | undefined>): ConfigError {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('loadConfig accepted the environment');
}
