import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';

const base = { CTF_FLAG_SECRET: 'literal:0123456789abcdef', CTF_TOKEN_SECRET: 'x'.repeat(32) };

describe('loadConfig', () => {
  it('applies the documented defaults', () => {
    const c = loadConfig(base);
    expect(c).toMatchObject({ port: 8080, namespace: 'ctf', engineNamespace: 'ctf', maxSessionsPerUser: 3, leaderElection: true, clusterDomain: 'cluster.local' });
    expect(c.flagKey).toEqual({ literal: '0123456789abcdef' });
    expect(Object.isFrozen(c)).toBe(true);
    expect(c.resyncMs).toBe(600_000);
    expect(c.auditMs).toBe(10_000);
    expect(c.watch.relistEveryMs).toBe(3_600_000);
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

  it('reports every bad value at once', () => {
    expect(() => loadConfig({ PORT: 'x', CTF_NAMESPACE: 'A B' })).toThrow(/PORT[\s\S]*CTF_NAMESPACE[\s\S]*CTF_FLAG_SECRET/);
  });

  it('does not need a token secret when the API is off', () => {
    expect(loadConfig({ CTF_FLAG_SECRET: base.CTF_FLAG_SECRET, CTF_API: 'false' }).runApi).toBe(false);
  });
});
