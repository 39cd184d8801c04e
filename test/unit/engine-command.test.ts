import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../scripts/lib/control-plane.js';
import { ENGINE_NODE_FLAGS } from '../../scripts/lib/engine-command.js';

const read = (path: string) => readFileSync(join(REPO_ROOT, path), 'utf8');
const expected = ['node', ...ENGINE_NODE_FLAGS, 'dist/main.js'];

/** Every way the engine is started runs it with the same V8 flags the benchmarks measure. */
describe('the engine command', () => {
  it('in the Dockerfile', () => {
    const cmd = /^CMD (\[.*\])$/m.exec(read('Dockerfile'))?.[1];
    expect(cmd && (JSON.parse(cmd) as string[])).toEqual(expected);
  });

  it('in the image built without Docker', () => {
    const words = [...read('scripts/image/build-engine.sh').matchAll(/--config\.cmd (\S+)/g)].map((m) => m[1]);
    expect(words).toEqual(expected);
  });

  it('in npm start', () => {
    const scripts = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts;
    expect(scripts.start?.split(' ')).toEqual(expected);
  });

  it('starts node (a flag V8 does not know makes it refuse)', () => {
    expect(execFileSync(process.execPath, [...ENGINE_NODE_FLAGS, '-e', 'console.log("ok")'], { encoding: 'utf8' }).trim()).toBe('ok');
    expect(() => execFileSync(process.execPath, ['--no-such-v8-flag=1', '-e', '0'], { stdio: 'ignore' })).toThrow();
  });
});
