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

describe('webhook configuration', () => {
  const base = { ...flag, CTF_TOKEN_SECRET: '5f0c9e2b7a4d1836c0e9f7a2b5d8c14e' };
  it('takes a receiver URL and its HMAC key, with a bounded backoff', () => {
    const c = loadConfig({ ...base, CTF_WEBHOOK_URL: 'https://scoreboard.example.org/solves', CTF_WEBHOOK_SECRET: '9c4e1b7a2f5d8036e1c9a7f2b4d6e8a0' });
    expect(c.webhook).toEqual({ url: 'https://scoreboard.example.org/solves', secret: '9c4e1b7a2f5d8036e1c9a7f2b4d6e8a0', maxBackoffMs: 300_000, allowPrivate: false });
    expect(loadConfig(base).webhook).toBeUndefined();
  });

  it('refuses a URL without a secret, a placeholder secret and a short one, never printing it', () => {
    expect(() => loadConfig({ ...base, CTF_WEBHOOK_URL: 'https://scoreboard.example.org/solves' })).toThrow(/CTF_WEBHOOK_SECRET: is required with CTF_WEBHOOK_URL/);
    expect(() => loadConfig({ ...base, CTF_WEBHOOK_URL: 'https://s.example.org/', CTF_WEBHOOK_SECRET: 'CHANGE-ME-webhook-secret-0123456789abcdef' })).toThrow(/placeholder or guessable/);
    expect(() => loadConfig({ ...base, CTF_WEBHOOK_URL: 'https://s.example.org/', CTF_WEBHOOK_SECRET: 'short' })).toThrow(/at least 32 characters/);
    try {
      loadConfig({ ...base, CTF_WEBHOOK_URL: 'https://s.example.org/', CTF_WEBHOOK_SECRET: 'CHANGE-ME-webhook-secret-0123456789abcdef' });
    } catch (err) {
      expect((err as Error).message).not.toContain('CHANGE-ME-webhook');
    }
    expect(() => loadConfig({ ...base, CTF_WEBHOOK_URL: 'ftp://s.example.org/', CTF_WEBHOOK_SECRET: '9c4e1b7a2f5d8036e1c9a7f2b4d6e8a0' })).toThrow(/CTF_WEBHOOK_URL/);
  });
});
