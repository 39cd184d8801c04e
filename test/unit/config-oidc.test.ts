import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';

const flag = { CTF_FLAG_SECRET: 'literal:0123456789abcdef' };
const jwks = { CTF_JWKS_URL: 'https://id.example.org/realms/ctf/protocol/openid-connect/certs', CTF_TOKEN_ISSUER: 'https://id.example.org/realms/ctf', CTF_TOKEN_AUDIENCE: 'challenge-engine' };

describe('token configuration', () => {
  it('takes an OIDC issuer instead of the shared secret, with the documented claim defaults', () => {
    const c = loadConfig({ ...flag, ...jwks });
    expect(c.tokenSecret).toBeUndefined();
    expect(c.oidc).toEqual({ ...{ jwksUrl: jwks.CTF_JWKS_URL, issuer: jwks.CTF_TOKEN_ISSUER, audience: jwks.CTF_TOKEN_AUDIENCE }, claims: { user: 'sub', team: 'team', admin: 'role' }, adminValue: 'admin', cacheSeconds: 600, cooldownSeconds: 30 });
  });

  it('maps claims by name', () => {
    const c = loadConfig({ ...flag, ...jwks, CTF_TOKEN_USER_CLAIM: 'preferred_username', CTF_TOKEN_TEAM_CLAIM: 'ctf.team', CTF_TOKEN_ADMIN_CLAIM: 'groups', CTF_TOKEN_ADMIN_VALUE: 'ctf-admins' });
    expect(c.oidc?.claims).toEqual({ user: 'preferred_username', team: 'ctf.team', admin: 'groups' });
    expect(c.oidc?.adminValue).toBe('ctf-admins');
  });

  it('refuses an issuer without iss and aud, naming both', () => {
    expect(() => loadConfig({ ...flag, CTF_JWKS_URL: jwks.CTF_JWKS_URL })).toThrow(ConfigError);
    expect(() => loadConfig({ ...flag, CTF_JWKS_URL: jwks.CTF_JWKS_URL })).toThrow(/CTF_TOKEN_ISSUER[\s\S]*CTF_TOKEN_AUDIENCE/);
  });

  it('refuses an API with neither a shared secret nor an issuer, and bad URLs and claim names', () => {
    expect(() => loadConfig(flag)).toThrow(/CTF_TOKEN_SECRET: is required .* unless CTF_JWKS_URL/);
    expect(() => loadConfig({ ...flag, ...jwks, CTF_JWKS_URL: 'file:///etc/passwd' })).toThrow(/CTF_JWKS_URL/);
    expect(() => loadConfig({ ...flag, ...jwks, CTF_TOKEN_USER_CLAIM: 'sub; drop' })).toThrow(/CTF_TOKEN_USER_CLAIM: must be a claim name/);
    expect(() => loadConfig({ ...flag, ...jwks, CTF_JWKS_COOLDOWN_SECONDS: '0' })).toThrow(/CTF_JWKS_COOLDOWN_SECONDS/);
  });
});
