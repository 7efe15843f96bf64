'use strict';
/**
 * esbuild plugins for serverless-esbuild (serverless.yml `custom.esbuild.plugins`). CommonJS because
 * serverless-esbuild loads this file with require().
 *
 * zod-without-locales: `import { z } from 'zod'` keeps every one of zod's translated error-message packs
 * (`z.locales`, about 260 KB minified, a quarter of each function's bundle) because the namespace object
 * cannot be tree-shaken. English, the default, is registered by zod's schemas module itself and stays; only
 * the `z.locales` namespace is emptied. Code that calls `z.config(z.locales.xx())` must import that locale
 * directly (`import xx from 'zod/v4/locales/xx.js'`).
 */
const zodLocaleIndex = /[\\/]node_modules[\\/]zod[\\/]v4[\\/](classic|core|mini)[\\/]/;

const zodWithoutLocales = {
  name: 'zod-without-locales',
  setup(build) {
    build.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) =>
      zodLocaleIndex.test(args.importer) ? { path: 'zod-locales', namespace: 'zod-without-locales' } : undefined,
    );
    build.onLoad({ filter: /.*/, namespace: 'zod-without-locales' }, () => ({ contents: 'export {};', loader: 'js' }));
  },
};

module.exports = [zodWithoutLocales];
