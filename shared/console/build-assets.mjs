/**
 * Builds the console's browser assets (shared/console/web): the page and the style as they are, the
 * TypeScript bundled by esbuild into one script for browsers. Used by assets.ts when running from source and by
 * the console-assets esbuild plugin when bundling a function. Plain JavaScript, so the CommonJS plugin file can
 * load it too.
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

const web = (file) => fileURLToPath(new URL(`./web/${file}`, import.meta.url));

/** @returns {Promise<{ html: string; css: string; js: string }>} */
export async function buildConsoleAssets() {
  const { build } = await import('esbuild');
  const result = await build({
    entryPoints: [web('main.ts')],
    bundle: true,
    write: false,
    format: 'iife',
    platform: 'browser',
    target: 'es2022',
    minify: true,
    legalComments: 'none',
    logLevel: 'silent',
  });
  const [html, css] = await Promise.all([readFile(web('index.html'), 'utf8'), readFile(web('console.css'), 'utf8')]);
  return { html, css, js: result.outputFiles[0].text };
}
