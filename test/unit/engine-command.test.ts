import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../scripts/lib/control-plane.js';
import { ENGINE_ENV, ENGINE_NODE_FLAGS } from '../../scripts/lib/engine-command.js';

const read = (path: string) => readFileSync(join(REPO_ROOT, path), 'utf8');
const expected = ['node', ...ENGINE_NODE_FLAGS, 'dist/main.js'];
const envWords = Object.entries(ENGINE_ENV).map(([k, v]) => `${k}=${v}`);

/** Every way the engine is started runs it with the same V8 flags and environment the benchmarks measure. */
describe('the engine command', () => {
  it('in the Dockerfile', () => {
    const cmd = /^CMD (\[.*\])$/m.exec(read('Dockerfile'))?.[1];
    expect(cmd && (JSON.parse(cmd) as string[])).toEqual(expected);
    // One KEY=VALUE per ENV line, as the image test (test/e2e/deployment.e2e.ts) reads them.
    const env = [...read('Dockerfile').matchAll(/^ENV (.+)$/gm)].map((m) => (m[1] ?? '').trim());
    expect(env).toEqual(expect.arrayContaining(envWords));
  });

  it('in the image built without Docker', () => {
    const words = [...read('scripts/image/build-engine.sh').matchAll(/--config\.cmd (\S+)/g)].map((m) => m[1]);
    expect(words).toEqual(expected);
    const env = [...read('scripts/image/build-engine.sh').matchAll(/--config\.env (\S+)/g)].map((m) => m[1]);
    expect(env).toEqual(expect.arrayContaining(envWords));
  });

  it('in npm start', () => {
    const scripts = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts;
    expect(scripts.start?.split(' ')).toEqual([...envWords, ...expected]);
  });

  it('starts node (a flag V8 does not know makes it refuse)', () => {
    expect(execFileSync(process.execPath, [...ENGINE_NODE_FLAGS, '-e', 'console.log("ok")'], { encoding: 'utf8' }).trim()).toBe('ok');
    expect(() => execFileSync(process.execPath, ['--no-such-v8-flag=1', '-e', '0'], { stdio: 'ignore' })).toThrow();
  });
});
