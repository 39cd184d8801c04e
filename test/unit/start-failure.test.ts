import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

/** src/main.ts as a process that cannot start: its exit code, stderr and termination message. */

const root = fileURLToPath(new URL('../../', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'challenge-engine-start-'));
const PLACEHOLDER = 'CHANGE-ME-token-secret-generate-with-openssl-rand-hex-32';

afterAll(() => rmSync(dir, { recursive: true, force: true }));

function runMain(env: Record<string, string>): Promise<{ code: number; stderr: string }> {
  // Only what is given here: no KUBECONFIG or CTF_* of the machine running the tests.
  const clean: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, ...env };
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', 'src/main.ts'], { cwd: root, env: clean, timeout: 20_000 }, (err, _stdout, stderr) => {
      resolve({ code: err ? Number(err.code ?? 1) : 0, stderr });
    });
  });
}

describe('a start that fails on its configuration', { timeout: 30_000 }, () => {
  it('exits 2 and writes the message, without the secret, to stderr and to the termination message file', async () => {
    const log = join(dir, 'termination-log');
    writeFileSync(log, 'from an earlier run that wrote more than this one\n'.repeat(4));
    const { code, stderr } = await runMain({ CTF_FLAG_SECRET: 'literal:0123456789abcdef', CTF_TOKEN_SECRET: PLACEHOLDER, CTF_TERMINATION_LOG: log });
    expect(code).toBe(2);
    const message = readFileSync(log, 'utf8');
    expect(message).toBe(stderr);
    expect(message).toMatch(/^challenge-engine: invalid configuration:\n {2}CTF_TOKEN_SECRET: holds a placeholder .*Secret challenge-engine-token, key token-secret: replace it with the output of openssl rand -hex 32\n$/);
    expect(message).not.toContain(PLACEHOLDER);
  });

  it('refuses a webhook receiver on a link-local, loopback or cluster-internal address unless allowed', async () => {
    const secrets = { CTF_FLAG_SECRET: 'literal:0123456789abcdef', CTF_TOKEN_SECRET: '5f0c9e2b7a4d1836c0e9f7a2b5d8c14e', CTF_WEBHOOK_SECRET: '9c4e1b7a2f5d8036e1c9a7f2b4d6e8a0' };
    for (const url of ['http://169.254.169.254/latest/meta-data', 'http://127.0.0.1:9000/solves', 'http://scoreboard.ctf.svc.cluster.local/solves']) {
      const { code, stderr } = await runMain({ ...secrets, CTF_WEBHOOK_URL: url });
      expect(code, url).toBe(2);
      expect(stderr).toMatch(/CTF_WEBHOOK_URL: .*(link-local|cluster-internal).*CTF_WEBHOOK_ALLOW_PRIVATE=true/);
      expect(stderr).not.toContain(secrets.CTF_WEBHOOK_SECRET);
    }
  });

  it('still exits 2 when the termination message file is not there, and does not create it', async () => {
    const log = join(dir, 'absent', 'termination-log');
    const { code, stderr } = await runMain({ CTF_FLAG_SECRET: 'literal:short', CTF_TOKEN_SECRET: PLACEHOLDER, CTF_TERMINATION_LOG: log });
    expect(code).toBe(2);
    expect(stderr).toContain('CTF_FLAG_SECRET: a literal:<key> needs at least 16 characters of key');
    expect(existsSync(log)).toBe(false);
  });
});

describe('a start that fails after the configuration', { timeout: 30_000 }, () => {
  it('exits 1 and writes the reason to the termination message file', async () => {
    const log = join(dir, 'termination-log-unreachable');
    writeFileSync(log, '');
    // An apiserver that refuses connections: reading the flag-key Secret fails.
    const kubeconfig = join(dir, 'kubeconfig');
    writeFileSync(
      kubeconfig,
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'c', cluster: { server: 'https://127.0.0.1:1' } }],
        users: [{ name: 'u', user: { token: 't' } }],
        contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }],
        'current-context': 'x',
      }),
    );
    const { code, stderr } = await runMain({ KUBECONFIG: kubeconfig, CTF_FLAG_SECRET: 'challenge-engine-flag-key', CTF_TOKEN_SECRET: '5f0c9e2b7a4d1836c0e9f7a2b5d8c14e', CTF_TERMINATION_LOG: log, LOG_LEVEL: 'silent' });
    expect(code).toBe(1);
    const message = readFileSync(log, 'utf8');
    expect(message).toMatch(/^challenge-engine: cannot read the flag key Secret ctf\/challenge-engine-flag-key: /);
    expect(stderr).toContain(message);
  });
});
