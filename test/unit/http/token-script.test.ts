import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { decodeJwt } from 'jose';
import { describe, expect, it } from 'vitest';
import { createTokenVerifier } from '../../../src/http/auth.js';
import { SECRET } from './harness.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));

function run(args: string[], secret: string | null = SECRET): Promise<{ code: number; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, CTF_TOKEN_SECRET: secret ?? undefined };
  if (secret === null) delete env.CTF_TOKEN_SECRET;
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', 'scripts/token.ts', ...args], { cwd: root, env }, (err, stdout, stderr) => {
      resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe('scripts/token.ts', { timeout: 30_000 }, () => {
  it('prints only a token the API accepts', async () => {
    const { code, stdout, stderr } = await run(['--user', 'alice', '--team', 'red', '--ttl', '30m']);
    expect([code, stderr]).toEqual([0, '']);
    expect(stdout).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+\n$/);
    const token = stdout.trim();
    await expect(createTokenVerifier(SECRET).verify(token)).resolves.toEqual({ user: 'alice', team: 'red', admin: false });
    const { iat = 0, exp = 0 } = decodeJwt(token);
    expect(exp - iat).toBe(1800);
  });

  it('mints admin tokens with --admin and a 12h default lifetime', async () => {
    const { stdout } = await run(['--user', 'root', '--admin']);
    const token = stdout.trim();
    await expect(createTokenVerifier(SECRET).verify(token)).resolves.toEqual({ user: 'root', admin: true });
    const { iat = 0, exp = 0 } = decodeJwt(token);
    expect(exp - iat).toBe(12 * 3600);
  });

  it.each([
    ['no secret', ['--user', 'alice'], null, /CTF_TOKEN_SECRET is not set/],
    ['a short secret', ['--user', 'alice'], 'short-secret', /at least 32 characters/],
    ['no user', [], SECRET, /--user is required/],
    ['a bad user', ['--user', 'alice smith'], SECRET, /user must be/],
    ['a bad ttl', ['--user', 'alice', '--ttl', '2 hours'], SECRET, /--ttl must be a duration/],
    ['an unknown option', ['--user', 'alice', '--role', 'admin'], SECRET, /Unknown option '--role'/],
  ])('exits 2 with a message on stderr for %s', async (_what, args, secret, message) => {
    const { code, stdout, stderr } = await run(args, secret);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toMatch(message);
    expect(stderr).toMatch(/usage: npm run -s token/);
  });
});
