import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { harness } from './harness.js';

async function builtPage(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'page-'));
  await writeFile(join(dir, 'index.html'), '<!doctype html><div id="app"></div>');
  await writeFile(join(dir, 'app.js'), 'console.log(1)');
  await writeFile(join(dir, 'app.css'), 'body{}');
  return dir;
}

describe('the player page at /play', () => {
  it('serves the built page with a strict Content-Security-Policy and no referrer', async () => {
    const { app } = await harness({ page: { dir: await builtPage(), scoreboardUrl: 'https://scoreboard.example.org/' } });
    const page = await app.inject({ method: 'GET', url: '/play' });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    expect(page.body).toContain('<div id="app">');
    const csp = String(page.headers['content-security-policy']);
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain('unsafe-inline');
    expect(csp).toContain("frame-ancestors 'none'");
    expect(page.headers['referrer-policy']).toBe('no-referrer');
    expect(page.headers['x-content-type-options']).toBe('nosniff');
    const js = await app.inject({ method: 'GET', url: '/play/app.js' });
    expect(js.statusCode).toBe(200);
    expect(js.headers['content-type']).toMatch(/javascript/);
    expect((await app.inject({ method: 'GET', url: '/play/app.css' })).headers['content-type']).toMatch(/^text\/css/);
  });

  it('tells the page where the scoreboard is, and nothing when none is configured', async () => {
    const { app } = await harness({ page: { dir: await builtPage(), scoreboardUrl: 'https://scoreboard.example.org/' } });
    const cfg = await app.inject({ method: 'GET', url: '/play/config.json' });
    expect(cfg.json()).toEqual({ scoreboardUrl: 'https://scoreboard.example.org/' });
    const { app: bare } = await harness({ page: { dir: await builtPage() } });
    expect((await bare.inject({ method: 'GET', url: '/play/config.json' })).json()).toEqual({});
  });

  it('serves only the built files: no traversal, no listing, no other path', async () => {
    const { app } = await harness({ page: { dir: await builtPage() } });
    for (const url of ['/play/../package.json', '/play/%2e%2e/package.json', '/play/', '/play/nothing.js', '/play/..%2f..%2fetc%2fpasswd']) {
      const res = await app.inject({ method: 'GET', url });
      expect([400, 403, 404], `${url}: ${res.statusCode}`).toContain(res.statusCode);
      expect(res.body).not.toContain('"name"');
    }
  });

  it('says how to build the page when it is not built', async () => {
    const { app } = await harness({ page: { dir: await mkdtemp(join(tmpdir(), 'unbuilt-')) } });
    const res = await app.inject({ method: 'GET', url: '/play' });
    expect(res.statusCode).toBe(503);
    expect(res.body).toContain('npm run build');
  });

  it('needs no token: the page signs in by itself, the API stays guarded', async () => {
    const { app } = await harness({ page: { dir: await builtPage() } });
    expect((await app.inject({ method: 'GET', url: '/play' })).statusCode).toBe(200);
    expect((await app.inject({ method: 'GET', url: '/api/challenges' })).statusCode).toBe(401);
  });
});
