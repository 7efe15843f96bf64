/**
 * The console's page, script and style. Run from source (tests, `npm run invoke`), they are built on first use
 * with esbuild; in a function bundle, scripts/esbuild-plugins.cjs (console-assets) replaces this module with
 * the assets built at bundle time, so the deployed zip carries them and needs no esbuild.
 */
import type { ConsoleAssets } from './build-assets.mjs';

let built: Promise<ConsoleAssets> | undefined;

export function consoleAssets(): Promise<ConsoleAssets> {
  built ??= import('./build-assets.mjs').then((module) => module.buildConsoleAssets());
  return built;
}
