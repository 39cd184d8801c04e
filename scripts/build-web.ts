/**
 * Bundles the player page (web/) into dist/web/ (or the directory given with --out): index.html,
 * app.css, and app.js (Preact and the page, one minified ES module, no CDN). `--watch` rebuilds on
 * change (npm run dev). Used by npm run build, npm test and the image build.
 */
import { copyFile, mkdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { context, type BuildOptions } from 'esbuild';

// Standalone (the Dockerfile's build stage copies only this file and web/).
const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const outIndex = args.indexOf('--out');
const out = resolve(outIndex >= 0 ? (args[outIndex + 1] ?? '') : join(REPO_ROOT, 'dist', 'web'));
const web = join(REPO_ROOT, 'web');

const options: BuildOptions = {
  entryPoints: [join(web, 'src', 'main.tsx')],
  outfile: join(out, 'app.js'),
  bundle: true,
  format: 'esm',
  target: ['es2022'],
  minify: true,
  sourcemap: true,
  jsx: 'automatic',
  jsxImportSource: 'preact',
  legalComments: 'linked',
  logLevel: 'warning',
};

async function copyStatic(): Promise<void> {
  await mkdir(out, { recursive: true });
  await Promise.all(['index.html', 'app.css'].map((f) => copyFile(join(web, f), join(out, f))));
}

const ctx = await context(options);
await copyStatic();
if (args.includes('--watch')) {
  await ctx.watch();
  process.stderr.write(`[web] watching web/ into ${out}\n`);
} else {
  await ctx.rebuild();
  await ctx.dispose();
  process.stderr.write(`[web] built ${out}\n`);
}
